"""The shapes of requests on the wire: what a caller asks (``NewRequest``) and how a request
reads back (``RequestOut``, with its approval stages and decisions).

Shared by the ``requests`` and ``approvals`` routes. Only translation lives here: the models
turn into domain values (``Schedule``, ``Target``, …) and back; every rule about them is the
services'. Durations are ISO 8601 (``PT8H``), instants RFC 3339 with their offset.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)

from pimlico.api.deps import newest_first
from pimlico.domain.durations import format_duration, parse_duration
from pimlico.domain.model import (
    GROUP_SCOPE,
    AssignmentKind,
    PrincipalRef,
    PrincipalType,
    Target,
    TargetType,
)
from pimlico.domain.policy import ApprovalStage, ApproverRef
from pimlico.domain.requests import (
    ExpirationType,
    RequestAction,
    RequestStatus,
    Schedule,
    Ticket,
)
from pimlico.services.lookups import MAX_TEXT
from pimlico.services.request_records import TICKET_FIELD_LENGTH, RequestView

ID = 64


def _duration(value: object) -> object:
    return parse_duration(value) if isinstance(value, str) else value


Duration = Annotated[
    timedelta,
    BeforeValidator(_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "format": "duration", "examples": ["PT8H"]}),
]
"""An ISO 8601 duration (``PT8H``, ``P1DT2H``): fixed units only, never years or months."""


# -- in --------------------------------------------------------------------------------------


class TargetIn(BaseModel):
    """A role at a scope, or membership / ownership of a group."""

    model_config = ConfigDict(extra="forbid")

    type: TargetType = Field(examples=["role"])
    object_id: str = Field(max_length=ID, description="The role's or group's id.")
    scope: str = Field(
        default="/", max_length=1024, description="Roles only: where the role applies."
    )

    def to_domain(self) -> Target:
        scope = self.scope if self.type is TargetType.ROLE else GROUP_SCOPE
        return Target(self.type, self.object_id, scope)


class PrincipalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: PrincipalType = Field(examples=["user"])
    id: str = Field(max_length=ID)

    def to_domain(self) -> PrincipalRef:
        return PrincipalRef(self.type, self.id)


class ExpirationIn(BaseModel):
    """How the change ends: never, after a duration, or at an instant."""

    model_config = ConfigDict(extra="forbid")

    type: ExpirationType = Field(default=ExpirationType.AFTER_DURATION, examples=["after_duration"])
    duration: Duration | None = Field(
        default=None,
        description="With after_duration; absent: as long as the policy allows (activations).",
    )
    end: AwareDatetime | None = Field(default=None, description="With after_datetime.")


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: AwareDatetime | None = Field(default=None, description="Absent: now.")
    expiration: ExpirationIn = Field(default_factory=ExpirationIn)

    def to_domain(self) -> Schedule:
        e = self.expiration
        return Schedule(start=self.start, expiration=e.type, duration=e.duration, end=e.end)


class TicketIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    system: str = Field(max_length=TICKET_FIELD_LENGTH, examples=["ServiceNow"])
    number: str = Field(max_length=TICKET_FIELD_LENGTH, examples=["INC-42"])

    def to_domain(self) -> Ticket:
        return Ticket(self.system, self.number)


class NewRequest(BaseModel):
    """A change to ask for. Self-service (``self_*``): for the caller, on ``target``.
    ``admin_assign``: ``kind``, ``principal`` and ``target``; the other administrators'
    actions: the ``assignment_id`` they act on."""

    model_config = ConfigDict(extra="forbid")

    action: RequestAction = Field(examples=["self_activate"])
    kind: AssignmentKind = Field(
        default=AssignmentKind.ACTIVE,
        description="The kind of assignment acted on (activations: active).",
    )
    target: TargetIn | None = None
    principal: PrincipalIn | None = Field(default=None, description="admin_assign only.")
    assignment_id: str | None = Field(
        default=None, max_length=ID, description="admin_update/remove/extend/renew."
    )
    schedule: ScheduleIn | None = Field(
        default=None,
        description=(
            "Absent: from now, to the end the role settings allow (self-service). "
            "admin_assign needs one: a duration, an end, or no expiration."
        ),
    )
    justification: str | None = Field(default=None, max_length=MAX_TEXT)
    ticket: TicketIn | None = None
    dry_run: bool = Field(
        default=False, description="Check every rule and answer what would happen; keep nothing."
    )


class Decide(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"justification": "INC-42 checked"}]}
    )

    justification: str | None = Field(
        default=None, max_length=MAX_TEXT, description="Required when the stage asks for one."
    )


# -- out -------------------------------------------------------------------------------------


class TargetOut(BaseModel):
    type: TargetType
    object_id: str
    scope: str


class PrincipalOut(BaseModel):
    type: PrincipalType
    id: str


class TicketOut(BaseModel):
    system: str
    number: str


class WindowOut(BaseModel):
    start: datetime
    end: datetime | None = Field(description="null: permanent.")


class StatusChangeOut(BaseModel):
    status: RequestStatus
    at: datetime
    by: str | None
    reason: str | None


class ApproverOut(BaseModel):
    type: str = Field(examples=["user"])
    id: str

    @classmethod
    def of(cls, ref: ApproverRef) -> ApproverOut:
        return cls(type=ref.type.value, id=ref.id)


class StageOut(BaseModel):
    """One approval stage: ``quorum`` of ``approvers`` (none listed: holders of
    ``pim.requests.approve`` at the target's scope) within ``timeout``."""

    number: int = Field(description="1-based.", examples=[1])
    approvers: list[ApproverOut]
    quorum: int
    timeout: Duration
    approver_justification_required: bool
    escalation_approvers: list[ApproverOut]
    escalation_after: Duration | None = Field(description="null: no escalation.")

    @classmethod
    def of(cls, number: int, stage: ApprovalStage) -> StageOut:
        return cls(
            number=number,
            approvers=[ApproverOut.of(a) for a in stage.approvers],
            quorum=stage.quorum,
            timeout=stage.timeout,
            approver_justification_required=stage.approver_justification_required,
            escalation_approvers=[ApproverOut.of(a) for a in stage.escalation_approvers],
            escalation_after=stage.escalation_after if stage.escalation_enabled else None,
        )


class DecisionOut(BaseModel):
    stage: int = Field(description="1-based.")
    approver_id: str
    approved: bool
    at: datetime
    justification: str | None


class ApprovalOut(BaseModel):
    """The request's approval: its stages, the one waiting (while pending) and the decisions."""

    current_stage: int | None = Field(
        description="1-based; the stage waiting for decisions, null unless pending.",
        examples=[1],
    )
    stages: list[StageOut]
    decisions: list[DecisionOut]


class RequestOut(BaseModel):
    """A request as stored: what was asked, by whom, its status and history, its approval,
    and the assignment it created or acts on. ``dry_run``: nothing was stored (the ``id``
    names nothing)."""

    id: str
    action: RequestAction
    kind: AssignmentKind
    status: RequestStatus
    principal: PrincipalOut
    target: TargetOut
    requested_by: str
    requested_at: datetime
    justification: str | None
    ticket: TicketOut | None
    window: WindowOut | None = Field(description="The window granted or asked for.")
    mfa_verified_at: datetime | None
    assignment_id: str | None = Field(description="The assignment it created or acts on.")
    approval: ApprovalOut | None = Field(description="null: no approval needed.")
    history: list[StatusChangeOut]
    dry_run: bool

    @classmethod
    def of(cls, view: RequestView) -> RequestOut:
        r = view.request
        approval = None
        if view.stages:
            awaiting = view.awaiting
            approval = ApprovalOut(
                current_stage=None if awaiting is None else awaiting + 1,
                stages=[StageOut.of(n, s) for n, s in enumerate(view.stages, start=1)],
                decisions=[
                    DecisionOut(
                        stage=d.stage + 1,
                        approver_id=d.approver_id,
                        approved=d.approved,
                        at=d.at,
                        justification=d.justification,
                    )
                    for d in view.decisions
                ],
            )
        return cls(
            id=r.id,
            action=r.action,
            kind=r.kind,
            status=r.status,
            principal=PrincipalOut(type=r.principal.type, id=r.principal.id),
            target=TargetOut(
                type=r.target.type, object_id=r.target.object_id, scope=r.target.scope
            ),
            requested_by=r.requested_by,
            requested_at=r.requested_at,
            justification=r.justification,
            ticket=None
            if r.ticket is None
            else TicketOut(system=r.ticket.system, number=r.ticket.number),
            window=None
            if view.window is None
            else WindowOut(start=view.window.start, end=view.window.end),
            mfa_verified_at=r.mfa_verified_at,
            assignment_id=view.assignment_id,
            approval=approval,
            history=[
                StatusChangeOut(status=c.status, at=c.at, by=c.by, reason=c.reason)
                for c in r.history
            ],
            dry_run=view.dry_run,
        )


def newest_first_request(view: RequestView) -> tuple[int, str]:
    """The paging key of a request list: newest first, then by id (``deps.newest_first``; a
    request list pages in SQL, ``services.request_reads``, from ``deps.after_cursor``)."""
    return newest_first(view.request.requested_at, view.request.id)
