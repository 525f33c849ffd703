"""Self-service requests and their approval: submit, approve, deny, cancel, list, get.

Each write is one transaction (``rt.writing``) that judges the request with
``request_rules.plan`` (every broken rule at once), stores it, and — when nothing is left to
wait for — creates or ends the assignment in the same transaction, so a request is never
``provisioned`` without its assignment nor the other way round. Decisions lock the request row
(``SELECT … FOR UPDATE``), re-check its status and rebuild the ``Approval`` from the stored
decisions before deciding: concurrent approvers get exactly one outcome.

Supported so far: ``self_activate`` and ``self_deactivate``. Extend, renew and the
administrators' actions raise ``InvalidInput`` ("not yet supported"). There is no worker yet:
an activation granted for a later start gets its assignment (with that start) at once and
stays ``granted``. A pending request's time-based steps (escalation, timeout → ``expired``)
are outbox jobs (``request.advance``, enqueued when it is stored pending and when a stage
completes) that the worker runs through ``advance``.

Choices: the approved window is the one validated at submission, starting no earlier than
the approval — access never outlasts what was asked and checked; an approval after the
window's end, or after the eligibility ended, fails the request instead of granting it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from pimlico.db import mappers
from pimlico.db.audit import WriteContext, current_revision
from pimlico.db.request_store import (
    decisions_of,
    decode_stages,
    request_of,
    store_decision,
    store_request,
    write_status,
)
from pimlico.db.tables import AssignmentRow, RequestRow
from pimlico.domain.approvals import (
    AlreadyDecided,
    Approval,
    ApprovalStatus,
    Decision,
    MayApprove,
    MembersOf,
)
from pimlico.domain.catalogue import Perm
from pimlico.domain.model import (
    Assignment,
    AssignmentKind,
    PrincipalRef,
    PrincipalType,
    Target,
    Window,
    new_id,
)
from pimlico.domain.policy import ApprovalStage
from pimlico.domain.request_rules import plan
from pimlico.domain.requests import (
    ApprovalEscalated,
    Request,
    RequestAction,
    RequestApproved,
    RequestEvent,
    RequestExpired,
    RequestStatus,
    Schedule,
    Ticket,
)
from pimlico.errors import FieldError, InvalidInput, PermissionDenied
from pimlico.jobs.outbox import enqueue
from pimlico.services.assignments import end_assignment, insert_assignment
from pimlico.services.decisions import authorize
from pimlico.services.lookups import check_text, get_row
from pimlico.services.mfa import fresh_verification
from pimlico.services.role_settings import load_policy
from pimlico.services.runtime import Actor, Pimlico, Written

SUPPORTED = (RequestAction.SELF_ACTIVATE, RequestAction.SELF_DEACTIVATE)


@dataclass(frozen=True, slots=True)
class RequestView:
    """A request as stored: the entity, its window, approval stages and decisions so far, and
    the assignment it created or acts on. ``dry_run``: validated only, nothing was stored."""

    request: Request
    window: Window | None
    stages: tuple[ApprovalStage, ...]
    decisions: tuple[Decision, ...] = ()
    assignment_id: str | None = None
    dry_run: bool = False


class _Replay(Exception):
    """Raised inside a write to roll it back when the idempotency key was already used."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id


# -- submit ----------------------------------------------------------------------------------


