"""The domain events that notification and provisioning consumers receive: the contract.

Request events (``RequestSubmitted``, ``RequestApproved``, …) are defined with the request in
``requests``; the assignment events are here. Each is past tense and frozen; ``at`` is the
instant the thing happened in Pimlico's time (for an expiry: the end instant, not when the
scheduler noticed). A consumer may receive an event more than once (delivery is at least
once) and must act idempotently; ``assignment_id``/``request_id`` and ``at`` identify it.

- ``AssignmentCreated``: an eligible or active assignment was made (assignee notification).
- ``AssignmentActivated``: an active assignment came into force — at creation, or at its
  later start (provisioning grants downstream access; administrators are notified).
- ``AssignmentExpiringSoon``: an assignment ends in ``days_left`` days (14 and 1).
- ``AssignmentEnded``: an assignment stopped being in force — it ran to its end
  (``reason`` "expired") or was ended early (removed, deactivated, canceled, with the
  reason given); provisioning revokes downstream access.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pimlico.domain.model import Assignment, AssignmentKind, PrincipalRef, Target
from pimlico.domain.requests import RequestEvent

EXPIRED = "expired"
"""The ``reason`` of an ``AssignmentEnded`` for an assignment that ran to its end."""


@dataclass(frozen=True, slots=True)
class AssignmentFacts:
    """What every assignment event says about the assignment."""

    assignment_id: str
    kind: AssignmentKind
    principal: PrincipalRef
    target: Target
    start: datetime
    end: datetime | None
    request_id: str | None

    @classmethod
    def of(cls, assignment: Assignment) -> AssignmentFacts:
        return cls(
            assignment.id,
            assignment.kind,
            assignment.principal,
            assignment.target,
            assignment.start,
            assignment.end,
            assignment.request_id,
        )


@dataclass(frozen=True, slots=True)
class AssignmentCreated:
    assignment: AssignmentFacts
    at: datetime
    by: str | None


@dataclass(frozen=True, slots=True)
class AssignmentActivated:
    assignment: AssignmentFacts
    at: datetime


@dataclass(frozen=True, slots=True)
class AssignmentExpiringSoon:
    assignment: AssignmentFacts
    at: datetime
    days_left: int


@dataclass(frozen=True, slots=True)
class AssignmentEnded:
    assignment: AssignmentFacts
    at: datetime
    reason: str | None


AssignmentEvent = AssignmentCreated | AssignmentActivated | AssignmentExpiringSoon | AssignmentEnded
DomainEvent = RequestEvent | AssignmentEvent
