"""Requests: submit (self-service and administrators'), cancel, and the request history.

Every assignment change is a request (PIM-REFERENCE §1(c)). Administrators' actions
(``admin_*``) are carried out at once by ``services.assignments``; self-service ones are
judged here with ``request_rules.plan`` (every broken rule at once), stored, and — when no
approval is needed — carried out in the same transaction (``request_effects``); otherwise
they wait for ``services.approvals``. A dry run answers exactly what submitting would do and
keeps nothing; the same idempotency key from the same requester answers the first request.

Self-service: ``self_activate`` an eligibility (held directly or through groups, nested too),
``self_deactivate`` an activation early, and ``self_extend`` (within 14 days of the end) or
``self_renew`` (after it expired) one's own eligible or active assignment — both always with
an administrator's approval, as in Entra.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from pimlico.db import mappers
from pimlico.db.audit import WriteContext
from pimlico.db.request_store import decisions_of_many, request_of, store_request, write_status
from pimlico.db.tables import AssignmentRow, RequestRow
from pimlico.domain.approvals import Approval
from pimlico.domain.catalogue import Perm
from pimlico.domain.model import (
    Assignment,
    AssignmentKind,
    PrincipalRef,
    PrincipalType,
    Target,
    TargetType,
)
from pimlico.domain.request_rules import plan
from pimlico.domain.requests import (
    Request,
    RequestAction,
    RequestNotCancelable,
    RequestStatus,
    Schedule,
    Ticket,
)
from pimlico.errors import FieldError, InvalidInput, PolicyViolation, RoleAssignmentExists
from pimlico.jobs.events import publish
from pimlico.services import assignments
from pimlico.services.activations import Activation, activate
from pimlico.services.approvals import may_decide, schedule_advance
from pimlico.services.assignment_changes import Asked
from pimlico.services.assignment_store import end_assignment, write_permission
from pimlico.services.decisions import authorize
from pimlico.services.lookups import check_text, get_row
from pimlico.services.mfa import fresh_verification
from pimlico.services.request_effects import (
    activate_now,
    carry_out,
    current_of,
    eligible_of,
    has_started,
    own_assignments,
)
from pimlico.services.request_records import (
    RequestView,
    check_ticket,
    new_view,
    person,
    record_status,
    record_submitted,
    snapshot,
    submitting,
    view_of,
)
from pimlico.services.role_settings import load_policy
from pimlico.services.runtime import Actor, Pimlico, Written

# -- submit ----------------------------------------------------------------------------------


def submit(
    rt: Pimlico,
    *,
    actor: Actor,
    action: RequestAction,
    kind: AssignmentKind,
    target: Target | None = None,
    principal: PrincipalRef | None = None,
    assignment_id: str | None = None,
    schedule: Schedule | None = None,
    justification: str | None = None,
    ticket: Ticket | None = None,
    idempotency_key: str | None = None,
    dry_run: bool = False,
    mfa_verified: bool = False,
) -> Written[RequestView]:
    """Ask for ``action``. Self-service: as ``actor`` (a user), for themselves, on ``target``.
    Administrators' actions: ``principal`` and ``target`` to assign, else ``assignment_id``.

    Raises ``PolicyViolation`` naming every broken rule (or the dedicated error of a single
    ``RoleAssignmentExists``, ``RoleAssignmentDoesNotExist``, ``ActiveDurationTooShort``).
    A dry run answers the same without keeping anything (its revision is the store's).
    ``mfa_verified`` counts only for administrators' actions (a caller that verified the
    administrator); self-service reads the requester's own MFA verifications.
    """
    if not action.is_self_service:
        written = assignments.request_change(
            rt,
            actor=actor,
            action=action,
            kind=kind,
            principal=principal,
            target=target,
            assignment_id=assignment_id,
            schedule=schedule,
            asked=Asked(justification, ticket, idempotency_key, dry_run, mfa_verified),
        )
        return Written(written.value.request, written.revision)
    if target is None:
        raise InvalidInput("which target?", [FieldError("target", "Required", "give a target")])
    activation = action in (RequestAction.SELF_ACTIVATE, RequestAction.SELF_DEACTIVATE)
    if activation and kind is not AssignmentKind.ACTIVE:
        raise InvalidInput(
            "self-service activates eligible assignments into active ones",
            [FieldError("kind", "NotSupported", "kind must be active")],
        )
    user_id = person(actor)
    justification = check_text(justification, "justification")
    key = check_text(idempotency_key, "idempotency_key")
    ticket = check_ticket(ticket)

    def alone() -> Written[RequestView]:
        return _submit_alone(
            rt, actor, user_id, action, kind, target, schedule, justification, ticket, key, dry_run
        )

    if action is RequestAction.SELF_ACTIVATE and key is None and not dry_run:
        return activate(rt, Activation(user_id, target, schedule, justification, ticket, alone))
    return alone()


def _submit_alone(
    rt: Pimlico,
    actor: Actor,
    user_id: str,
    action: RequestAction,
    kind: AssignmentKind,
    target: Target,
    schedule: Schedule | None,
    justification: str | None,
    ticket: Ticket | None,
    key: str | None,
    dry_run: bool,
) -> Written[RequestView]:
    """Submit a self-service request (input checked) in a write of its own."""
    mfa_at = fresh_verification(rt, user_id=user_id, at=rt.clock.now())

    def body(w: WriteContext) -> RequestView:
        assert w.request_id is not None
        request, _ = Request.submit(
            id=w.request_id,
            action=action,
            kind=kind,
            principal=PrincipalRef(PrincipalType.USER, user_id),
            target=target,
            requested_by=user_id,
            now=w.at,
            needs_approval=False,
            schedule=schedule,
            justification=justification,
            ticket=ticket,
            mfa_verified_at=mfa_at,
            idempotency_key=key,
        )
        return _submit_self(rt, w, request, dry_run=dry_run)

    return submitting(
        rt,
        actor,
        requested_by=user_id,
        idempotency_key=key,
        dry_run=dry_run,
        body=body,
        replay=view_of,
    )


def _submit_self(rt: Pimlico, w: WriteContext, request: Request, *, dry_run: bool) -> RequestView:
    s = w.session
    settings = load_policy(s, request.target.type, request.target.object_id).settings
    eligible, active = _acted_on(rt, s, request, w.at)
    acted_on = active if request.kind is AssignmentKind.ACTIVE else eligible
    if request.action is not RequestAction.SELF_ACTIVATE and acted_on is not None:
        request.target_assignment_id = acted_on.id
    judged = plan(
        settings,
        request,
        now=w.at,
        eligible=eligible,
        active=active,
        mfa_fresh=request.mfa_verified_at is not None,
    )
    judged.raise_for_problems()
    prolongs = request.action in (RequestAction.SELF_EXTEND, RequestAction.SELF_RENEW)
    if prolongs and acted_on is not None and acted_on.activated_from is not None:
        raise PolicyViolation(
            [
                FieldError(
                    "target",
                    "ExpirationRule",
                    f"assignment {acted_on.id} is an activation, bounded by the activation "
                    "maximum: activate again instead of extending or renewing it",
                )
            ]
        )
    if request.action is RequestAction.SELF_RENEW:
        _refuse_a_second(s, request, w.at)
    if request.action is RequestAction.SELF_ACTIVATE and not judged.needs_approval:
        assert eligible is not None  # else plan() refused: EligibilityRule
        assert judged.window is not None
        row, _ = activate_now(rt, w, request, judged.window, eligible)
        return new_view(row, dry_run=dry_run)
    if judged.needs_approval:
        request.status = RequestStatus.PENDING_APPROVAL
        request.history = [replace(request.history[0], status=request.status)]
    row = store_request(s, request, judged.window, judged.stages)
    record_submitted(w, row, request.justification)
    if judged.needs_approval:
        approval = Approval.start(
            request_id=row.id,
            requester_id=request.requested_by,
            stages=judged.stages,
            now=row.requested_at,
        )
        schedule_advance(w, row.id, approval)
    else:
        carry_out(rt, w, row, request)
    return view_of(s, row, dry_run=dry_run)


def _acted_on(
    rt: Pimlico, s: Session, request: Request, at: datetime
) -> tuple[Assignment | None, Assignment | None]:
    """The eligible and active assignments of the request's target that the rules judge it
    against: for activation, the eligibility held at ``at`` (through groups too) and the
    requester's own current or future activation; for extend, the own current one of the
    request's kind; for renew, the own most recently started one (expired, the rules check)."""
    principal, target = request.principal, request.target
    if request.action is RequestAction.SELF_ACTIVATE:
        own = own_assignments(s, principal, target, AssignmentKind.ACTIVE)
        return eligible_of(rt, s, principal, target, at), current_of(own, at)
    if request.action is RequestAction.SELF_DEACTIVATE:
        own = own_assignments(s, principal, target, AssignmentKind.ACTIVE)
        return None, current_of(own, at)
    own = own_assignments(s, principal, target, request.kind)
    found = current_of(own, at) if request.action is RequestAction.SELF_EXTEND else None
    found = found or (own[0] if own else None)
    if request.kind is AssignmentKind.ELIGIBLE:
        return found, None
    return None, found