def submit(
    rt: Pimlico,
    *,
    actor: Actor,
    action: RequestAction,
    kind: AssignmentKind,
    target: Target,
    schedule: Schedule | None = None,
    justification: str | None = None,
    ticket: Ticket | None = None,
    idempotency_key: str | None = None,
    dry_run: bool = False,
) -> Written[RequestView]:
    """Ask, as ``actor`` (a user), to activate or deactivate ``target`` for themselves.

    Raises ``PolicyViolation`` naming every broken rule (or the dedicated error of a single
    ``RoleAssignmentExists``, ``RoleAssignmentDoesNotExist``, ``ActiveDurationTooShort``).
    A dry run answers the same without writing (its revision is the store's current one).
    The same ``idempotency_key`` from the same requester returns the original request.
    """
    if action not in SUPPORTED:
        raise InvalidInput(
            f"{action.value} is not yet supported",
            [FieldError("action", "NotSupported", "only self_activate and self_deactivate")],
        )
    if kind is not AssignmentKind.ACTIVE:
        raise InvalidInput(
            "self-service activates eligible assignments into active ones",
            [FieldError("kind", "NotSupported", "kind must be active")],
        )
    user_id = _person(actor)
    justification = check_text(justification, "justification")
    idempotency_key = check_text(idempotency_key, "idempotency_key")
    if ticket is not None:
        system = check_text(ticket.system, "ticket.system") or ""
        ticket = Ticket(system, check_text(ticket.number, "ticket.number") or "")
    if idempotency_key is not None and not dry_run:
        with rt.reading() as s:
            earlier = _by_key(s, user_id, idempotency_key)
            if earlier is not None:
                return Written(_view(s, earlier), current_revision(s))
    principal = PrincipalRef(PrincipalType.USER, user_id)
    mfa_at = fresh_verification(rt, user_id=user_id, at=rt.clock.now())
    request_id = new_id()
    try:
        with rt.writing(actor, request_id=request_id) as w:
            s = w.session
            if idempotency_key is not None and (again := _by_key(s, user_id, idempotency_key)):
                raise _Replay(again.id)
            settings = load_policy(s, target.type, target.object_id).settings
            eligible = _eligible(rt, s, principal, target, w.at)
            active = _active(s, principal, target, w.at)
            request, _ = Request.submit(
                id=request_id,
                action=action,
                kind=kind,
                principal=principal,
                target=target,
                requested_by=user_id,
                now=w.at,
                needs_approval=False,
                schedule=schedule,
                justification=justification,
                ticket=ticket,
                mfa_verified_at=mfa_at,
                idempotency_key=idempotency_key,
                target_assignment_id=active.id if active else None,
            )
            judged = plan(
                settings,
                request,
                now=w.at,
                eligible=eligible,
                active=active,
                mfa_fresh=bool(mfa_at),
            )
            judged.raise_for_problems()
            if judged.needs_approval:
                request.status = RequestStatus.PENDING_APPROVAL
                request.history = [replace(request.history[0], status=request.status)]
            if dry_run:
                raise _DryRun(RequestView(request, judged.window, judged.stages, dry_run=True))
            row = store_request(s, request, judged.window, judged.stages)
            w.record(
                action=f"request.{action.value}.submit",
                target_type="request",
                target_id=request.id,
                before=None,
                after=_snapshot(row),
                reason=justification,
            )
            if judged.needs_approval:
                _schedule(
                    w,
                    row.id,
                    Approval.start(
                        request_id=row.id,
                        requester_id=user_id,
                        stages=judged.stages,
                        now=row.requested_at,
                    ),
                )
            else:
                _carry_out(rt, w, row, request, eligible)
            view = _view(s, row)
    except _Replay as replay:
        with rt.reading() as s:
            row = get_row(s, RequestRow, replay.request_id, "request")
            return Written(_view(s, row), current_revision(s))
    except _DryRun as dry:
        with rt.reading() as s:
            return Written(dry.view, current_revision(s))
    return Written(view, w.revision)


class _DryRun(Exception):
    """Raised inside a write to roll it back once a dry run has its answer."""

    def __init__(self, view: RequestView) -> None:
        self.view = view


def _carry_out(
    rt: Pimlico, w: WriteContext, row: RequestRow, request: Request, eligible: Assignment | None
) -> None:
    """Make the change of a granted request: create the activation or end the assignment."""
    if request.action is RequestAction.SELF_DEACTIVATE:
        assert row.assignment_id is not None
        locked = get_row(w.session, AssignmentRow, row.assignment_id, "assignment", lock=True)
        end_assignment(
            rt, w, locked, mappers.assignment(locked), by=w.actor or "", reason="deactivated"
        )
        _move(w, row, request, RequestStatus.REVOKED, "deactivated")
        return
    start = max(row.start_at or w.at, w.at)
    if eligible is None or (row.end_at is not None and row.end_at <= start):
        why = "the eligibility ended" if eligible is None else "the window ended"
        _move(w, row, request, RequestStatus.FAILED, f"not provisioned: {why}")
        return
    created = insert_assignment(
        rt,
        w,
        Assignment(
            id=new_id(),
            kind=AssignmentKind.ACTIVE,
            principal=request.principal,
            target=request.target,
            start=start,
            end=row.end_at,
            created_at=w.at,
            created_by=w.actor,
            justification=request.justification,
            activated_from=eligible.id,
            request_id=request.id,
        ),
    )
    row.assignment_id = created.id
    if start <= w.at:
        _move(w, row, request, RequestStatus.PROVISIONED, "activated")


