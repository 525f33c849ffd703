"""Storing requests and approval decisions: rows to domain objects and back.

Owns the mapping between ``requests``/``approval_decisions`` rows and the request domain
(``Request``, approval ``Decision``, approval stages as policy documents). No rules here: the
services judge, this module only stores and loads.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pimlico.db.tables import ApprovalDecisionRow, Base, RequestRow
from pimlico.domain import policy_codec
from pimlico.domain.approvals import Decision
from pimlico.domain.model import (
    AssignmentKind,
    PrincipalRef,
    PrincipalType,
    Target,
    TargetType,
    Window,
    new_id,
)
from pimlico.domain.policy import ApprovalRules, ApprovalStage, RoleSettings
from pimlico.domain.requests import (
    ExpirationType,
    Request,
    RequestAction,
    RequestStatus,
    Schedule,
    StatusChange,
    Ticket,
)
from pimlico.errors import InvalidInput

REQUESTS = Base.metadata.tables[RequestRow.__tablename__]


def encode_stages(stages: tuple[ApprovalStage, ...]) -> list[Any]:
    if not stages:
        return []
    settings = replace(RoleSettings(), approval=ApprovalRules(required=True, stages=stages))
    approval = policy_codec.to_dict(settings)["approval"]
    assert isinstance(approval, dict)
    return list(approval["stages"])


def decode_stages(raw: list[Any]) -> tuple[ApprovalStage, ...]:
    if not raw:
        return ()
    settings = policy_codec.from_dict({"approval": {"required": True, "stages": raw}})
    return settings.approval.stages


def store_request(
    s: Session, request: Request, window: Window | None, stages: tuple[ApprovalStage, ...]
) -> RequestRow:
    """Add the row of ``request`` to the session and flush it (so an idempotency key already
    taken is refused here, as ``InvalidInput``)."""
    row = request_row(request, window, stages)
    s.add(row)
    try:
        s.flush()
    except IntegrityError as error:  # only the idempotency key can clash: writers are serial
        raise InvalidInput("the idempotency key is already used") from error
    return row


def request_row(
    request: Request, window: Window | None, stages: tuple[ApprovalStage, ...]
) -> RequestRow:
    """The row of ``request``, not yet in any session."""
    ticket = request.ticket
    row = RequestRow(
        id=request.id,
        action=request.action.value,
        kind=request.kind.value,
        principal_type=request.principal.type.value,
        principal_id=request.principal.id,
        target_type=request.target.type.value,
        target_id=request.target.object_id,
        scope=request.target.scope,
        expiration=request.schedule.expiration.value,
        start_at=window.start if window else None,
        end_at=window.end if window else None,
        justification=request.justification,
        ticket_system=ticket.system if ticket else None,
        ticket_number=ticket.number if ticket else None,
        requested_by=request.requested_by,
        requested_at=request.requested_at,
        status=request.status.value,
        history=[],
        mfa_verified_at=request.mfa_verified_at,
        idempotency_key=request.idempotency_key,
        assignment_id=request.target_assignment_id,
        stages=encode_stages(stages),
        escalated=[],
    )
    write_status(row, request)
    return row


def request_values(row: RequestRow) -> dict[str, Any]:
    """The columns of ``row``, to insert it without the ORM (``WriteContext.insert_later``)."""
    return {column.key: getattr(row, column.key) for column in REQUESTS.columns}


def write_status(row: RequestRow, request: Request) -> None:
    row.status = request.status.value
    row.history = [
        {"status": c.status.value, "at": c.at.isoformat(), "by": c.by, "reason": c.reason}
        for c in request.history
    ]


def request_of(row: RequestRow) -> Request:
    ticket = None
    if row.ticket_system is not None and row.ticket_number is not None:
        ticket = Ticket(row.ticket_system, row.ticket_number)
    expiration = ExpirationType(row.expiration)
    schedule = Schedule(start=row.start_at, expiration=expiration)
    if expiration is not ExpirationType.NO_EXPIRATION and row.end_at is not None:
        schedule = Schedule(row.start_at, ExpirationType.AFTER_DATETIME, None, row.end_at)
    return Request(
        id=row.id,
        action=RequestAction(row.action),
        kind=AssignmentKind(row.kind),
        principal=PrincipalRef(PrincipalType(row.principal_type), row.principal_id),
        target=Target(TargetType(row.target_type), row.target_id, row.scope),
        schedule=schedule,
        requested_by=row.requested_by,
        requested_at=row.requested_at,
        status=RequestStatus(row.status),
        justification=row.justification,
        ticket=ticket,
        history=[
            StatusChange(
                RequestStatus(h["status"]), datetime.fromisoformat(h["at"]), h["by"], h["reason"]
            )
            for h in row.history
        ],
        mfa_verified_at=row.mfa_verified_at,
        idempotency_key=row.idempotency_key,
        target_assignment_id=row.assignment_id,
    )


def decisions_of(s: Session, request_id: str) -> list[Decision]:
    rows = s.scalars(
        select(ApprovalDecisionRow)
        .where(ApprovalDecisionRow.request_id == request_id)
        .order_by(ApprovalDecisionRow.decided_at, ApprovalDecisionRow.stage)
    )
    return [
        Decision(r.stage, r.approver_id, r.approved, r.decided_at, r.justification) for r in rows
    ]


def decisions_of_many(s: Session, request_ids: list[str]) -> dict[str, list[Decision]]:
    """``decisions_of`` for many requests in one query (chunked for long lists)."""
    found: dict[str, list[Decision]] = {request_id: [] for request_id in request_ids}
    for start in range(0, len(request_ids), 500):
        rows = s.scalars(
            select(ApprovalDecisionRow)
            .where(ApprovalDecisionRow.request_id.in_(request_ids[start : start + 500]))
            .order_by(ApprovalDecisionRow.decided_at, ApprovalDecisionRow.stage)
        )
        for r in rows:
            found[r.request_id].append(
                Decision(r.stage, r.approver_id, r.approved, r.decided_at, r.justification)
            )
    return found


def store_decision(s: Session, request_id: str, decision: Decision) -> None:
    s.add(
        ApprovalDecisionRow(
            id=new_id(),
            request_id=request_id,
            stage=decision.stage,
            approver_id=decision.approver_id,
            approved=decision.approved,
            justification=decision.justification,
            decided_at=decision.at,
        )
    )