def _refuse_a_second(s: Session, request: Request, at: datetime) -> None:
    """A renewal while another assignment of the same kind is current is a duplicate."""
    own = own_assignments(s, request.principal, request.target, request.kind)
    current = current_of(own, at)
    if current is not None:
        raise RoleAssignmentExists(
            f"{request.target} is already assigned ({request.kind.value}) to "
            f"{request.principal} (assignment {current.id}); extend it instead"
        )


# -- cancel ----------------------------------------------------------------------------------


def cancel(
    rt: Pimlico, *, actor: Actor, request_id: str, reason: str | None = None
) -> Written[RequestView]:
    """Withdraw a request not yet started: by its requester, or — for a self-service request —
    a holder of ``pim.requests.approve`` at its target's scope, or — for an administrator's —
    a holder of the target's write permission (canceling it ends the planned assignment, an
    administrator's removal). A granted request's future assignment ends with it; once that
    assignment has started, remove it instead (``RequestNotCancelable``)."""
    reason = check_text(reason, "reason")
    with rt.writing(actor, request_id=request_id) as w:
        s = w.session
        row = get_row(s, RequestRow, request_id, "request", lock=True)
        request = request_of(row)
        if actor.principal_id != request.requested_by:
            needed = (
                Perm.REQUESTS_APPROVE
                if request.action.is_self_service
                else write_permission(s, request.target)
            )
            authorize(rt, actor, needed, request.target.scope)
        if request.status is RequestStatus.GRANTED and has_started(s, row, w.at):
            raise RequestNotCancelable(
                f"request {row.id} was granted and its assignment has started; "
                "remove the assignment instead"
            )
        before = snapshot(row)
        publish(w, request.cancel(at=w.at, by=actor.name, reason=reason))
        write_status(row, request)
        record_status(w, row, before, reason)
        created = request.action in (
            RequestAction.SELF_ACTIVATE,
            RequestAction.SELF_RENEW,
            RequestAction.ADMIN_ASSIGN,
            RequestAction.ADMIN_RENEW,
        )
        if row.assignment_id is not None and created:
            planned = get_row(s, AssignmentRow, row.assignment_id, "assignment", lock=True)
            if planned.ended_at is None:
                end_assignment(
                    rt, w, planned, mappers.assignment(planned), by=actor.name, reason="canceled"
                )
        view = view_of(s, row)
    return Written(view, w.revision)


