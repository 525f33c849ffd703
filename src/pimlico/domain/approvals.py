"""The approval of one request: ordered stages, who may decide, quorum, escalation, timeout.

Owns the ``Approval`` aggregate and its decisions (kept for the record). Each stage's clock
starts when the stage does; after ``escalation_after`` its escalation approvers may decide
too, and at ``timeout`` the request expires. Group approvers are expanded through the
caller's ``members_of`` when a decision is made, never earlier. It returns the events it
caused (see ``requests``); moving the request itself (``Request.apply``), storing, locking
and notifying belong to the caller, which locks the approval, calls ``advance(now)`` and then
``decide`` — so a late decision meets an expired approval.

The requester never approves their own request: not as a named approver, a group member, an
escalation approver nor an administrator. A person decides at most once per stage; the same
person may be an approver of several stages.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from pimlico.domain.policy import ApprovalStage, ApproverRef, ApproverType
from pimlico.domain.requests import (
    ApprovalEscalated,
    ApprovalStageCompleted,
    RequestApproved,
    RequestDenied,
    RequestEvent,
    RequestExpired,
)
from pimlico.errors import Conflict, FieldError, InvalidInput, PermissionDenied

MembersOf = Callable[[str], set[str]]
"""``members_of(group_id)``: the ids of the users in the group now, nesting resolved."""
MayApprove = Callable[[str], bool]
"""Whether a user holds ``pim.requests.approve`` for the request's target, now."""


class AlreadyDecided(Conflict):
    """The approval (or this approver's part of the stage) is already decided or expired."""

    code = "AlreadyDecided"


class ApprovalStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELED = "canceled"


@dataclass(frozen=True, slots=True)
class Decision:
    """``approver_id`` approved (or denied) ``stage`` (0-based) at ``at``."""

    stage: int
    approver_id: str
    approved: bool
    at: datetime
    justification: str | None


