"""Administrators' assignment use cases: assign, update, remove, extend and renew — each one
stored as a request (``admin_assign``, ``admin_update``, …), as every assignment change is.

Each takes the write lock, loads the target's settings, checks every rule at once (raising
``PolicyViolation`` with all of them), makes the change, and stores the administrator's
request for it — granted at once, ``provisioned`` (``revoked`` for a removal) or, for a later
start, ``granted`` until then — all in one commit. Assignments end; rows stay. Each accepts
a ticket, an idempotency key (the same key from the same caller answers the first outcome)
and a dry run (every check made, nothing kept). ``request_change`` is the same, driven by a
request's action and schedule (``services.requests.submit``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from pimlico.db import mappers
from pimlico.db.audit import WriteContext
from pimlico.db.tables import AssignmentRow, RequestRow
from pimlico.domain.catalogue import Perm
from pimlico.domain.model import Assignment, AssignmentKind, PrincipalRef, Target
from pimlico.domain.requests import ExpirationType, RequestAction, Schedule, Ticket
from pimlico.errors import FieldError, InvalidInput
from pimlico.services import assignment_changes as changes
from pimlico.services.decisions import authorize
from pimlico.services.lookups import check_instant, check_text, get_row
from pimlico.services.request_effects import record_admin
from pimlico.services.request_records import RequestView, check_ticket, submitting, view_of
from pimlico.services.runtime import Actor, Pimlico, Written


@dataclass(frozen=True, slots=True)
class AdminOutcome:
    """An administrator's change: the assignment as it is after it, and its request."""

    assignment: Assignment
    request: RequestView


def _as_request(
    rt: Pimlico, actor: Actor, action: RequestAction, asked: changes.Asked, change: changes.Change
) -> Written[AdminOutcome]:
    asked = changes.Asked(
        check_text(asked.justification, "justification"),
        check_ticket(asked.ticket),
        check_text(asked.idempotency_key, "idempotency_key"),
        asked.dry_run,
        asked.mfa_verified,
    )
    requested_by = actor.principal_id or actor.name

    def body(w: WriteContext) -> AdminOutcome:
        after = change(w, actor, asked)
        row = record_admin(
            w,
            action,
            requested_by,
            after,
            justification=asked.justification,
            ticket=asked.ticket,
            idempotency_key=asked.idempotency_key,
        )
        return AdminOutcome(after, view_of(w.session, row, dry_run=asked.dry_run))

    def replay(s: Session, row: RequestRow) -> AdminOutcome:
        if row.action != action.value or row.assignment_id is None:
            raise InvalidInput(
                "the idempotency key was used for another request",
                [
                    FieldError(
                        "idempotency_key",
                        "IdempotencyKeyReused",
                        f"it names request {row.id} ({row.action}); use a new key",
                    )
                ],
            )
        stored = get_row(s, AssignmentRow, row.assignment_id, "assignment")
        return AdminOutcome(mappers.assignment(stored), view_of(s, row))

    return submitting(
        rt,
        actor,
        requested_by=requested_by,
        idempotency_key=asked.idempotency_key,
        dry_run=asked.dry_run,
        body=body,
        replay=replay,
    )


def _assignment(written: Written[AdminOutcome]) -> Written[Assignment]:
    return Written(written.value.assignment, written.revision)


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
    ticket: Ticket | None = None,
    idempotency_key: str | None = None,
    dry_run: bool = False,
) -> Written[Assignment]:
    """Grant ``target`` to ``principal`` (eligibly or actively) for ``[start, end)``.

    No end and no duration means permanent, which the target's settings must allow. A start
    in the past means now: history is never rewritten.
    """
    check_instant(start, "start")
    check_instant(end, "end")
    asked = changes.Asked(justification, ticket, idempotency_key, dry_run, mfa_verified)

    def change(w: WriteContext, actor: Actor, asked: changes.Asked) -> Assignment:
        return changes.create(rt, w, actor, kind, principal, target, start, end, duration, asked)

    return _assignment(_as_request(rt, actor, RequestAction.ADMIN_ASSIGN, asked, change))


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
    ticket: Ticket | None = None,
    idempotency_key: str | None = None,
    dry_run: bool = False,
) -> Written[Assignment]:
    """Change the window of a current assignment (``permanent`` drops its end).

    A start may move later, or be set for one that has not begun, but never into the past.
    """
    check_instant(start, "start")
    check_instant(end, "end")
    asked = changes.Asked(justification, ticket, idempotency_key, dry_run, mfa_verified)

    def change(w: WriteContext, actor: Actor, asked: changes.Asked) -> Assignment:
        return changes.update(rt, w, actor, assignment_id, start, end, duration, permanent, asked)

    return _assignment(_as_request(rt, actor, RequestAction.ADMIN_UPDATE, asked, change))


def remove_assignment(
    rt: Pimlico,
    *,
    actor: Actor,
    assignment_id: str,
    reason: str | None = None,
    ticket: Ticket | None = None,
    idempotency_key: str | None = None,
    dry_run: bool = False,
) -> Written[Assignment]:
    """End an assignment now (or cancel one that has not started). Access stops at once."""
    asked = changes.Asked(reason, ticket, idempotency_key, dry_run)

    def change(w: WriteContext, actor: Actor, asked: changes.Asked) -> Assignment:
        return changes.remove(rt, w, actor, assignment_id, asked)

    return _assignment(_as_request(rt, actor, RequestAction.ADMIN_REMOVE, asked, change))