# -- read ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestFilter:
    """Which requests a history query returns; every field given must match."""

    status: RequestStatus | None = None
    action: RequestAction | None = None
    principal: PrincipalRef | None = None
    target_type: TargetType | None = None
    target_id: str | None = None
    requested_by: str | None = None
    since: datetime | None = None
    """Requested at or after."""
    until: datetime | None = None
    """Requested before."""


def get_request(rt: Pimlico, *, actor: Actor, request_id: str) -> RequestView:
    """One request: for its requester, an approver of its current stage, or a reader."""
    with rt.reading() as s:
        row = get_row(s, RequestRow, request_id, "request")
        if not _may_see(rt, s, actor, row):
            authorize(rt, actor, Perm.REQUESTS_READ, row.scope)
        return view_of(s, row)


def list_requests(
    rt: Pimlico,
    *,
    actor: Actor,
    mine: bool = False,
    to_approve: bool = False,
    status: RequestStatus | None = None,
    where: RequestFilter | None = None,
    limit: int | None = None,
) -> list[RequestView]:
    """Requests, newest first: the actor's own (``mine``), those pending the actor's decision
    (``to_approve``), or all of them (needs ``pim.requests.read``); narrowed by ``where``."""
    if mine and to_approve:
        raise InvalidInput("choose mine or to_approve, not both")
    if limit is not None and limit < 1:
        raise InvalidInput(
            "limit must be positive", [FieldError("limit", "Range", "give 1 or more")]
        )
    where = replace(where or RequestFilter(), status=status) if status else where
    query = _filtered(select(RequestRow), where or RequestFilter())
    if mine:
        query = query.where(RequestRow.requested_by == person(actor))
    elif to_approve:
        person(actor)
        query = query.where(RequestRow.status == RequestStatus.PENDING_APPROVAL.value)
    else:
        authorize(rt, actor, Perm.REQUESTS_READ)
    query = query.order_by(RequestRow.requested_at.desc(), RequestRow.id)
    if limit is not None and not to_approve:
        query = query.limit(limit)
    with rt.reading() as s:
        rows = list(s.scalars(query))
        # Every listed request's decisions in one query, not one per request.
        decided = decisions_of_many(s, [r.id for r in rows])
        if to_approve:
            rows = [r for r in rows if may_decide(rt, s, actor, r, decided[r.id])][:limit]
        return [new_view(r, decisions=tuple(decided[r.id])) for r in rows]


def _filtered(query: Select[RequestRow], where: RequestFilter) -> Select[RequestRow]:
    if where.status is not None:
        query = query.where(RequestRow.status == where.status.value)
    if where.action is not None:
        query = query.where(RequestRow.action == where.action.value)
    if where.principal is not None:
        query = query.where(
            RequestRow.principal_type == where.principal.type.value,
            RequestRow.principal_id == where.principal.id,
        )
    if where.target_type is not None:
        query = query.where(RequestRow.target_type == where.target_type.value)
    if where.target_id is not None:
        query = query.where(RequestRow.target_id == where.target_id)
    if where.requested_by is not None:
        query = query.where(RequestRow.requested_by == where.requested_by)
    if where.since is not None:
        query = query.where(RequestRow.requested_at >= where.since)
    if where.until is not None:
        query = query.where(RequestRow.requested_at < where.until)
    return query


def _may_see(rt: Pimlico, s: Session, actor: Actor, row: RequestRow) -> bool:
    return actor.principal_id == row.requested_by or may_decide(rt, s, actor, row)
