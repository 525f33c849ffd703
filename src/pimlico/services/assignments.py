"""Administrators' assignment use cases: assign, update, remove, extend and renew.

Each takes the write lock, loads the target's settings, checks every rule at once (raising
``PolicyViolation`` with all of them), and records the change. Assignments end; rows stay.
The request workflow (issue "Requests, approvals") wraps these same functions: a request
that is granted calls them with its ``request_id``.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from pimlico.db import mappers
from pimlico.db.audit import WriteContext
from pimlico.db.tables import AssignmentRow, GroupRow, RoleRow
from pimlico.domain.assignment_rules import (
    assignment_problems,
    caller_problems,
    resolve_end,
    window_problems,
)
from pimlico.domain.audit import format_instant
from pimlico.domain.catalogue import Perm
from pimlico.domain.model import (
    Assignment,
    AssignmentKind,
    PrincipalRef,
    PrincipalType,
    Target,
    TargetType,
    new_id,
)
from pimlico.domain.scopes import validate_scope
from pimlico.errors import (
    FieldError,
    InvalidInput,
    PolicyViolation,
    RoleAssignmentDoesNotExist,
    RoleAssignmentExists,
)
from pimlico.services.decisions import authorize
from pimlico.services.guards import keeping_a_global_administrator
from pimlico.services.lookups import check_instant, check_text, get_row, principal_row
from pimlico.services.nesting import check_nesting, check_role_assignable_nesting
from pimlico.services.role_settings import load_policy
from pimlico.services.runtime import Actor, Pimlico, Written, record_change


def _write_permission(session: Session, target: Target) -> str:
    if target.type is TargetType.ROLE:
        return Perm.ROLE_ASSIGNMENTS_WRITE
    group = get_row(session, GroupRow, target.object_id, "group")
    return (
        Perm.ROLE_ASSIGNABLE_GROUPS_WRITE if group.role_assignable else Perm.GROUP_ASSIGNMENTS_WRITE
    )


def _check_target(session: Session, principal: PrincipalRef, target: Target) -> None:
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


def _overlapping(
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
    query = select(AssignmentRow).where(
        AssignmentRow.kind == kind.value,
        AssignmentRow.principal_type == principal.type.value,
        AssignmentRow.principal_id == principal.id,
        AssignmentRow.target_type == target.type.value,
        AssignmentRow.target_id == target.object_id,
        AssignmentRow.scope == target.scope,
        AssignmentRow.ended_at.is_(None),
        or_(AssignmentRow.end_at.is_(None), AssignmentRow.end_at > max(start, now)),
    )
    if end is not None:
        query = query.where(AssignmentRow.start_at < end)
    if excluding is not None:
        query = query.where(AssignmentRow.id != excluding)
    return session.scalars(query).first()


def assign(
    rt: Pimlico,
    *,
    actor: Actor,
    kind: AssignmentKind,
    principal: PrincipalRef,
    target: Target,
    start: datetime | None = None,
    end: datetime | None = None,
    duration: timedelta | None = None,
    justification: str | None = None,
    mfa_verified: bool = False,
    request_id: str | None = None,
    activated_from: str | None = None,
) -> Written[Assignment]:
    """Grant ``target`` to ``principal`` (eligibly or actively) for ``[start, end)``.

    No end and no duration means permanent, which the target's settings must allow. A start
    in the past means now: history is never rewritten.
    """
    justification = check_text(justification, "justification")
    check_instant(start, "start")
    check_instant(end, "end")
    with rt.writing(actor, request_id=request_id) as w:
        assignment = _create(
            rt,
            w,
            actor,
            kind=kind,
            principal=principal,
            target=target,
            start=start,
            end=end,
            duration=duration,
            justification=justification,
            mfa_verified=mfa_verified,
            activated_from=activated_from,
        )
    return Written(assignment, w.revision)


def _create(
    rt: Pimlico,
    w: WriteContext,
    actor: Actor,
    *,
    kind: AssignmentKind,
    principal: PrincipalRef,
    target: Target,
    start: datetime | None,
    end: datetime | None,
    duration: timedelta | None,
    justification: str | None,
    mfa_verified: bool,
    activated_from: str | None = None,
) -> Assignment:
    s = w.session
    principal_row(s, principal)
    _check_target(s, principal, target)
    authorize(rt, actor, _write_permission(s, target), target.scope)
    if principal.type is PrincipalType.SERVICE_ACCOUNT and kind is AssignmentKind.ELIGIBLE:
        raise InvalidInput(
            "service accounts cannot be eligible",
            [
                FieldError(
                    "kind",
                    "ServiceAccountActiveOnly",
                    "a service account holds active, time-bound assignments only",
                )
            ],
        )
    begin = w.at if start is None or start < w.at else start
    finish, problems = resolve_end(begin, end, duration)
    policy = load_policy(s, target.type, target.object_id)
    problems += assignment_problems(
        policy.settings,
        kind=kind,
        start=begin,
        end=finish,
        now=w.at,
        justification=justification,
        mfa_verified=mfa_verified or actor.system,
    )
    problems += _service_account_problems(principal, finish)
    if problems:
        raise PolicyViolation(problems)
    return insert_assignment(
        rt,
        w,
        Assignment(
            id=new_id(),
            kind=kind,
            principal=principal,
            target=target,
            start=begin,
            end=finish,
            created_at=w.at,
            created_by=actor.name,
            justification=justification,
            activated_from=activated_from,
            request_id=w.request_id,
        ),
    )


def insert_assignment(rt: Pimlico, w: WriteContext, assignment: Assignment) -> Assignment:
    """Store ``assignment`` in the write ``w`` and audit it, refusing an overlapping one.

    Checks neither the caller's permission nor the target's rules: the caller has (the
    administrators' ``_create``, or the request workflow after ``request_rules.plan``).
    """
    s = w.session
    kind, principal, target = assignment.kind, assignment.principal, assignment.target
    clash = _overlapping(
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
    if principal.type is PrincipalType.GROUP and target.type is TargetType.GROUP_MEMBER:
        check_nesting(
            s,
            child=principal.id,
            parent=target.object_id,
            now=w.at,
            max_depth=rt.settings.max_nesting_depth,
        )
    s.add(mappers.assignment_row(assignment))
    s.flush()
    record_change(w, f"assignment.{kind.value}.assign", assignment, reason=assignment.justification)
    return assignment


def _service_account_problems(principal: PrincipalRef, end: datetime | None) -> list[FieldError]:
    if principal.type is PrincipalType.SERVICE_ACCOUNT and end is None:
        return [FieldError("end", "ExpirationRule", "a service account's assignment needs an end")]
    return []


def _current_for_change(
    rt: Pimlico, w: WriteContext, actor: Actor, assignment_id: str
) -> tuple[AssignmentRow, Assignment]:
    """The row of a current assignment, locked, and the actor's right to change it."""
    row = get_row(w.session, AssignmentRow, assignment_id, "assignment", lock=True)
    if row.ended_at is not None or (row.end_at is not None and row.end_at <= w.at):
        raise RoleAssignmentDoesNotExist(
            f"assignment {assignment_id} has ended; there is nothing to change"
        )
    before = mappers.assignment(row)
    authorize(rt, actor, _write_permission(w.session, before.target), before.target.scope)
    return row, before


def _record_change(
    w: WriteContext, verb: str, before: Assignment, row: AssignmentRow, *, reason: str | None
) -> Assignment:
    after = mappers.assignment(row)
    record_change(w, f"assignment.{before.kind.value}.{verb}", after, before=before, reason=reason)
    return after


def _keeping_a_global_administrator(rt: Pimlico, w: WriteContext) -> AbstractContextManager[None]:
    return keeping_a_global_administrator(
        w.session, now=w.at, max_depth=rt.settings.max_nesting_depth
    )


def update_assignment(
    rt: Pimlico,
    *,
    actor: Actor,
    assignment_id: str,
    start: datetime | None = None,
    end: datetime | None = None,
    duration: timedelta | None = None,
    permanent: bool = False,
    justification: str | None = None,
    mfa_verified: bool = False,
    request_id: str | None = None,
) -> Written[Assignment]:
    """Change the window of a current assignment (``permanent`` drops its end).

    A start may move later, or be set for one that has not begun, but never into the past.
    """
    justification = check_text(justification, "justification")
    check_instant(start, "start")
    check_instant(end, "end")
    with rt.writing(actor, request_id=request_id) as w:
        s = w.session
        row, before = _current_for_change(rt, w, actor, assignment_id)
        begin = start or before.start
        if start is not None and start != before.start and start < w.at:
            raise PolicyViolation(
                [FieldError("start", "ExpirationRule", "a start cannot be moved into the past")]
            )
        if permanent:
            finish: datetime | None = None
            problems: list[FieldError] = []
        elif end is None and duration is None:
            finish, problems = before.end, []
        else:
            finish, problems = resolve_end(begin, end, duration)
        policy = load_policy(s, before.target.type, before.target.object_id)
        problems += assignment_problems(
            policy.settings,
            kind=before.kind,
            start=begin,
            end=finish,
            now=w.at,
            justification=justification,
            mfa_verified=mfa_verified or actor.system,
        )
        problems += _service_account_problems(before.principal, finish)
        if problems:
            raise PolicyViolation(problems)
        clash = _overlapping(
            s,
            kind=before.kind,
            principal=before.principal,
            target=before.target,
            start=begin,
            end=finish,
            now=w.at,
            excluding=assignment_id,
        )
        if clash is not None:
            raise RoleAssignmentExists(f"the new window overlaps assignment {clash.id}")
        with _keeping_a_global_administrator(rt, w):
            row.start_at, row.end_at = begin, finish
        after = _record_change(w, "update", before, row, reason=justification)
    return Written(after, w.revision)


def remove_assignment(
    rt: Pimlico,
    *,
    actor: Actor,
    assignment_id: str,
    reason: str | None = None,
    request_id: str | None = None,
) -> Written[Assignment]:
    """End an assignment now (or cancel one that has not started). Access stops at once."""
    reason = check_text(reason, "reason")
    with rt.writing(actor, request_id=request_id) as w:
        row, before = _current_for_change(rt, w, actor, assignment_id)
        after = end_assignment(rt, w, row, before, by=actor.name, reason=reason)
    return Written(after, w.revision)


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
    with _keeping_a_global_administrator(rt, w):
        row.ended_at, row.ended_by, row.end_reason = w.at, by, reason
    return _record_change(w, "remove", before, row, reason=reason)


def extend_assignment(
    rt: Pimlico,
    *,
    actor: Actor,
    assignment_id: str,
    end: datetime | None = None,
    duration: timedelta | None = None,
    justification: str | None = None,
    mfa_verified: bool = False,
    request_id: str | None = None,
) -> Written[Assignment]:
    """Move a current, time-bound assignment's end later (``duration`` counts from now).

    The new remaining time may be as long as the settings' maximum, measured from now.
    """
    justification = check_text(justification, "justification")
    check_instant(end, "end")
    with rt.writing(actor, request_id=request_id) as w:
        s = w.session
        row, before = _current_for_change(rt, w, actor, assignment_id)
        if before.end is None:
            raise InvalidInput(
                "nothing to extend",
                [FieldError("end", "ExpirationRule", "the assignment is already permanent")],
            )
        policy = load_policy(s, before.target.type, before.target.object_id)
        finish, problems = resolve_end(w.at, end, duration)
        problems += caller_problems(
            policy.settings,
            kind=before.kind,
            justification=justification,
            mfa_verified=mfa_verified or actor.system,
        )
        if finish is None:
            problems.append(FieldError("end", "Required", "give a new end or a duration"))
        elif finish <= before.end:
            problems.append(
                FieldError("end", "ExpirationRule", "an extension ends later than the current end")
            )
        else:
            problems += window_problems(
                policy.settings,
                kind=before.kind,
                start=before.start,
                end=finish,
                measured_from=w.at,
            )
        if problems:
            raise PolicyViolation(problems)
        row.end_at = finish
        after = _record_change(w, "extend", before, row, reason=justification)
    return Written(after, w.revision)


def renew_assignment(
    rt: Pimlico,
    *,
    actor: Actor,
    assignment_id: str,
    end: datetime | None = None,
    duration: timedelta | None = None,
    justification: str | None = None,
    mfa_verified: bool = False,
    request_id: str | None = None,
) -> Written[Assignment]:
    """Grant an expired assignment again, from now: a new assignment; the old one stays."""
    justification = check_text(justification, "justification")
    check_instant(end, "end")
    with rt.writing(actor, request_id=request_id) as w:
        old = mappers.assignment(get_row(w.session, AssignmentRow, assignment_id, "assignment"))
        authorize(rt, actor, _write_permission(w.session, old.target), old.target.scope)
        if old.end is None or old.ended_at is not None or old.end > w.at:
            raise InvalidInput(
                "only an expired assignment can be renewed",
                [
                    FieldError(
                        "assignment_id",
                        "RenewRule",
                        "renew is for assignments that ran to their end; extend a current one",
                    )
                ],
            )
        renewed = _create(
            rt,
            w,
            actor,
            kind=old.kind,
            principal=old.principal,
            target=old.target,
            start=None,
            end=end,
            duration=duration,
            justification=justification,
            mfa_verified=mfa_verified,
        )
    return Written(renewed, w.revision)


def list_assignments(
    rt: Pimlico,
    *,
    actor: Actor,
    principal: PrincipalRef | None = None,
    target: Target | None = None,
    kind: AssignmentKind | None = None,
    include_ended: bool = False,
) -> list[Assignment]:
    """Assignments, newest first; without ``include_ended`` only current and future ones."""
    if not (actor.system or (principal is not None and principal.id == actor.principal_id)):
        authorize(rt, actor, Perm.ASSIGNMENTS_READ)
    now = rt.clock.now()
    query = select(AssignmentRow)
    if principal is not None:
        query = query.where(
            AssignmentRow.principal_type == principal.type.value,
            AssignmentRow.principal_id == principal.id,
        )
    if target is not None:
        query = query.where(
            AssignmentRow.target_type == target.type.value,
            AssignmentRow.target_id == target.object_id,
        )
    if kind is not None:
        query = query.where(AssignmentRow.kind == kind.value)
    if not include_ended:
        query = query.where(
            AssignmentRow.ended_at.is_(None),
            or_(AssignmentRow.end_at.is_(None), AssignmentRow.end_at > now),
        )
    with rt.reading() as s:
        rows = s.scalars(query.order_by(AssignmentRow.created_at.desc(), AssignmentRow.id))
        return [mappers.assignment(r) for r in rows]