def _move(
    w: WriteContext, row: RequestRow, request: Request, status: RequestStatus, reason: str
) -> None:
    before = _snapshot(row)
    request.move_to(status, at=w.at, by=w.actor, reason=reason)
    write_status(row, request)
    w.record(
        action=f"request.{status.value}",
        target_type="request",
        target_id=row.id,
        before=before,
        after=_snapshot(row),
        reason=reason,
    )


# -- decide and cancel ----------------------------------------------------------------------


def approve(
    rt: Pimlico, *, actor: Actor, request_id: str, justification: str | None = None
) -> Written[RequestView]:
    """Approve the current stage of a pending request; the last quorum provisions it."""
    return _decide(rt, actor, request_id, True, justification)


def deny(
    rt: Pimlico, *, actor: Actor, request_id: str, justification: str | None = None
) -> Written[RequestView]:
    """Deny a pending request: any denial denies it."""
    return _decide(rt, actor, request_id, False, justification)


def _decide(
    rt: Pimlico, actor: Actor, request_id: str, approved: bool, justification: str | None
) -> Written[RequestView]:
    justification = check_text(justification, "justification")
    approver = _person(actor, "approvals are made by a person")
    late: RequestExpired | None = None
    with rt.writing(actor, request_id=request_id) as w:
        s = w.session
        row = get_row(s, RequestRow, request_id, "request", lock=True)
        request = request_of(row)
        approval = _approval(s, row, request)
        for event in approval.advance(w.at):
            if isinstance(event, RequestExpired):
                late = event
                _expire(w, row, request, event)
        if late is None:
            members_of, may_approve = _approver_view(rt, approver, request.target, w.at)
            events = approval.decide(
                approver, approved, justification, w.at, members_of, may_approve
            )
            store_decision(s, row.id, approval.decisions[-1])
            w.record(
                action="request.approve" if approved else "request.deny",
                target_type="request",
                target_id=row.id,
                before=None,
                after={"stage": approval.decisions[-1].stage, "approver": approver},
                reason=justification,
            )
            _follow(rt, w, row, request, events)
            _schedule(w, row.id, approval)
            view = _view(s, row)
    if late is not None:
        raise AlreadyDecided(f"request {request_id} expired at {late.at.isoformat()}")
    return Written(view, w.revision)


def _follow(
    rt: Pimlico, w: WriteContext, row: RequestRow, request: Request, events: list[RequestEvent]
) -> None:
    for event in events:
        before = _snapshot(row)
        request.apply(event)
        if request.status.value != row.status:
            write_status(row, request)
            w.record(
                action=f"request.{request.status.value}",
                target_type="request",
                target_id=row.id,
                before=before,
                after=_snapshot(row),
            )
        if isinstance(event, RequestApproved):
            eligible = _eligible(rt, w.session, request.principal, request.target, w.at)
            _carry_out(rt, w, row, request, eligible)


def advance(w: WriteContext, *, request_id: str) -> None:
    """Whatever time alone makes happen to a request by ``w.at``, in the caller's write: a
    stage that timed out expires it, a stage waiting past ``escalation_after`` is escalated;
    then its next ``request.advance`` is enqueued. The worker's ``request.advance`` job.

    Idempotent: a request no longer pending is left alone, and a follow-up already enqueued is
    not enqueued again.
    """
    row = get_row(w.session, RequestRow, request_id, "request", lock=True)
    request = request_of(row)
    if request.status is not RequestStatus.PENDING_APPROVAL:
        return
    approval = _approval(w.session, row, request)
    for event in approval.advance(w.at):
        if isinstance(event, RequestExpired):
            _expire(w, row, request, event)
        elif isinstance(event, ApprovalEscalated):
            w.record(
                action="request.escalated",
                target_type="request",
                target_id=row.id,
                before=None,
                after={
                    "stage": event.stage,
                    "approvers": [{"type": a.type.value, "id": a.id} for a in event.approvers],
                },
            )
    _schedule(w, row.id, approval)


def _schedule(w: WriteContext, request_id: str, approval: Approval) -> None:
    """Enqueue the ``request.advance`` for the approval's next time-based step, if any."""
    due = approval.due_at()
    if due is None:
        return
    enqueue(
        w,
        kind="request.advance",
        payload={"request_id": request_id},
        due_at=due,
        dedupe_key=f"request.advance:{request_id}:{approval.current}:{due.isoformat()}",
    )


