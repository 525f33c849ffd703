"""Storing assignment changes: the checks and writes the administrators' use cases
(``services.assignments``) and the request workflow (``services.request_effects``) share.

Nothing here checks the target's role settings: the callers have, with ``assignment_rules``
or ``request_rules``. Every function works inside the caller's write (``WriteContext``), so a
change, its audit event, its published events and its follow-up jobs (``assignment_events``)
commit together.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from pimlico.db import mappers
from pimlico.db.audit import WriteContext
from pimlico.db.tables import AssignmentRow, Base, GroupRow, RoleRow
from pimlico.domain.audit import format_instant
from pimlico.domain.catalogue import Perm
from pimlico.domain.model import (
    Assignment,
    AssignmentKind,
    PrincipalRef,
    PrincipalType,
    Target,
    TargetType,
)
from pimlico.domain.scopes import validate_scope
from pimlico.errors import (
    FieldError,
    InvalidInput,
    RoleAssignmentDoesNotExist,
    RoleAssignmentExists,
)
from pimlico.services.assignment_events import ended, follow_up
from pimlico.services.decisions import authorize
from pimlico.services.guards import keeping_a_global_administrator
from pimlico.services.lookups import get_row
from pimlico.services.nesting import check_nesting, check_role_assignable_nesting
from pimlico.services.runtime import Actor, Pimlico, record_change

_ASSIGNMENTS = Base.metadata.tables[AssignmentRow.__tablename__]


def write_permission(session: Session, target: Target) -> str:
    if target.type is TargetType.ROLE:
        return Perm.ROLE_ASSIGNMENTS_WRITE
    group = get_row(session, GroupRow, target.object_id, "group")
    return (
        Perm.ROLE_ASSIGNABLE_GROUPS_WRITE if group.role_assignable else Perm.GROUP_ASSIGNMENTS_WRITE
    )


def check_target(session: Session, principal: PrincipalRef, target: Target) -> None:
    if target.type is TargetType.ROLE:
        validate_scope(target.scope, "target.scope")
        get_row(session, RoleRow, target.object_id, "role")
        if principal.type is PrincipalType.GROUP:
            group = get_row(session, GroupRow, principal.id, "group")
            if not group.role_assignable:
                raise InvalidInput(
                    "this group cannot hold roles",
                    [
                        FieldError(
                            "principal",
                            "RoleAssignableGroupRequired",
                            "only groups created role-assignable can be assigned roles",
                        )
                    ],
                )
    else:
        if target.scope != "/":
            raise InvalidInput(
                "group targets have no scope",
                [FieldError("target.scope", "ScopeFormat", "a group target's scope is '/'")],
            )
        group = get_row(session, GroupRow, target.object_id, "group")
        if principal.type is PrincipalType.GROUP:
            if target.type is TargetType.GROUP_OWNER:
                raise InvalidInput(
                    "invalid owner",
                    [FieldError("principal", "OwnerType", "owners are users or service accounts")],
                )
            member = get_row(session, GroupRow, principal.id, "group")
            check_role_assignable_nesting(group, member)


def overlapping(
    session: Session,
    *,
    kind: AssignmentKind,
    principal: PrincipalRef,
    target: Target,
    start: datetime,
    end: datetime | None,
    now: datetime,
    excluding: str | None = None,
) -> AssignmentRow | None:
    """A current or future assignment of the same thing whose window meets ``[start, end)``."""
    query = not_removed(kind, principal, target).where(
        or_(AssignmentRow.end_at.is_(None), AssignmentRow.end_at > max(start, now))
    )
    if end is not None:
        query = query.where(AssignmentRow.start_at < end)
    if excluding is not None:
        query = query.where(AssignmentRow.id != excluding)
    return session.scalars(query).first()


def not_removed(
    kind: AssignmentKind, principal: PrincipalRef, target: Target
) -> Select[AssignmentRow]:
    """The principal's own assignments of ``kind`` of ``target`` that were not removed (they
    may have run to their end)."""
    return select(AssignmentRow).where(
        AssignmentRow.kind == kind.value,
        AssignmentRow.principal_type == principal.type.value,
        AssignmentRow.principal_id == principal.id,
        AssignmentRow.target_type == target.type.value,
        AssignmentRow.target_id == target.object_id,
        AssignmentRow.scope == target.scope,
        AssignmentRow.ended_at.is_(None),
    )


def insert_assignment(rt: Pimlico, w: WriteContext, assignment: Assignment) -> Assignment:
    """Store ``assignment`` in the write ``w`` and audit it, refusing an overlapping one.

    Checks neither the caller's permission nor the target's rules: the caller has (the
    administrators' ``assignment_changes.create``, or the request workflow after
    ``request_rules.plan``).
    """
    s = w.session
    kind, principal, target = assignment.kind, assignment.principal, assignment.target
    clash = overlapping(
        s,
        kind=kind,
        principal=principal,
        target=target,
        start=assignment.start,
        end=assignment.end,
        now=w.at,
    )
    if clash is not None:
        raise RoleAssignmentExists(
            f"The {kind.value} assignment already exists ({clash.id}, "
            f"from {format_instant(clash.start_at)})"
        )
    add_assignment(rt, w, assignment)
    s.flush()
    return assignment


def add_assignment(
    rt: Pimlico, w: WriteContext, assignment: Assignment, *, later: bool = False
) -> None:
    """Add ``assignment`` to the write ``w`` and audit it, for a caller that knows nothing
    overlaps it. Queries only to check a group's nesting. ``later``: inserted when the write
    finishes (``WriteContext.insert_later``), for a caller that will not read it back."""
    principal, target = assignment.principal, assignment.target
    if principal.type is PrincipalType.GROUP and target.type is TargetType.GROUP_MEMBER:
        check_nesting(
            w.session,
            child=principal.id,
            parent=target.object_id,
            now=w.at,
            max_depth=rt.settings.max_nesting_depth,
        )
    if later:
        w.insert_later(_ASSIGNMENTS, mappers.assignment_values(assignment))
        w.stored[("assignment", assignment.id)] = assignment
    else:
        w.session.add(mappers.assignment_row(assignment))
    kind = assignment.kind.value
    record_change(w, f"assignment.{kind}.assign", assignment, reason=assignment.justification)
    follow_up(w, assignment)


def current_for_change(
    rt: Pimlico, w: WriteContext, actor: Actor, assignment_id: str
) -> tuple[AssignmentRow, Assignment]:
    """The row of a current assignment, locked, and the actor's right to change it."""
    row = get_row(w.session, AssignmentRow, assignment_id, "assignment", lock=True)
    if row.ended_at is not None or (row.end_at is not None and row.end_at <= w.at):
        raise RoleAssignmentDoesNotExist(
            f"assignment {assignment_id} has ended; there is nothing to change"
        )
    before = mappers.assignment(row)
    authorize(rt, actor, write_permission(w.session, before.target), before.target.scope)
    return row, before


def record_assignment_change(
    w: WriteContext, verb: str, before: Assignment, row: AssignmentRow, *, reason: str | None
) -> Assignment:
    """Audit the change of ``row`` from ``before`` and publish (or schedule) its events."""
    after = mappers.assignment(row)
    record_change(w, f"assignment.{before.kind.value}.{verb}", after, before=before, reason=reason)
    if after.ended_at is not None:
        ended(w, after)
    else:
        follow_up(w, after, before)
    return after


def keeping_an_administrator(rt: Pimlico, w: WriteContext) -> AbstractContextManager[None]:
    return keeping_a_global_administrator(
        w.session, now=w.at, max_depth=rt.settings.max_nesting_depth
    )


def end_assignment(
    rt: Pimlico,
    w: WriteContext,
    row: AssignmentRow,
    before: Assignment,
    *,
    by: str,
    reason: str | None,
) -> Assignment:
    """End the locked assignment ``row`` now, in the write ``w``, and audit it ("remove").

    Checks no permission (the caller has); keeps a Global Administrator.
    """
    with keeping_an_administrator(rt, w):
        row.ended_at, row.ended_by, row.end_reason = w.at, by, reason
    return record_assignment_change(w, "remove", before, row, reason=reason)
