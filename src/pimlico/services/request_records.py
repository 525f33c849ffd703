"""What every request use case shares: the stored view of a request, its audit snapshot, its
status changes, and who may ask.

``services.requests`` submits and reads requests, ``services.approvals`` decides them and
``services.request_effects`` carries them out; each records through the helpers here, so a
request's audit trail reads the same whichever path moved it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from pimlico.db.audit import WriteContext, current_revision
from pimlico.db.request_store import decisions_of, decode_stages, request_of, write_status
from pimlico.db.tables import RequestRow
from pimlico.domain.approvals import Decision, current_stage
from pimlico.domain.model import Window, new_id
from pimlico.domain.policy import ApprovalStage
from pimlico.domain.requests import Request, RequestStatus, RequestSubmitted, Ticket
from pimlico.errors import FieldError, InvalidInput, PermissionDenied
from pimlico.jobs.events import publish
from pimlico.services.lookups import check_text, get_row
from pimlico.services.runtime import Actor, Pimlico, Written

T = TypeVar("T")


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

    @property
    def awaiting(self) -> int | None:
        """The approval stage (0-based) waiting for decisions; ``None`` unless pending."""
        if self.request.status is not RequestStatus.PENDING_APPROVAL or not self.stages:
            return None
        return current_stage(self.stages, list(self.decisions))


def view_of(s: Session, row: RequestRow, *, dry_run: bool = False) -> RequestView:
    return new_view(row, decisions=tuple(decisions_of(s, row.id)), dry_run=dry_run)


def new_view(
    row: RequestRow, *, decisions: tuple[Decision, ...] = (), dry_run: bool = False
) -> RequestView:
    """The view of ``row`` with ``decisions``: without them, of a request stored in the
    current write, which nobody has decided yet (no query)."""
    window = Window(row.start_at, row.end_at) if row.start_at is not None else None
    return RequestView(
        request=request_of(row),
        window=window,
        stages=decode_stages(row.stages),
        decisions=decisions,
        assignment_id=row.assignment_id,
        dry_run=dry_run,
    )


def snapshot(row: RequestRow) -> dict[str, object]:
    """The request's audited state."""
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


def record_submitted(
    w: WriteContext, row: RequestRow, reason: str | None, request: Request | None = None
) -> None:
    """Audit and publish (``RequestSubmitted``) the request just stored (``request``: the
    entity ``row`` was made from, if the caller has it — not read back from the row)."""
    if request is None:
        request = request_of(row)
    publish(
        w,
        RequestSubmitted(
            request.id,
            request.action,
            request.kind,
            request.principal,
            request.target,
            request.requested_by,
            request.requested_at,
            request.status,
        ),
    )
    w.record(
        action=f"request.{row.action}.submit",
        target_type="request",
        target_id=row.id,
        before=None,
        after=snapshot(row),
        reason=reason,
    )


def move(
    w: WriteContext, row: RequestRow, request: Request, status: RequestStatus, reason: str | None
) -> None:
    """Change the request's status (the domain refuses what it does not allow) and audit it."""
    before = snapshot(row)
    request.move_to(status, at=w.at, by=w.actor, reason=reason)
    write_status(row, request)
    record_status(w, row, before, reason)


def record_status(
    w: WriteContext, row: RequestRow, before: dict[str, object], reason: str | None = None
) -> None:
    w.record(
        action=f"request.{row.status}",
        target_type="request",
        target_id=row.id,
        before=before,
        after=snapshot(row),
        reason=reason,
    )


def person(actor: Actor, why: str = "self-service requests are made by a person") -> str:
    """The acting user's id; self-service and approvals are never made by the operator."""
    if actor.principal_id is None:
        raise PermissionDenied(f"{why}; act as a user")
    return actor.principal_id


TICKET_FIELD_LENGTH = 256


def check_ticket(ticket: Ticket | None) -> Ticket | None:
    """The ticket with its fields trimmed; both given, or neither (``None``)."""
    if ticket is None:
        return None
    system = check_text(ticket.system, "ticket.system")
    number = check_text(ticket.number, "ticket.number")
    found = [
        FieldError(f"ticket.{name}", "TicketingRule", f"give the ticket's {name}")
        for name, value in (("system", system), ("number", number))
        if value is None
    ]
    found += [
        FieldError(f"ticket.{name}", "Length", f"at most {TICKET_FIELD_LENGTH} characters")
        for name, value in (("system", system), ("number", number))
        if value is not None and len(value) > TICKET_FIELD_LENGTH
    ]
    if found:
        raise InvalidInput("the ticket is incomplete", found)
    return Ticket(system or "", number or "")


def by_key(s: Session, requested_by: str, key: str) -> RequestRow | None:
    """The request ``requested_by`` made earlier under the idempotency ``key``."""
    return s.scalars(
        select(RequestRow).where(
            RequestRow.requested_by == requested_by, RequestRow.idempotency_key == key
        )
    ).first()


class _Replay(Exception):
    """Rolls a write back when its idempotency key turned out to be used already."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id


class _DryRun(Exception):
    """Rolls a dry run's write back once it has its answer."""


def submitting(
    rt: Pimlico,
    actor: Actor,
    *,
    requested_by: str,
    idempotency_key: str | None,
    dry_run: bool,
    body: Callable[[WriteContext], T],
    replay: Callable[[Session, RequestRow], T],
) -> Written[T]:
    """Run ``body`` — which stores a new request under ``w.request_id`` — in one write.

    The same ``idempotency_key`` from the same requester answers ``replay`` of the request
    stored the first time (looked up before and again under the write lock, so concurrent
    duplicates store one) — for a dry run too, as submitting would. A ``dry_run`` runs
    ``body`` in full — every check, every row — and rolls it all back: its answer is exactly
    what submitting would have done, and its revision is the store's current one.
    """
    if idempotency_key is not None:
        with rt.reading() as s:
            if (earlier := by_key(s, requested_by, idempotency_key)) is not None:
                return Written(replay(s, earlier), current_revision(s))
    answers: list[T] = []
    try:
        with rt.writing(actor, request_id=new_id()) as w:
            key = idempotency_key
            if key is not None and (again := by_key(w.session, requested_by, key)):
                raise _Replay(again.id)
            answers.append(body(w))
            if dry_run:
                raise _DryRun
    except _Replay as replayed:
        with rt.reading() as s:
            row = get_row(s, RequestRow, replayed.request_id, "request")
            return Written(replay(s, row), current_revision(s))
    except _DryRun:
        with rt.reading() as s:
            return Written(answers[0], current_revision(s))
    return Written(answers[0], w.revision)