@dataclass(slots=True)
class Approval:
    """The approval of request ``request_id``, made by ``requester_id``. Build with ``start``."""

    request_id: str
    requester_id: str
    stages: tuple[ApprovalStage, ...]
    current: int
    """The index of the stage being decided (the last one once decided)."""
    stage_started_at: datetime
    status: ApprovalStatus = ApprovalStatus.PENDING
    decisions: list[Decision] = field(default_factory=list)
    escalated: set[int] = field(default_factory=set)
    """Stages whose escalation approvers have been asked (``ApprovalEscalated`` emitted)."""
    decided_at: datetime | None = None

    @classmethod
    def start(
        cls,
        *,
        request_id: str,
        requester_id: str,
        stages: tuple[ApprovalStage, ...],
        now: datetime,
    ) -> Approval:
        """An approval pending its first stage, whose clock starts ``now``."""
        if not stages:
            raise ValueError("an approval needs at least one stage")
        return cls(request_id, requester_id, stages, 0, now)

    @property
    def stage(self) -> ApprovalStage:
        return self.stages[self.current]

    @property
    def deadline(self) -> datetime:
        """When the current stage times out."""
        return self.stage_started_at + self.stage.timeout

    @property
    def escalates_at(self) -> datetime | None:
        """When the current stage's escalation approvers may decide; ``None``: never."""
        if not self.stage.escalation_enabled:
            return None
        return self.stage_started_at + self.stage.escalation_after

    def due_at(self) -> datetime | None:
        """The next instant something time-based happens (escalation or timeout); for the
        scheduler. ``None`` once decided."""
        if self.status is not ApprovalStatus.PENDING:
            return None
        escalation = self.escalates_at
        if escalation is not None and self.current not in self.escalated:
            return min(escalation, self.deadline)
        return self.deadline

    def expire_if_due(self, now: datetime) -> list[RequestEvent]:
        """Expire the approval when the current stage has timed out at ``now``."""
        if self.status is not ApprovalStatus.PENDING or now < self.deadline:
            return []
        self.status = ApprovalStatus.EXPIRED
        self.decided_at = self.deadline
        return [RequestExpired(self.request_id, self.deadline, self.current)]

    def escalate_if_due(self, now: datetime) -> list[RequestEvent]:
        """Ask the escalation approvers once the current stage has waited long enough."""
        escalation = self.escalates_at
        if (
            self.status is not ApprovalStatus.PENDING
            or escalation is None
            or now < escalation
            or now >= self.deadline
            or self.current in self.escalated
        ):
            return []
        self.escalated.add(self.current)
        return [
            ApprovalEscalated(
                self.request_id, self.current, escalation, self.stage.escalation_approvers
            )
        ]

    def advance(self, now: datetime) -> list[RequestEvent]:
        """Whatever time alone makes happen by ``now``: expiry first, else escalation."""
        return self.expire_if_due(now) or self.escalate_if_due(now)

    def cancel(self, now: datetime) -> None:
        """Stop the approval because its request was canceled (``Request.cancel``)."""
        if self.status is not ApprovalStatus.PENDING:
            raise AlreadyDecided(f"the approval of request {self.request_id} is {self.status}")
        self.status = ApprovalStatus.CANCELED
        self.decided_at = now

    def may_decide(
        self, approver_id: str, now: datetime, members_of: MembersOf, may_approve: MayApprove
    ) -> bool:
        """Whether ``approver_id`` is an approver of the current stage at ``now``.

        Says nothing about the requester, who is refused before this is asked.
        """
        stage = self.stage
        if _listed(approver_id, stage.approvers, members_of):
            return True
        escalation = self.escalates_at
        if (
            escalation is not None
            and now >= escalation
            and _listed(approver_id, stage.escalation_approvers, members_of)
        ):
            return True
        return not stage.approvers and may_approve(approver_id)

    def decide(
        self,
        approver_id: str,
        approve: bool,
        justification: str | None,
        now: datetime,
        members_of: MembersOf,
        may_approve: MayApprove,
    ) -> list[RequestEvent]:
        """Record one approver's decision and return what it caused.

        Raises ``PermissionDenied`` for the requester and for anyone who is not an approver
        of the current stage, ``AlreadyDecided`` when the approval is over (or timed out at
        ``now``) or this approver already decided this stage, and ``InvalidInput`` naming
        ``justification`` when the stage requires one.
        """
        if approver_id == self.requester_id:
            raise PermissionDenied(
                f"you cannot approve or deny your own request {self.request_id}; "
                "another approver must decide it"
            )
        if self.status is not ApprovalStatus.PENDING:
            raise AlreadyDecided(f"the approval of request {self.request_id} is {self.status}")
        if now >= self.deadline:
            raise AlreadyDecided(
                f"stage {self.current + 1} of request {self.request_id} timed out at "
                f"{self.deadline.isoformat()}"
            )
        if any(d.stage == self.current and d.approver_id == approver_id for d in self.decisions):
            raise AlreadyDecided(
                f"{approver_id} already decided stage {self.current + 1} of request "
                f"{self.request_id}"
            )
        if not self.may_decide(approver_id, now, members_of, may_approve):
            raise PermissionDenied(
                f"{approver_id} is not an approver of stage {self.current + 1} of request "
                f"{self.request_id}"
            )
        text = justification.strip() if justification else ""
        if self.stage.approver_justification_required and not text:
            raise InvalidInput(
                "a justification is required",
                [FieldError("justification", "Required", "say why you approve or deny")],
            )
        self.decisions.append(Decision(self.current, approver_id, approve, now, text or None))
        if not approve:
            self.status = ApprovalStatus.DENIED
            self.decided_at = now
            return [RequestDenied(self.request_id, now, approver_id, self.current, text or None)]
        approvers = tuple(
            d.approver_id for d in self.decisions if d.stage == self.current and d.approved
        )
        if len(approvers) < self.stage.quorum:
            return []
        last = self.current == len(self.stages) - 1
        completed = ApprovalStageCompleted(
            self.request_id, self.current, now, approvers, None if last else self.current + 1
        )
        if last:
            self.status = ApprovalStatus.APPROVED
            self.decided_at = now
            return [completed, RequestApproved(self.request_id, now, approver_id)]
        self.current += 1
        self.stage_started_at = now
        return [completed]

    def approvals_in(self, stage: int) -> tuple[str, ...]:
        """Who approved ``stage`` (0-based), in order."""
        return tuple(d.approver_id for d in self.decisions if d.stage == stage and d.approved)


def current_stage(stages: tuple[ApprovalStage, ...], decisions: list[Decision]) -> int:
    """The stage (0-based) being decided: the first whose quorum of approvals is not reached
    (the last once every stage reached it)."""
    for number, stage in enumerate(stages[:-1]):
        if sum(1 for d in decisions if d.stage == number and d.approved) < stage.quorum:
            return number
    return len(stages) - 1


def _listed(user_id: str, approvers: tuple[ApproverRef, ...], members_of: MembersOf) -> bool:
    for ref in approvers:
        if ref.type is ApproverType.USER and ref.id == user_id:
            return True
    return any(
        ref.type is ApproverType.GROUP and user_id in members_of(ref.id) for ref in approvers
    )
