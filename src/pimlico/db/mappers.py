"""Rows to domain entities and back. The only place that knows both shapes."""

from __future__ import annotations

from typing import Any

from pimlico.db.tables import (
    AssignmentRow,
    GroupRow,
    MembershipRow,
    RoleRow,
    ServiceAccountRow,
    UserRow,
)
from pimlico.domain.model import (
    Assignment,
    AssignmentKind,
    Group,
    Membership,
    PrincipalRef,
    PrincipalType,
    Relation,
    Role,
    ServiceAccount,
    Target,
    TargetType,
    User,
)


def user(row: UserRow) -> User:
    return User(
        id=row.id,
        user_name=row.user_name,
        display_name=row.display_name,
        email=row.email,
        enabled=row.enabled,
        manager_id=row.manager_id,
        created_at=row.created_at,
    )


def service_account(row: ServiceAccountRow) -> ServiceAccount:
    return ServiceAccount(
        id=row.id,
        name=row.name,
        display_name=row.display_name,
        description=row.description,
        enabled=row.enabled,
        created_at=row.created_at,
    )


def group(row: GroupRow) -> Group:
    return Group(
        id=row.id,
        name=row.name,
        display_name=row.display_name,
        description=row.description,
        role_assignable=row.role_assignable,
        pim_enabled=row.pim_enabled,
        created_at=row.created_at,
    )


def role(row: RoleRow) -> Role:
    return Role(
        id=row.id,
        name=row.name,
        description=row.description,
        permissions=tuple(row.permissions),
        built_in=row.built_in,
        created_at=row.created_at,
    )


def membership(row: MembershipRow) -> Membership:
    return Membership(
        id=row.id,
        group_id=row.group_id,
        member=PrincipalRef(PrincipalType(row.member_type), row.member_id),
        relation=Relation(row.relation),
        created_at=row.created_at,
        created_by=row.created_by,
        ended_at=row.ended_at,
        ended_by=row.ended_by,
        end_reason=row.end_reason,
    )


def assignment(row: AssignmentRow) -> Assignment:
    return Assignment(
        id=row.id,
        kind=AssignmentKind(row.kind),
        principal=PrincipalRef(PrincipalType(row.principal_type), row.principal_id),
        target=Target(TargetType(row.target_type), row.target_id, row.scope),
        start=row.start_at,
        end=row.end_at,
        created_at=row.created_at,
        created_by=row.created_by,
        justification=row.justification,
        activated_from=row.activated_from,
        request_id=row.request_id,
        ended_at=row.ended_at,
        ended_by=row.ended_by,
        end_reason=row.end_reason,
    )


def assignment_row(a: Assignment) -> AssignmentRow:
    return AssignmentRow(**assignment_values(a))


def assignment_values(a: Assignment) -> dict[str, Any]:
    """The columns of the row of ``a``."""
    return dict(
        id=a.id,
        kind=a.kind.value,
        principal_type=a.principal.type.value,
        principal_id=a.principal.id,
        target_type=a.target.type.value,
        target_id=a.target.object_id,
        scope=a.target.scope,
        start_at=a.start,
        end_at=a.end,
        created_at=a.created_at,
        created_by=a.created_by,
        justification=a.justification,
        activated_from=a.activated_from,
        request_id=a.request_id,
        ended_at=a.ended_at,
        ended_by=a.ended_by,
        end_reason=a.end_reason,
    )


def snapshot(entity: object) -> dict[str, Any]:
    """An entity as the plain dict the audit log keeps in ``before``/``after``."""
    slots: tuple[str, ...] = getattr(type(entity), "__slots__", ())
    out: dict[str, Any] = {}
    for name in slots:
        value = getattr(entity, name)
        if isinstance(value, PrincipalRef):
            value = {"type": value.type.value, "id": value.id}
        elif isinstance(value, Target):
            value = {"type": value.type.value, "object_id": value.object_id, "scope": value.scope}
        out[name] = value
    return out
