"""What a domain event means for notifications: which message, about what, for whom.

``notices`` turns one event into the notices it calls for, each with its message kind, the
people it goes to by default, which notification rule of the target governs it (event and
recipient type of PIM-REFERENCE.md §1(h)) and the facts its templates show. It reads what it
needs (the request, names) in the caller's session; it does not apply the rules, render or
send (``consumer`` does).

- RequestSubmitted pending approval, ApprovalStageCompleted with a next stage, and
  ApprovalEscalated: ``approval_needed`` to the stage's (or the escalation) approvers, the
  requester never among them; rule (category, approver).
- RequestApproved / RequestDenied / RequestExpired, and RequestCanceled by someone other
  than the requester: ``request_*`` to the requester; rule (category, requestor).
- AssignmentActivated of a self-activation: ``activation_completed`` to the
  administrators; rule (activation, admin).
- AssignmentCreated not from self-service: ``assigned``; AssignmentExpiringSoon:
  ``expiring_soon``; AssignmentEnded as expired: ``assignment_expired`` — to the assignee
  (a group's members); rule (category, requestor).

The category is ``activation`` for self-service requests and the assignments they made, and
``eligible_assignment`` / ``active_assignment`` by kind otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pimlico.db.request_store import decode_stages, request_of
from pimlico.db.tables import RequestRow
from pimlico.domain import events as ev
from pimlico.domain import requests as rq
from pimlico.domain.model import AssignmentKind, Target
from pimlico.domain.policy import ApproverRef, NotificationEvent, NotificationRecipient
from pimlico.notify import audience
from pimlico.notify.facts import Facts
from pimlico.services.runtime import Pimlico

APPROVER, REQUESTOR, ADMIN = (
    NotificationRecipient.APPROVER,
    NotificationRecipient.REQUESTOR,
    NotificationRecipient.ADMIN,
)


@dataclass(frozen=True, slots=True)
class Notice:
    """One message kind for one event, before the target's rules are applied."""

    kind: str
    identity: str
    """What a repeated delivery of the same event repeats: the key of its messages."""
    people: frozenset[str]
    rule: tuple[NotificationEvent, NotificationRecipient] | None
    target: Target | None
    critical: bool
    context: dict[str, Any] = field(default_factory=dict)
    link: str | None = None


def notices(rt: Pimlico, facts: Facts, event: ev.DomainEvent, public_url: str) -> list[Notice]:
    """The notices ``event`` calls for (often none)."""
    s = facts.session
    if isinstance(event, ev.AssignmentActivated | ev.AssignmentCreated):
        return _assignment_started(rt, facts, event)
    if isinstance(event, ev.AssignmentExpiringSoon | ev.AssignmentEnded):
        return _assignment_ending(rt, facts, event)
    if not _may_notify(event):
        return []  # (most self-activations: asked for nothing to be read)
    row = s.get(RequestRow, event.request_id)
    if row is None:
        return []
    request = request_of(row)
    shown = facts.request(request)
    category = _category(request.action, request.kind)
    base = f"{type(event).__name__}:{request.id}"
    if isinstance(event, rq.RequestSubmitted | rq.ApprovalStageCompleted | rq.ApprovalEscalated):
        refs = _approver_refs(event, row)
        if refs is None:
            return []
        stage, named = refs
        who = audience.approvers(rt, s, named, request.target, event.at) - {request.requested_by}
        link = f"{public_url.rstrip('/')}/portal/approvals/{request.id}"
        context = {"request": shown, "stage": stage + 1, "link": link}
        return [
            Notice(
                "approval_needed",
                f"{base}:{stage}",
                frozenset(who),
                (category, APPROVER),
                request.target,
                True,
                context,
                link,
            )
        ]
    outcome = _outcome(event, request)
    if outcome is None:
        return []
    kind, extra = outcome
    if extra["by"] is not None:
        extra["by"] = facts.name(extra["by"])
    return [
        Notice(
            kind,
            base,
            frozenset({request.requested_by}),
            (category, REQUESTOR),
            request.target,
            False,
            {"request": shown, **extra},
        )
    ]


