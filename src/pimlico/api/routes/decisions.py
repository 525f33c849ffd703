"""Decisions: ``check`` one question or a batch, ``explain`` one, and effective access.

``check`` and the batch run on the event loop (``async def``), not in the thread pool: they
answer from memory, and touch the store at most once per ``decision_max_staleness`` (or to
reach an ``at_least_revision``), a pause the loop can afford more than a thread hop per call.

Asking about oneself needs nothing; asking about another takes ``pim.decisions.read`` (the
services decide). ``at_least_revision`` (from a write's ``Pimlico-Revision`` header) makes
the answer reflect that write, even when it went through another process.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field, TypeAdapter
from typing_extensions import TypedDict

from pimlico.api.deps import (
    CallerDep,
    HandSolvedRoute,
    RuntimeDep,
    caller_of,
    parsed_body,
    runtime_of,
    solved_by,
)
from pimlico.domain.decisions import Access, Decision, Grant, Step, from_ts
from pimlico.services import decisions
from pimlico.services.runtime import Actor, Pimlico

router = APIRouter(tags=["decisions"], route_class=HandSolvedRoute)


class Question(BaseModel):
    principal_id: str = Field(max_length=64, examples=["3f0c…"])
    permission: str = Field(max_length=256, examples=["mail.purge"])
    scope: str = Field(default="/", max_length=1024, examples=["/apps/mail"])
    at: datetime | None = Field(default=None, description="RFC 3339; default: now.")


class CheckRequest(Question):
    at_least_revision: int | None = Field(
        default=None, ge=0, description="Answer only once this process has seen this revision."
    )


class BatchCheck(BaseModel):
    questions: list[Question] = Field(min_length=1, max_length=1000)
    at_least_revision: int | None = Field(default=None, ge=0)


class StepOut(BaseModel):
    member_id: str
    group_id: str
    via: str = Field(description="`membership` (static) or `assignment` (PIM).")
    via_id: str
    start: datetime | None
    end: datetime | None

    @classmethod
    def of(cls, step: Step) -> StepOut:
        return cls(
            member_id=step.member_id,
            group_id=step.group_id,
            via=step.via,
            via_id=step.via_id,
            start=from_ts(step.start),
            end=from_ts(step.end),
        )


class GrantOut(BaseModel):
    """What gives the permission: the assignment, its role and scope, who holds it, and the
    chain of groups from the principal to that holder."""

    assignment_id: str
    role_id: str
    scope: str
    pattern: str
    holder_id: str
    start: datetime | None
    end: datetime | None = Field(description="When this grant stops applying (null: never).")
    chain: list[StepOut]

    @classmethod
    def of(cls, grant: Grant) -> GrantOut:
        return cls(
            assignment_id=grant.assignment_id,
            role_id=grant.role_id,
            scope=grant.scope,
            pattern=grant.pattern,
            holder_id=grant.holder_id,
            start=grant.start,
            end=grant.end,
            chain=[StepOut.of(s) for s in grant.chain],
        )


class DecisionOut(BaseModel):
    allowed: bool
    principal_id: str
    permission: str
    scope: str
    at: datetime
    reason: str = Field(examples=["granted", "no_grant", "disabled"])
    revision: int = Field(description="The store revision the answer reflects.")
    grant: GrantOut | None = None

    @classmethod
    def of(cls, decision: Decision, *, explain: bool) -> DecisionOut:
        grant = decision.grant
        return cls(
            allowed=decision.allowed,
            principal_id=decision.principal_id,
            permission=decision.permission,
            scope=decision.scope,
            at=decision.at,
            reason=decision.reason,
            revision=decision.revision,
            grant=GrantOut.of(grant) if explain and grant is not None else None,
        )


class _Answer(TypedDict):
    """``DecisionOut`` without its explanation: what ``check`` sends, the same JSON made
    without building and validating a model first (a test holds both to the same bytes)."""

    allowed: bool
    principal_id: str
    permission: str
    scope: str
    at: datetime
    reason: str
    revision: int


_ANSWER = TypeAdapter(_Answer)


def answer_json(decision: Decision) -> bytes:
    """``DecisionOut.of(decision, explain=False)`` as JSON, ``None`` fields left out."""
    return _ANSWER.dump_json(
        {
            "allowed": decision.allowed,
            "principal_id": decision.principal_id,
            "permission": decision.permission,
            "scope": decision.scope,
            "at": decision.at,
            "reason": decision.reason,
            "revision": decision.revision,
        }
    )


class BatchOut(BaseModel):
    results: list[DecisionOut]


class HeldGroupOut(BaseModel):
    group_id: str
    relation: str
    end: datetime | None
    chain: list[StepOut]


class HeldAssignmentOut(BaseModel):
    assignment_id: str
    kind: str
    target_type: str
    target_id: str
    scope: str
    holder_id: str
    start: datetime | None
    end: datetime | None
    chain: list[StepOut]


class AccessOut(BaseModel):
    principal_id: str
    at: datetime
    roles: list[GrantOut]
    groups: list[HeldGroupOut]
    eligible: list[HeldAssignmentOut]
    permissions: list[tuple[str, str]] = Field(description="(pattern, scope) pairs held.")

    @classmethod
    def of(cls, access: Access) -> AccessOut:
        return cls(
            principal_id=access.principal_id,
            at=access.at,
            roles=[GrantOut.of(g) for g in access.roles],
            groups=[
                HeldGroupOut(
                    group_id=g.group_id,
                    relation=g.relation,
                    end=g.end,
                    chain=[StepOut.of(s) for s in g.chain],
                )
                for g in access.groups
            ],
            eligible=[
                HeldAssignmentOut(
                    assignment_id=e.assignment_id,
                    kind=e.kind,
                    target_type=e.target_type,
                    target_id=e.target_id,
                    scope=e.scope,
                    holder_id=e.holder_id,
                    start=e.start,
                    end=e.end,
                    chain=[StepOut.of(s) for s in e.chain],
                )
                for e in access.eligible
            ],
            permissions=sorted(access.permissions),
        )


async def _check_arguments(request: Request) -> dict[str, Any]:
    # Every policy point's call comes here, so its arguments are read by hand (the same
    # functions, the same errors as the signature below declares): dependency injection and
    # body validation would cost more than the decision.
    rt = runtime_of(request)
    caller = await caller_of(request, rt)
    return {"body": await parsed_body(request, CheckRequest), "caller": caller, "rt": rt}


@router.post(
    "/decisions/check",
    response_model=DecisionOut,
    response_model_exclude_none=True,
    summary="May this principal use this permission at this scope?",
)
@solved_by(_check_arguments)
async def check(body: CheckRequest, caller: CallerDep, rt: RuntimeDep) -> Response:
    # Its answer is serialised at once, without a model (``answer_json``).
    decision = _decide(rt, caller, body, body.at_least_revision)
    return Response(answer_json(decision), media_type="application/json")


@router.post(
    "/decisions/check-batch",
    response_model=BatchOut,
    response_model_exclude_none=True,
    summary="Many questions in one call, answered in order",
)
async def check_batch(body: BatchCheck, caller: CallerDep, rt: RuntimeDep) -> BatchOut:
    results = [
        DecisionOut.of(
            _decide(rt, caller, q, body.at_least_revision if i == 0 else None), explain=False
        )
        for i, q in enumerate(body.questions)
    ]
    return BatchOut(results=results)


@router.post(
    "/decisions/explain",
    response_model=DecisionOut,
    summary="The decision with what gives it: assignment, role, window and chain of groups",
)
def explain(body: CheckRequest, caller: CallerDep, rt: RuntimeDep) -> DecisionOut:
    return DecisionOut.of(_decide(rt, caller, body, body.at_least_revision), explain=True)


@router.get(
    "/principals/{principal_id}/access",
    response_model=AccessOut,
    summary="Everything a principal holds now (or at `at`), with the chains",
)
def access(
    principal_id: str,
    caller: CallerDep,
    rt: RuntimeDep,
    at: Annotated[datetime | None, Query(description="RFC 3339; default: now.")] = None,
    at_least_revision: Annotated[int | None, Query(ge=0)] = None,
) -> AccessOut:
    found = decisions.effective_access(
        rt, actor=caller, principal_id=principal_id, at=at, at_least_revision=at_least_revision
    )
    return AccessOut.of(found)


def _decide(rt: Pimlico, caller: Actor, q: Question, at_least_revision: int | None) -> Decision:
    return decisions.check(
        rt,
        actor=caller,
        principal_id=q.principal_id,
        permission=q.permission,
        scope=q.scope,
        at=q.at,
        at_least_revision=at_least_revision,
    )
