"""Requests: every change to an assignment, what it asks for, and the life of its status.

Owns the request entity (action, kind, principal, target, schedule, justification, ticket,
who asked and when), its status state machine (one table, ``TRANSITIONS``) with its kept
history, and the domain events of the request workflow — the contract that notification and
provisioning consumers build on. It does not judge a request against role settings
(``request_rules`` does), run approvals (``approvals`` does), store anything or create
assignments.

Status flow::

    pending_approval ──► granted ──► provisioned   (assign, update, extend, renew, activate)
          │                 ├──────► revoked       (admin_remove, self_deactivate)
          │                 ├──────► canceled / failed
          └──► denied / expired / canceled / failed

A request enters as ``pending_approval`` when it needs approval and as ``granted`` otherwise
(``granted`` also covers "approved, starts later"). Every other status is terminal.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pimlico.domain.model import AssignmentKind, PrincipalRef, Target, Window
from pimlico.domain.policy import ApproverRef
from pimlico.errors import Conflict, FieldError, InvalidInput


class RequestAction(enum.StrEnum):
    ADMIN_ASSIGN = "admin_assign"
    ADMIN_UPDATE = "admin_update"
    ADMIN_REMOVE = "admin_remove"
    ADMIN_EXTEND = "admin_extend"
    ADMIN_RENEW = "admin_renew"
    SELF_ACTIVATE = "self_activate"
    SELF_DEACTIVATE = "self_deactivate"
    SELF_EXTEND = "self_extend"
    SELF_RENEW = "self_renew"

    @property
    def is_self_service(self) -> bool:
        return self.value.startswith("self_")

    @property
    def removes(self) -> bool:
        """Carried out, it ends an assignment: its request ends ``revoked``, not provisioned."""
        return self in (RequestAction.ADMIN_REMOVE, RequestAction.SELF_DEACTIVATE)


class RequestStatus(enum.StrEnum):
    PENDING_APPROVAL = "pending_approval"
    GRANTED = "granted"
    """Approved (or needing no approval); the change is made now or at the schedule's start."""
    PROVISIONED = "provisioned"
    DENIED = "denied"
    CANCELED = "canceled"
    REVOKED = "revoked"
    """A removal (``admin_remove``, ``self_deactivate``) that was carried out."""
    FAILED = "failed"
    EXPIRED = "expired"
    """Nobody decided before the approval stage timed out."""


_S = RequestStatus
TRANSITIONS: dict[RequestStatus, frozenset[RequestStatus]] = {
    _S.PENDING_APPROVAL: frozenset({_S.GRANTED, _S.DENIED, _S.CANCELED, _S.EXPIRED, _S.FAILED}),
    _S.GRANTED: frozenset({_S.PROVISIONED, _S.REVOKED, _S.CANCELED, _S.FAILED}),
    _S.PROVISIONED: frozenset(),
    _S.DENIED: frozenset(),
    _S.CANCELED: frozenset(),
    _S.REVOKED: frozenset(),
    _S.FAILED: frozenset(),
    _S.EXPIRED: frozenset(),
}
"""The only allowed status changes. A status with no way out is terminal."""

TERMINAL = frozenset(s for s, targets in TRANSITIONS.items() if not targets)


class RequestNotCancelable(Conflict):
    """Only a request that has not started yet (pending approval or granted) can be canceled.

    400, as Entra answers a cancel of a provisioned or failed request.
    """

    code = "RequestNotCancelable"
    status = 400


class ExpirationType(enum.StrEnum):
    NO_EXPIRATION = "no_expiration"
    AFTER_DURATION = "after_duration"
    AFTER_DATETIME = "after_datetime"


