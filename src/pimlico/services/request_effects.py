"""Carrying out a granted request: the assignment change it asked for, in the same write.

A self-service request is carried out when it needs no approval (at submission) or when its
last stage approves; an administrator's request at once (``record_admin``). Either way the
request and the assignment change commit together, so a request is never ``provisioned``
without its assignment nor the other way round. A change that starts later leaves the
request ``granted`` and enqueues ``request.provision`` for its start, when ``provision_due``
moves it to ``provisioned``.

What is granted is the window validated at submission, starting no earlier than the
approval; an activation asked to start now lasts the asked duration from its approval, as in
Entra, but never past the eligibility. When the world moved on while a request waited (the
eligibility ended, an explicit window passed, the assignment to extend ended, another
assignment now overlaps), the request ``failed`` with the reason instead.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from sqlalchemy.orm import Session

from pimlico.db import mappers
from pimlico.db.audit import WriteContext
from pimlico.db.request_store import (
    REQUESTS,
    request_of,
    request_row,
    request_values,
    store_request,
)
from pimlico.db.tables import AssignmentRow, RequestRow
from pimlico.domain.decisions import HeldAssignment
from pimlico.domain.model import (
    Assignment,
    AssignmentKind,
    PrincipalRef,
    Target,
    Window,
    new_id,
)
from pimlico.domain.requests import (
    ExpirationType,
    Request,
    RequestAction,
    RequestStatus,
    Schedule,
    Ticket,
)
from pimlico.errors import RoleAssignmentExists
from pimlico.jobs.outbox import enqueue
from pimlico.services.assignment_store import (
    add_assignment,
    end_assignment,
    insert_assignment,
    not_removed,
    record_assignment_change,
)
from pimlico.services.lookups import get_row
from pimlico.services.request_records import move, record_submitted
from pimlico.services.runtime import Pimlico

PROVISION_JOB = "request.provision"
_CREATING = frozenset(
    {
        RequestAction.ADMIN_ASSIGN,
        RequestAction.ADMIN_RENEW,
        RequestAction.SELF_ACTIVATE,
        RequestAction.SELF_RENEW,
    }
)
"""The actions whose change is a new assignment (which may start later)."""


def carry_out(rt: Pimlico, w: WriteContext, row: RequestRow, request: Request) -> None:
    """Make the change of the granted self-service request ``row``."""
    action = request.action
    if action is RequestAction.SELF_DEACTIVATE:
        assert row.assignment_id is not None
        locked = get_row(w.session, AssignmentRow, row.assignment_id, "assignment", lock=True)
        end_assignment(
            rt, w, locked, mappers.assignment(locked), by=w.actor or "", reason="deactivated"
        )
        move(w, row, request, RequestStatus.REVOKED, "deactivated")
    elif action is RequestAction.SELF_EXTEND:
        _extend(w, row, request)
    else:
        _create(rt, w, row, request)


def _create(rt: Pimlico, w: WriteContext, row: RequestRow, request: Request) -> None:
    """Activate (an active assignment from the eligibility) or renew (a new one, same kind),
    checking the world again: the request may have waited for approval."""
    eligible = None
    if request.action is RequestAction.SELF_ACTIVATE:
        eligible = eligible_of(rt, w.session, request.principal, request.target, w.at)
        if eligible is None:
            move(w, row, request, RequestStatus.FAILED, "not provisioned: the eligibility ended")
            return
        if row.start_at == row.requested_at and row.end_at is not None:
            # "Start now", approved later: the asked duration counts from the approval, as
            # in Entra, still within the eligibility.
            end = w.at + (row.end_at - row.start_at)
            limit = eligible.effective_end
            row.start_at, row.end_at = w.at, end if limit is None else min(end, limit)
    _provide(rt, w, row, request, eligible, checked=False)


def activate_now(
    rt: Pimlico, w: WriteContext, request: Request, window: Window, eligible: Assignment
) -> tuple[RequestRow, Assignment | None]:
    """Store and carry out, in the write ``w``, the self-activation ``request`` that
    ``request_rules.plan`` judged against ``eligible`` (and the requester's own activations:
    none current or future) and granted without approval; the request's row and the
    assignment made (``None`` if its window had already ended).

    Queries nothing but the jobs' dedupe keys, and adds its rows to those the write inserts
    when it finishes: the caller has read what the rules needed, so that many activations
    can share one write (``services.activations``). Nothing in the write reads them back."""
    row = request_row(request, window, ())
    record_submitted(w, row, request.justification, request)
    created = _provide(rt, w, row, request, eligible, checked=True)
    w.insert_later(REQUESTS, request_values(row))
    return row, created


def _provide(
    rt: Pimlico,
    w: WriteContext,
    row: RequestRow,
    request: Request,
    eligible: Assignment | None,
    *,
    checked: bool,
) -> Assignment | None:
    """Make the assignment the granted ``row`` asks for and settle the request, or fail it
    if its window ended. ``checked``: the caller knows no assignment overlaps it."""
    start = max(row.start_at or w.at, w.at)
    if row.end_at is not None and row.end_at <= start:
        move(w, row, request, RequestStatus.FAILED, "not provisioned: the window ended")
        return None
    created = Assignment(
        id=new_id(),
        kind=request.kind,
        principal=request.principal,
        target=request.target,
        start=start,
        end=row.end_at,
        created_at=w.at,
        created_by=w.actor,
        justification=request.justification,
        activated_from=eligible.id if eligible else None,
        request_id=request.id,
    )
    if checked:
        add_assignment(rt, w, created, later=True)
    else:
        try:
            insert_assignment(rt, w, created)
        except RoleAssignmentExists as clash:
            move(w, row, request, RequestStatus.FAILED, f"not provisioned: {clash.message}")
            return None
    row.assignment_id = created.id
    settle(w, row, request, start)
    return created


def _extend(w: WriteContext, row: RequestRow, request: Request) -> None:
    assert row.assignment_id is not None
    assert row.end_at is not None
    locked = get_row(w.session, AssignmentRow, row.assignment_id, "assignment", lock=True)
    before = mappers.assignment(locked)
    if before.ended_at is not None or (before.end is not None and before.end <= w.at):
        move(w, row, request, RequestStatus.FAILED, "not provisioned: the assignment ended")
        return
    if before.end is None or before.end >= row.end_at:
        # Changed while the request waited: it would shorten the assignment now.
        why = "not provisioned: the assignment already ends at or after the asked end"
        move(w, row, request, RequestStatus.FAILED, why)
        return
    locked.end_at = row.end_at
    record_assignment_change(w, "extend", before, locked, reason=request.justification)
    move(w, row, request, RequestStatus.PROVISIONED, "extended")


def settle(w: WriteContext, row: RequestRow, request: Request, start: datetime) -> None:
    """After the change: ``provisioned`` (``revoked`` for a removal), or — for a new
    assignment that starts later — still ``granted`` with a ``request.provision`` job due at
    ``start``. (An update or extension of a future assignment is made at once.)"""
    if request.action.removes:
        move(w, row, request, RequestStatus.REVOKED, "removed")
    elif start <= w.at or request.action not in _CREATING:
        move(w, row, request, RequestStatus.PROVISIONED, "in force")
    else:
        _provision_at(w, row.id, start)


def _provision_at(w: WriteContext, request_id: str, start: datetime) -> None:
    enqueue(
        w,
        kind=PROVISION_JOB,
        payload={"request_id": request_id},
        due_at=start,
        dedupe_key=f"{PROVISION_JOB}:{request_id}:{start.isoformat()}",
    )


def provision_due(w: WriteContext, *, request_id: str) -> None:
    """The ``request.provision`` job: a granted request whose assignment has started (and was
    not canceled or removed meanwhile) is ``provisioned``; one whose start was moved later
    waits for the new start. Idempotent."""
    row = get_row(w.session, RequestRow, request_id, "request", lock=True)
    request = request_of(row)
    if request.status is not RequestStatus.GRANTED or row.assignment_id is None:
        return
    assignment = mappers.assignment(
        get_row(w.session, AssignmentRow, row.assignment_id, "assignment")
    )
    if assignment.ended_at is not None and assignment.ended_at <= assignment.start:
        move(w, row, request, RequestStatus.FAILED, "not provisioned: ended before its start")
    elif assignment.start <= w.at:
        move(w, row, request, RequestStatus.PROVISIONED, "started")
    else:
        _provision_at(w, row.id, assignment.start)


def has_started(s: Session, row: RequestRow, at: datetime) -> bool:
    """Whether the assignment a granted request created is already in force (or was)."""
    if row.assignment_id is None:
        return False
    return get_row(s, AssignmentRow, row.assignment_id, "assignment").start_at <= at


def record_admin(
    w: WriteContext,
    action: RequestAction,
    requested_by: str,
    assignment: Assignment,
    *,
    justification: str | None,
    ticket: Ticket | None,
    idempotency_key: str | None,
) -> RequestRow:
    """Store the administrator's request for the change to ``assignment`` just made in ``w``
    (under ``w.request_id``), granted at once, and settle it."""
    assert w.request_id is not None
    end = assignment.end
    expiration = ExpirationType.NO_EXPIRATION if end is None else ExpirationType.AFTER_DATETIME
    request, _ = Request.submit(
        id=w.request_id,
        action=action,
        kind=assignment.kind,
        principal=assignment.principal,
        target=assignment.target,
        requested_by=requested_by,
        now=w.at,
        needs_approval=False,
        schedule=Schedule(start=assignment.start, expiration=expiration, end=end),
        justification=justification,
        ticket=ticket,
        idempotency_key=idempotency_key,
        target_assignment_id=assignment.id,
    )
    row = store_request(w.session, request, Window(assignment.start, end), ())
    record_submitted(w, row, justification)
    settle(w, row, request, assignment.start)
    return row


def eligible_of(
    rt: Pimlico, s: Session, principal: PrincipalRef, target: Target, at: datetime
) -> Assignment | None:
    """The eligible assignment of ``target`` the principal holds at ``at``, directly or through
    a group (nested too), as the decision index sees it; its end is bounded by the
    membership's."""
    held = held_eligibility(rt, principal.id, target, at)
    if held is None:
        return None
    return bounded(
        mappers.assignment(get_row(s, AssignmentRow, held.assignment_id, "eligible")), held
    )