def _expire(w: WriteContext, row: RequestRow, request: Request, event: RequestExpired) -> None:
    before = _snapshot(row)
    request.apply(event)
    write_status(row, request)
    w.record(
        action="request.expired",
        target_type="request",
        target_id=row.id,
        before=before,
        after=_snapshot(row),
        reason="nobody decided in time",
    )


def cancel(
    rt: Pimlico, *, actor: Actor, request_id: str, reason: str | None = None
) -> Written[RequestView]:
    """Withdraw a request not yet started: by its requester, or a holder of
    ``pim.requests.approve`` at its target's scope. A granted activation's future assignment
    ends with it."""
    reason = check_text(reason, "reason")
    with rt.writing(actor, request_id=request_id) as w:
        s = w.session
        row = get_row(s, RequestRow, request_id, "request", lock=True)
        request = request_of(row)
        if actor.principal_id != request.requested_by:
            authorize(rt, actor, Perm.REQUESTS_APPROVE, request.target.scope)
        before = _snapshot(row)
        request.cancel(at=w.at, by=actor.name, reason=reason)
        write_status(row, request)
        w.record(
            action="request.canceled",
            target_type="request",
            target_id=row.id,
            before=before,
            after=_snapshot(row),
            reason=reason,
        )
        if row.assignment_id is not None and request.action is RequestAction.SELF_ACTIVATE:
            planned = get_row(s, AssignmentRow, row.assignment_id, "assignment", lock=True)
            if planned.ended_at is None:
                end_assignment(
                    rt, w, planned, mappers.assignment(planned), by=actor.name, reason="canceled"
                )
        view = _view(s, row)
    return Written(view, w.revision)


# -- read ------------------------------------------------------------------------------------


def get_request(rt: Pimlico, *, actor: Actor, request_id: str) -> RequestView:
    """One request: for its requester, an approver of its current stage, or a reader."""
    with rt.reading() as s:
        row = get_row(s, RequestRow, request_id, "request")
        if not _may_see(rt, s, actor, row):
            authorize(rt, actor, Perm.REQUESTS_READ, row.scope)
        return _view(s, row)


def list_requests(
    rt: Pimlico,
    *,
    actor: Actor,
    mine: bool = False,
    to_approve: bool = False,
    status: RequestStatus | None = None,
) -> list[RequestView]:
    """Requests, newest first: the actor's own (``mine``), those pending the actor's decision
    (``to_approve``), or all of them (needs ``pim.requests.read``)."""
    if mine and to_approve:
        raise InvalidInput("choose mine or to_approve, not both")
    query = select(RequestRow)
    if mine:
        query = query.where(RequestRow.requested_by == _person(actor))
    elif to_approve:
        _person(actor)
        query = query.where(RequestRow.status == RequestStatus.PENDING_APPROVAL.value)
    else:
        authorize(rt, actor, Perm.REQUESTS_READ)
    if status is not None:
        query = query.where(RequestRow.status == status.value)
    with rt.reading() as s:
        rows = list(s.scalars(query.order_by(RequestRow.requested_at.desc(), RequestRow.id)))
        if to_approve:
            rows = [r for r in rows if _may_decide(rt, s, actor, r)]
        return [_view(s, r) for r in rows]


def _may_see(rt: Pimlico, s: Session, actor: Actor, row: RequestRow) -> bool:
    return actor.principal_id == row.requested_by or _may_decide(rt, s, actor, row)


def _may_decide(rt: Pimlico, s: Session, actor: Actor, row: RequestRow) -> bool:
    who = actor.principal_id
    if who is None or who == row.requested_by or row.status != RequestStatus.PENDING_APPROVAL:
        return False
    request = request_of(row)
    approval = _approval(s, row, request)
    now = rt.clock.now()
    if any(d.stage == approval.current and d.approver_id == who for d in approval.decisions):
        return False
    members_of, may_approve = _approver_view(rt, who, request.target, now)
    return approval.may_decide(who, now, members_of, may_approve)


# -- helpers ---------------------------------------------------------------------------------


def _person(actor: Actor, why: str = "self-service requests are made by a person") -> str:
    if actor.principal_id is None:
        raise PermissionDenied(f"{why}; act as a user")
    return actor.principal_id


def _by_key(s: Session, user_id: str, key: str) -> RequestRow | None:
    return s.scalars(
        select(RequestRow).where(
            RequestRow.requested_by == user_id, RequestRow.idempotency_key == key
        )
    ).first()