@dataclass(frozen=True, slots=True)
class Schedule:
    """When the change starts (``None``: now) and how it ends.

    ``after_duration`` with no ``duration`` means "as long as the policy allows"; the rules
    fill it in (``request_rules``). ``resolve`` needs a schedule whose fields agree with its
    type (``problems`` says where they do not).
    """

    start: datetime | None = None
    expiration: ExpirationType = ExpirationType.AFTER_DURATION
    duration: timedelta | None = None
    end: datetime | None = None

    def problems(self) -> list[FieldError]:
        """Where the fields disagree with the expiration type (rule ``ExpirationRule``)."""
        found: list[FieldError] = []

        def bad(name: str, message: str) -> None:
            found.append(FieldError(f"schedule.{name}", "ExpirationRule", message))

        kind = self.expiration
        if kind is not ExpirationType.AFTER_DURATION and self.duration is not None:
            bad("duration", f"a duration only goes with after_duration, not {kind.value}")
        if kind is not ExpirationType.AFTER_DATETIME and self.end is not None:
            bad("end", f"an end only goes with after_datetime, not {kind.value}")
        if kind is ExpirationType.AFTER_DATETIME and self.end is None:
            bad("end", "after_datetime needs an end")
        if self.duration is not None and self.duration <= timedelta(0):
            bad("duration", "the duration must be positive")
        return found

    def resolve(self, now: datetime, default_duration: timedelta | None = None) -> Window:
        """The window ``[start, end)`` this schedule asks for, evaluated at ``now``.

        A start in the past means now: access is never granted retroactively. Raises
        ``InvalidInput`` when ``problems`` is not empty, or when ``after_duration`` has neither
        a duration nor a ``default_duration``.
        """
        found = self.problems()
        if found:
            raise InvalidInput("the schedule is inconsistent", found)
        start = now if self.start is None else max(self.start, now)
        if self.expiration is ExpirationType.NO_EXPIRATION:
            return Window(start, None)
        if self.expiration is ExpirationType.AFTER_DATETIME:
            return Window(start, self.end)
        duration = self.duration if self.duration is not None else default_duration
        if duration is None:
            raise InvalidInput(
                "the schedule is inconsistent",
                [FieldError("schedule.duration", "ExpirationRule", "give a duration")],
            )
        return Window(start, start + duration)


@dataclass(frozen=True, slots=True)
class Ticket:
    """A ticket in another system, recorded for the audit trail and never checked there."""

    system: str
    number: str


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One entry of a request's history: it became ``status`` at ``at`` because of ``by``."""

    status: RequestStatus
    at: datetime
    by: str | None
    reason: str | None = None


# --- events ---------------------------------------------------------------------------------
# Past tense, frozen, returned by the operation that caused them; ``at`` is the instant the
# thing happened (for an expiry: the deadline, not when the scheduler noticed).


@dataclass(frozen=True, slots=True)
class RequestSubmitted:
    """A request was made. ``status`` is where it entered: pending_approval or granted."""

    request_id: str
    action: RequestAction
    kind: AssignmentKind
    principal: PrincipalRef
    target: Target
    requested_by: str
    at: datetime
    status: RequestStatus


@dataclass(frozen=True, slots=True)
class RequestApproved:
    """The last stage reached its quorum; ``by`` made the deciding approval."""

    request_id: str
    at: datetime
    by: str


@dataclass(frozen=True, slots=True)
class RequestDenied:
    """``by`` denied the request in ``stage`` (0-based), giving ``justification``."""

    request_id: str
    at: datetime
    by: str
    stage: int
    justification: str | None


@dataclass(frozen=True, slots=True)
class RequestCanceled:
    """The requester or an administrator (``by``) withdrew the request before it started."""

    request_id: str
    at: datetime
    by: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class RequestExpired:
    """Nobody completed ``stage`` (0-based) before its deadline ``at``."""

    request_id: str
    at: datetime
    stage: int


@dataclass(frozen=True, slots=True)
class ApprovalStageCompleted:
    """``stage`` reached its quorum with ``approvers``; ``next_stage`` starts now, if any."""

    request_id: str
    stage: int
    at: datetime
    approvers: tuple[str, ...]
    next_stage: int | None


@dataclass(frozen=True, slots=True)
class ApprovalEscalated:
    """``stage`` waited ``escalation_after``; ``approvers`` may now decide it too."""

    request_id: str
    stage: int
    at: datetime
    approvers: tuple[ApproverRef, ...]


RequestEvent = (
    RequestSubmitted
    | RequestApproved
    | RequestDenied
    | RequestCanceled
    | RequestExpired
    | ApprovalStageCompleted
    | ApprovalEscalated
)


