"""Deciding requests: approve, deny, and what time alone does to a pending request.

Decisions lock the request row (``SELECT … FOR UPDATE``), re-check its status and rebuild
the ``Approval`` from the stored stages, decisions and escalations before deciding, so
concurrent approvers get exactly one outcome. The last quorum carries the request out in the
same transaction (``request_effects``). A pending request's time-based steps — escalation
after a stage's delay, expiry at its timeout — happen when the ``request.advance`` job falls
due (``advance``), or earlier when a decision arrives after them; whichever comes first
records them, once (the escalated stages are stored).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from pimlico.db.audit import WriteContext
from pimlico.db.request_store import (
    decisions_of,
    decode_stages,
    request_of,
    store_decision,
    write_status,
)
from pimlico.db.tables import RequestRow
from pimlico.domain.approvals import (
    AlreadyDecided,
    Approval,
    ApprovalStatus,
    Decision,
    MayApprove,
    MembersOf,
    current_stage,
)
from pimlico.domain.catalogue import Perm
from pimlico.domain.model import Target
from pimlico.domain.requests import (
    ApprovalEscalated,
    Request,
    RequestApproved,
    RequestEvent,
    RequestExpired,
    RequestStatus,
)
from pimlico.jobs.events import publish
from pimlico.jobs.outbox import enqueue
from pimlico.services.lookups import check_text, get_row
from pimlico.services.request_effects import carry_out
from pimlico.services.request_records import (
    RequestView,
    person,
    record_status,
    snapshot,
    view_of,
)
from pimlico.services.runtime import Actor, Pimlico, Written

ADVANCE_JOB = "request.advance"


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
    approver = person(actor, "approvals are made by a person")
    late: RequestExpired | None = None
    with rt.writing(actor, request_id=request_id) as w:
        s = w.session
        row = get_row(s, RequestRow, request_id, "request", lock=True)
        request = request_of(row)
        approval = approval_of(s, row, request)
        late = _time_passes(w, row, request, approval)
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
            schedule_advance(w, row.id, approval)
            view = view_of(s, row)
    if late is not None:  # the expiry is committed; the decision came too late
        raise AlreadyDecided(f"request {request_id} expired at {late.at.isoformat()}")
    return Written(view, w.revision)


def _follow(
    rt: Pimlico, w: WriteContext, row: RequestRow, request: Request, events: list[RequestEvent]
) -> None:
    for event in events:
        publish(w, event)
        before = snapshot(row)
        request.apply(event)
        if request.status.value != row.status:
            write_status(row, request)
            record_status(w, row, before)
        if isinstance(event, RequestApproved):
            carry_out(rt, w, row, request)


def advance(w: WriteContext, *, request_id: str) -> None:
    """Whatever time alone makes happen to a request by ``w.at``, in the caller's write: a
    stage that timed out expires it, a stage waiting past ``escalation_after`` is escalated;
    then its next ``request.advance`` is enqueued. The worker's ``request.advance`` job.

    Idempotent: a request no longer pending is left alone, an escalation is recorded once,
    and a follow-up already enqueued is not enqueued again.
    """
    row = get_row(w.session, RequestRow, request_id, "request", lock=True)
    request = request_of(row)
    if request.status is not RequestStatus.PENDING_APPROVAL:
        return
    approval = approval_of(w.session, row, request)
    _time_passes(w, row, request, approval)
    schedule_advance(w, row.id, approval)


def _time_passes(
    w: WriteContext, row: RequestRow, request: Request, approval: Approval
) -> RequestExpired | None:
    """Record what time alone did to the pending request by ``w.at``; the expiry, if any."""
    if request.status is not RequestStatus.PENDING_APPROVAL:
        return None
    for event in approval.advance(w.at):
        publish(w, event)
        if isinstance(event, RequestExpired):
            before = snapshot(row)
            request.apply(event)
            write_status(row, request)
            record_status(w, row, before, "nobody decided in time")
            return event
        if isinstance(event, ApprovalEscalated):
            row.escalated = sorted(approval.escalated)
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
    return None


def schedule_advance(w: WriteContext, request_id: str, approval: Approval) -> None:
    """Enqueue the ``request.advance`` for the approval's next time-based step, if any."""
    due = approval.due_at()
    if due is None:
        return
    enqueue(
        w,
        kind=ADVANCE_JOB,
        payload={"request_id": request_id},
        due_at=due,
        dedupe_key=f"{ADVANCE_JOB}:{request_id}:{approval.current}:{due.isoformat()}",
    )


def may_decide(
    rt: Pimlico,
    s: Session,
    actor: Actor,
    row: RequestRow,
    decisions: list[Decision] | None = None,
) -> bool:
    """May ``actor`` approve or deny ``row`` now? (``decisions``: its decisions, if the
    caller read them already.)"""
    who = actor.principal_id
    if who is None or who == row.requested_by or row.status != RequestStatus.PENDING_APPROVAL:
        return False
    request = request_of(row)
    approval = approval_of(s, row, request, decisions)
    now = rt.clock.now()
    if any(d.stage == approval.current and d.approver_id == who for d in approval.decisions):
        return False
    members_of, may_approve = _approver_view(rt, who, request.target, now)
    return approval.may_decide(who, now, members_of, may_approve)


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


def approval_of(
    s: Session, row: RequestRow, request: Request, decisions: list[Decision] | None = None
) -> Approval:
    """The approval rebuilt from the stored stages and decisions (read here unless given):
    the stage being decided is the first whose quorum is not reached, and its clock started
    when the one before completed."""
    stages = decode_stages(row.stages)
    if not stages:
        raise AlreadyDecided(f"request {row.id} needs no approval")
    approval = Approval.start(
        request_id=row.id, requester_id=row.requested_by, stages=stages, now=row.requested_at
    )
    approval.decisions = decisions_of(s, row.id) if decisions is None else list(decisions)
    approval.escalated = set(row.escalated)
    approval.current = current = current_stage(stages, approval.decisions)
    if current > 0:
        completed = [d for d in approval.decisions if d.stage == current - 1 and d.approved]
        approval.stage_started_at = completed[stages[current - 1].quorum - 1].at
    if request.status is not RequestStatus.PENDING_APPROVAL:
        statuses = {
            RequestStatus.DENIED: ApprovalStatus.DENIED,
            RequestStatus.EXPIRED: ApprovalStatus.EXPIRED,
            RequestStatus.CANCELED: ApprovalStatus.CANCELED,
        }
        approval.status = statuses.get(request.status, ApprovalStatus.APPROVED)
    return approval