def _eligible(
    rt: Pimlico, s: Session, principal: PrincipalRef, target: Target, at: datetime
) -> Assignment | None:
    """The eligible assignment of ``target`` the principal holds at ``at``, directly or through
    a group (nested too), as the decision index sees it; its end is bounded by the
    membership's."""
    for held in rt.decisions.current().effective_access(principal.id, at).eligible:
        if (held.target_type, held.target_id, held.scope) == (
            target.type.value,
            target.object_id,
            target.scope,
        ):
            eligible = mappers.assignment(get_row(s, AssignmentRow, held.assignment_id, "eligible"))
            return replace(eligible, end=held.end) if held.end is not None else eligible
    return None


def _active(s: Session, principal: PrincipalRef, target: Target, at: datetime) -> Assignment | None:
    """The principal's own current or future active assignment of ``target``, newest first."""
    rows = s.scalars(
        select(AssignmentRow)
        .where(
            AssignmentRow.kind == AssignmentKind.ACTIVE.value,
            AssignmentRow.principal_type == principal.type.value,
            AssignmentRow.principal_id == principal.id,
            AssignmentRow.target_type == target.type.value,
            AssignmentRow.target_id == target.object_id,
            AssignmentRow.scope == target.scope,
            AssignmentRow.ended_at.is_(None),
        )
        .order_by(AssignmentRow.start_at)
    )
    for row in rows:
        if row.end_at is None or row.end_at > at:
            return mappers.assignment(row)
    return None


def _approver_view(
    rt: Pimlico, approver: str, target: Target, now: datetime
) -> tuple[MembersOf, MayApprove]:
    """``members_of`` and ``may_approve`` for one approver, from the index as it is now.

    Only ``approver`` is ever asked about, so ``members_of(group)`` answers with the approver
    alone when they are a member (nesting resolved) and nobody otherwise — the whole member
    list is never needed.
    """
    index = rt.decisions.current()
    held = index.effective_access(approver, now).groups
    groups = {g.group_id for g in held if g.relation == "member"}

    def members_of(group_id: str) -> set[str]:
        return {approver} if group_id in groups else set()

    def may_approve(user_id: str) -> bool:
        return index.decide(user_id, Perm.REQUESTS_APPROVE, target.scope, now).allowed

    return members_of, may_approve


def _approval(s: Session, row: RequestRow, request: Request) -> Approval:
    """The approval rebuilt from the stored stages and decisions: the stage being decided
    is the first whose quorum is not reached, and its clock started when the one before
    completed."""
    stages = decode_stages(row.stages)
    if not stages:
        raise AlreadyDecided(f"request {row.id} needs no approval")
    approval = Approval.start(
        request_id=row.id, requester_id=row.requested_by, stages=stages, now=row.requested_at
    )
    approval.decisions = decisions_of(s, row.id)
    while approval.current < len(stages) - 1:
        approvals = [d for d in approval.decisions if d.stage == approval.current and d.approved]
        if len(approvals) < stages[approval.current].quorum:
            break
        approval.stage_started_at = approvals[stages[approval.current].quorum - 1].at
        approval.current += 1
    if request.status is not RequestStatus.PENDING_APPROVAL:
        statuses = {
            RequestStatus.DENIED: ApprovalStatus.DENIED,
            RequestStatus.EXPIRED: ApprovalStatus.EXPIRED,
            RequestStatus.CANCELED: ApprovalStatus.CANCELED,
        }
        approval.status = statuses.get(request.status, ApprovalStatus.APPROVED)
    return approval


def _view(s: Session, row: RequestRow) -> RequestView:
    window = Window(row.start_at, row.end_at) if row.start_at is not None else None
    return RequestView(
        request=request_of(row),
        window=window,
        stages=decode_stages(row.stages),
        decisions=tuple(decisions_of(s, row.id)),
        assignment_id=row.assignment_id,
    )


def _snapshot(row: RequestRow) -> dict[str, object]:
    return {
        "action": row.action,
        "principal": {"type": row.principal_type, "id": row.principal_id},
        "target": {"type": row.target_type, "object_id": row.target_id, "scope": row.scope},
        "start": row.start_at,
        "end": row.end_at,
        "status": row.status,
        "assignment_id": row.assignment_id,
        "ticket": [row.ticket_system, row.ticket_number] if row.ticket_system else None,
        "mfa_verified_at": row.mfa_verified_at,
    }