@dataclass(slots=True)
class Request:
    """One asked-for change to an assignment, and the history of its status. Never deleted.

    ``target_assignment_id`` names the assignment a deactivate, extend, renew, update or
    remove acts on. ``mfa_verified_at`` is when the requester's MFA verification (fresh when
    the request was made) took place. Change the status only with ``move_to``.
    """

    id: str
    action: RequestAction
    kind: AssignmentKind
    principal: PrincipalRef
    target: Target
    schedule: Schedule
    requested_by: str
    requested_at: datetime
    status: RequestStatus
    justification: str | None = None
    ticket: Ticket | None = None
    history: list[StatusChange] = field(default_factory=list)
    mfa_verified_at: datetime | None = None
    idempotency_key: str | None = None
    target_assignment_id: str | None = None

    @classmethod
    def submit(
        cls,
        *,
        id: str,
        action: RequestAction,
        kind: AssignmentKind,
        principal: PrincipalRef,
        target: Target,
        requested_by: str,
        now: datetime,
        needs_approval: bool,
        schedule: Schedule | None = None,
        justification: str | None = None,
        ticket: Ticket | None = None,
        mfa_verified_at: datetime | None = None,
        idempotency_key: str | None = None,
        target_assignment_id: str | None = None,
    ) -> tuple[Request, RequestSubmitted]:
        """A new request, pending approval or granted, and the event saying so."""
        status = RequestStatus.PENDING_APPROVAL if needs_approval else RequestStatus.GRANTED
        request = cls(
            id=id,
            action=action,
            kind=kind,
            principal=principal,
            target=target,
            schedule=schedule or Schedule(),
            requested_by=requested_by,
            requested_at=now,
            status=status,
            justification=justification,
            ticket=ticket,
            history=[StatusChange(status, now, requested_by, "submitted")],
            mfa_verified_at=mfa_verified_at,
            idempotency_key=idempotency_key,
            target_assignment_id=target_assignment_id,
        )
        event = RequestSubmitted(id, action, kind, principal, target, requested_by, now, status)
        return request, event

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    def move_to(
        self, status: RequestStatus, *, at: datetime, by: str | None, reason: str | None = None
    ) -> None:
        """Change the status, keeping the change in the history.

        Raises ``RequestNotCancelable`` for a cancel once the request has started or ended, and
        ``Conflict`` for any other change ``TRANSITIONS`` does not allow — including
        ``provisioned`` for a removal and ``revoked`` for anything else.
        """
        current = self.status
        if status is RequestStatus.CANCELED and status not in TRANSITIONS[current]:
            raise RequestNotCancelable(
                f"request {self.id} is {current.value}; only a request pending approval "
                "or granted and not yet started can be canceled"
            )
        allowed = status in TRANSITIONS[current]
        if status is RequestStatus.PROVISIONED and self.action.removes:
            allowed = False
        if status is RequestStatus.REVOKED and not self.action.removes:
            allowed = False
        if not allowed:
            raise Conflict(
                f"request {self.id} ({self.action.value}) cannot go from {current.value} "
                f"to {status.value}"
            )
        self.status = status
        self.history.append(StatusChange(status, at, by, reason))

    def cancel(self, *, at: datetime, by: str, reason: str | None = None) -> RequestCanceled:
        """Withdraw the request (see ``move_to`` for when that is refused)."""
        self.move_to(RequestStatus.CANCELED, at=at, by=by, reason=reason)
        return RequestCanceled(self.id, at, by, reason)

    def apply(self, event: RequestEvent) -> None:
        """Follow an approval outcome: approved → granted, denied → denied, expired → expired.

        Other events leave the status alone. The event must be about this request.
        """
        if getattr(event, "request_id", None) != self.id:
            raise ValueError(f"event {event!r} is not about request {self.id}")
        if isinstance(event, RequestApproved):
            self.move_to(RequestStatus.GRANTED, at=event.at, by=event.by, reason="approved")
        elif isinstance(event, RequestDenied):
            self.move_to(RequestStatus.DENIED, at=event.at, by=event.by, reason=event.justification)
        elif isinstance(event, RequestExpired):
            self.move_to(
                RequestStatus.EXPIRED,
                at=event.at,
                by=None,
                reason=f"approval stage {event.stage + 1} timed out",
            )