def extend_assignment(
    rt: Pimlico,
    *,
    actor: Actor,
    assignment_id: str,
    end: datetime | None = None,
    duration: timedelta | None = None,
    justification: str | None = None,
    mfa_verified: bool = False,
    ticket: Ticket | None = None,
    idempotency_key: str | None = None,
    dry_run: bool = False,
) -> Written[Assignment]:
    """Move a current, time-bound assignment's end later (``duration`` counts from now).

    The new remaining time may be as long as the settings' maximum, measured from now.
    """
    check_instant(end, "end")
    asked = changes.Asked(justification, ticket, idempotency_key, dry_run, mfa_verified)

    def change(w: WriteContext, actor: Actor, asked: changes.Asked) -> Assignment:
        return changes.extend(rt, w, actor, assignment_id, end, duration, asked)

    return _assignment(_as_request(rt, actor, RequestAction.ADMIN_EXTEND, asked, change))


def renew_assignment(
    rt: Pimlico,
    *,
    actor: Actor,
    assignment_id: str,
    end: datetime | None = None,
    duration: timedelta | None = None,
    justification: str | None = None,
    mfa_verified: bool = False,
    ticket: Ticket | None = None,
    idempotency_key: str | None = None,
    dry_run: bool = False,
) -> Written[Assignment]:
    """Grant an expired assignment again, from now: a new assignment; the old one stays."""
    check_instant(end, "end")
    asked = changes.Asked(justification, ticket, idempotency_key, dry_run, mfa_verified)

    def change(w: WriteContext, actor: Actor, asked: changes.Asked) -> Assignment:
        return changes.renew(rt, w, actor, assignment_id, end, duration, asked)

    return _assignment(_as_request(rt, actor, RequestAction.ADMIN_RENEW, asked, change))


def request_change(
    rt: Pimlico,
    *,
    actor: Actor,
    action: RequestAction,
    kind: AssignmentKind | None = None,
    principal: PrincipalRef | None = None,
    target: Target | None = None,
    assignment_id: str | None = None,
    schedule: Schedule | None = None,
    asked: changes.Asked | None = None,
) -> Written[AdminOutcome]:
    """An administrator's request by its ``action``: ``admin_assign`` needs ``kind``,
    ``principal`` and ``target``; the others the ``assignment_id`` they act on. The
    ``schedule`` gives the window (``no_expiration``: permanent); a removal needs none, and
    an update given no duration nor end keeps the end (under the write lock)."""
    if action.is_self_service:
        raise ValueError(f"{action.value} is self-service; see services.requests.submit")
    schedule = schedule or Schedule()
    found = schedule.problems()
    keeps_the_end = action in (RequestAction.ADMIN_REMOVE, RequestAction.ADMIN_UPDATE)
    if (
        schedule.expiration is ExpirationType.AFTER_DURATION
        and schedule.duration is None
        and not keeps_the_end
    ):
        found.append(FieldError("schedule.duration", "Required", "give a duration"))
    check_instant(schedule.start, "schedule.start")
    check_instant(schedule.end, "schedule.end")
    change: changes.Change | None = None
    if action is RequestAction.ADMIN_ASSIGN:
        if kind is None or principal is None or target is None:
            found.append(FieldError("target", "Required", "give the kind, principal and target"))
        else:
            change = _assigning(rt, kind, principal, target, schedule)
    elif assignment_id is None:
        found.append(FieldError("assignment_id", "Required", f"{action.value} acts on one"))
    else:
        change = _changing(rt, action, assignment_id, schedule)
    if found or change is None:
        raise InvalidInput(f"the {action.value} request is incomplete or inconsistent", found)
    return _as_request(rt, actor, action, asked or changes.Asked(), change)


def _assigning(
    rt: Pimlico, kind: AssignmentKind, principal: PrincipalRef, target: Target, when: Schedule
) -> changes.Change:
    def change(w: WriteContext, actor: Actor, asked: changes.Asked) -> Assignment:
        return changes.create(
            rt, w, actor, kind, principal, target, when.start, when.end, when.duration, asked
        )

    return change


def _changing(
    rt: Pimlico, action: RequestAction, assignment_id: str, when: Schedule
) -> changes.Change:
    permanent = when.expiration is ExpirationType.NO_EXPIRATION
    start, end, duration = when.start, when.end, when.duration

    def change(w: WriteContext, actor: Actor, asked: changes.Asked) -> Assignment:
        if action is RequestAction.ADMIN_UPDATE:
            return changes.update(
                rt, w, actor, assignment_id, start, end, duration, permanent, asked
            )
        if action is RequestAction.ADMIN_REMOVE:
            return changes.remove(rt, w, actor, assignment_id, asked)
        if action is RequestAction.ADMIN_EXTEND:
            return changes.extend(rt, w, actor, assignment_id, end, duration, asked)
        return changes.renew(rt, w, actor, assignment_id, end, duration, asked)

    return change


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