def _may_notify(event: rq.RequestEvent) -> bool:
    """Whether a request event may call for a notice, told from the event alone."""
    if isinstance(event, rq.RequestSubmitted):
        return event.status is rq.RequestStatus.PENDING_APPROVAL
    if isinstance(event, rq.ApprovalStageCompleted):
        return event.next_stage is not None
    return True


def _approver_refs(
    event: rq.RequestSubmitted | rq.ApprovalStageCompleted | rq.ApprovalEscalated, row: RequestRow
) -> tuple[int, tuple[ApproverRef, ...]] | None:
    """The stage (0-based) whose approvers are asked now, and who they are named as."""
    stages = decode_stages(row.stages)
    if isinstance(event, rq.ApprovalEscalated):
        return event.stage, event.approvers
    if isinstance(event, rq.RequestSubmitted):
        if event.status is not rq.RequestStatus.PENDING_APPROVAL or not stages:
            return None
        return 0, stages[0].approvers
    if event.next_stage is None or event.next_stage >= len(stages):
        return None
    return event.next_stage, stages[event.next_stage].approvers


def _outcome(event: rq.RequestEvent, request: rq.Request) -> tuple[str, dict[str, Any]] | None:
    if isinstance(event, rq.RequestApproved):
        return "request_approved", {"by": event.by, "reason": None}
    if isinstance(event, rq.RequestDenied):
        return "request_denied", {"by": event.by, "reason": event.justification}
    if isinstance(event, rq.RequestExpired):
        return "request_expired", {"by": None, "reason": None}
    if isinstance(event, rq.RequestCanceled) and event.by != request.requested_by:
        return "request_canceled", {"by": event.by, "reason": event.reason}
    return None


def _assignment_started(
    rt: Pimlico, facts: Facts, event: ev.AssignmentActivated | ev.AssignmentCreated
) -> list[Notice]:
    made = event.assignment
    action = facts.action(made.request_id)
    if isinstance(event, ev.AssignmentActivated):
        if action is not rq.RequestAction.SELF_ACTIVATE:
            return []
        row = facts.session.get(RequestRow, made.request_id)
        context = {
            "assignment": facts.assignment(made),
            "request": None if row is None else facts.request(request_of(row)),
        }
        who = audience.administrators(rt, event.at)
        rule = (NotificationEvent.ACTIVATION, ADMIN)
        identity = f"AssignmentActivated:{made.assignment_id}"
        return [
            Notice(
                "activation_completed", identity, frozenset(who), rule, made.target, False, context
            )
        ]
    if action is not None and action.is_self_service:
        return []
    context = {"assignment": facts.assignment(made), "request": None}
    who = audience.members(rt, made.principal, event.at)
    rule = (_category(action, made.kind), REQUESTOR)
    identity = f"AssignmentCreated:{made.assignment_id}"
    return [Notice("assigned", identity, frozenset(who), rule, made.target, False, context)]


def _assignment_ending(
    rt: Pimlico, facts: Facts, event: ev.AssignmentExpiringSoon | ev.AssignmentEnded
) -> list[Notice]:
    made = event.assignment
    context: dict[str, Any] = {"request": None}
    if isinstance(event, ev.AssignmentExpiringSoon):
        kind, critical = "expiring_soon", True
        identity = f"AssignmentExpiringSoon:{made.assignment_id}:{event.days_left}"
        context["days_left"] = event.days_left
    elif event.reason == ev.EXPIRED:
        kind, critical = "assignment_expired", False
        identity = f"AssignmentEnded:{made.assignment_id}"
    else:
        return []
    context["assignment"] = facts.assignment(made)
    who = audience.members(rt, made.principal, event.at)
    rule = (_category(facts.action(made.request_id), made.kind), REQUESTOR)
    return [Notice(kind, identity, frozenset(who), rule, made.target, critical, context)]


def _category(action: rq.RequestAction | None, kind: AssignmentKind) -> NotificationEvent:
    if action is not None and action.is_self_service:
        return NotificationEvent.ACTIVATION
    if kind is AssignmentKind.ELIGIBLE:
        return NotificationEvent.ELIGIBLE_ASSIGNMENT
    return NotificationEvent.ACTIVE_ASSIGNMENT
