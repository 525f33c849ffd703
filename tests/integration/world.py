"""Small helpers for service-level tests: make things through the real use cases."""

from __future__ import annotations

from sqlalchemy import func, select

from pimlico.db.tables import AuditEventRow
from pimlico.domain.model import PrincipalRef, PrincipalType
from pimlico.services import directory, roles
from pimlico.services.runtime import Actor, Pimlico

OPERATOR = Actor.operator("test")


def user(rt: Pimlico, name: str) -> PrincipalRef:
    created = directory.create_user(rt, actor=OPERATOR, user_name=name).value
    return PrincipalRef(PrincipalType.USER, created.id)


def group(rt: Pimlico, name: str, *, role_assignable: bool = False) -> PrincipalRef:
    created = directory.create_group(
        rt, actor=OPERATOR, name=name, role_assignable=role_assignable
    ).value
    return PrincipalRef(PrincipalType.GROUP, created.id)


def role(rt: Pimlico, name: str, *permissions: str) -> str:
    return roles.create_role(rt, actor=OPERATOR, name=name, permissions=list(permissions)).value.id


def audit_count(rt: Pimlico) -> int:
    with rt.reading() as s:
        return s.scalar(select(func.count()).select_from(AuditEventRow)) or 0