def held_eligibility(
    rt: Pimlico, principal_id: str, target: Target, at: datetime
) -> HeldAssignment | None:
    """How the principal holds an eligibility of ``target`` at ``at``, as the index says."""
    wanted = (target.type.value, target.object_id, target.scope)
    for held in rt.decisions.current().effective_access(principal_id, at).eligible:
        if (held.target_type, held.target_id, held.scope) == wanted:
            return held
    return None


def bounded(eligible: Assignment, held: HeldAssignment) -> Assignment:
    """The eligible assignment as held: ending when the membership it is held through ends."""
    return replace(eligible, end=held.end) if held.end is not None else eligible


def own_assignments(
    s: Session, principal: PrincipalRef, target: Target, kind: AssignmentKind
) -> list[Assignment]:
    """The principal's own (not through a group) assignments of ``target`` of ``kind`` that
    were not removed, latest start first."""
    rows = s.scalars(
        not_removed(kind, principal, target).order_by(
            AssignmentRow.start_at.desc(), AssignmentRow.id
        )
    )
    return [mappers.assignment(row) for row in rows]


def current_of(assignments: list[Assignment], at: datetime) -> Assignment | None:
    """The earliest-starting of ``assignments`` in force at ``at`` or later."""
    found = [a for a in assignments if a.end is None or a.end > at]
    return min(found, key=lambda a: a.start, default=None)
