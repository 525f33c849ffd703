"""Assignments: eligible and active schedules (in force now or later) and their instances
(in force now), as Microsoft Graph splits them, with the caller's own (``mine``) apart.

Anyone sees their own assignments (the token's ``pim.self`` scope); seeing others' takes
``pim.assignments.read`` (the services decide). Changing assignments is done by requests
(``POST /requests`` with an ``admin_*`` action), never here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from pimlico.api.deps import CallerDep, Page, PagingDep, RuntimeDep, newest_first, require_self
from pimlico.api.routes.request_models import ID, PrincipalOut, TargetOut
from pimlico.domain.model import (
    Assignment,
    AssignmentKind,
    PrincipalRef,
    PrincipalType,
    Target,
    TargetType,
)
from pimlico.errors import FieldError, InvalidInput
from pimlico.services import assignments
from pimlico.services.runtime import Actor, Pimlico

router = APIRouter(tags=["assignments"])


class AssignmentOut(BaseModel):
    """A principal holds a target, eligibly or actively, for ``[start, end)``."""

    id: str
    kind: AssignmentKind
    principal: PrincipalOut
    target: TargetOut
    start: datetime
    end: datetime | None = Field(description="null: permanent.")
    created_at: datetime
    created_by: str | None
    justification: str | None
    activated_from: str | None = Field(
        description="For an activation: the eligible assignment it was made from."
    )
    request_id: str | None = Field(description="The request that made it.")
    in_force: bool = Field(description="In force now (else it starts later).")

    @classmethod
    def of(cls, a: Assignment, now: datetime) -> AssignmentOut:
        return cls(
            id=a.id,
            kind=a.kind,
            principal=PrincipalOut(type=a.principal.type, id=a.principal.id),
            target=TargetOut(
                type=a.target.type, object_id=a.target.object_id, scope=a.target.scope
            ),
            start=a.start,
            end=a.end,
            created_at=a.created_at,
            created_by=a.created_by,
            justification=a.justification,
            activated_from=a.activated_from,
            request_id=a.request_id,
            in_force=a.in_force(now),
        )


class Filters:
    """The filters every assignment list takes."""

    def __init__(
        self,
        mine: Annotated[
            bool, Query(description="Only the caller's own (no admin permission needed).")
        ] = False,
        principal_type: PrincipalType = PrincipalType.USER,
        principal_id: Annotated[str | None, Query(max_length=ID)] = None,
        target_type: TargetType | None = None,
        target_id: Annotated[
            str | None, Query(max_length=ID, description="With target_type.")
        ] = None,
    ) -> None:
        self.mine = mine
        self.principal_type = principal_type
        self.principal_id = principal_id
        self.target_type = target_type
        self.target_id = target_id

    def principal(self, caller: Actor) -> PrincipalRef | None:
        if self.mine and self.principal_id is not None:
            raise InvalidInput(
                "mine or principal_id, not both",
                [FieldError("principal_id", "Exclusive", "mine already names the caller")],
            )
        if self.mine:
            require_self(caller)
            return PrincipalRef(caller.principal_type, caller.principal_id or "")
        if self.principal_id is None:
            return None
        return PrincipalRef(self.principal_type, self.principal_id)

    def target(self) -> Target | None:
        if (self.target_type is None) != (self.target_id is None):
            raise InvalidInput(
                "give target_type and target_id together",
                [FieldError("target_id", "Together", "with target_type, or neither")],
            )
        if self.target_type is None or self.target_id is None:
            return None
        return Target(self.target_type, self.target_id)


FiltersDep = Annotated[Filters, Depends()]


def _newest_first(a: Assignment) -> tuple[int, str]:
    return newest_first(a.created_at, a.id)


def _listed(
    rt: Pimlico,
    caller: Actor,
    paging: PagingDep,
    filters: Filters,
    kind: AssignmentKind,
    *,
    in_force_only: bool,
) -> Page[AssignmentOut]:
    found = assignments.list_assignments(
        rt,
        actor=caller,
        principal=filters.principal(caller),
        target=filters.target(),
        kind=kind,
    )
    now = rt.clock.now()
    if in_force_only:
        found = [a for a in found if a.in_force(now)]

    def make(a: Assignment) -> AssignmentOut:
        return AssignmentOut.of(a, now)

    return paging.page(found, _newest_first, make)


@router.get(
    "/assignments/eligible/schedules",
    response_model=Page[AssignmentOut],
    summary="Eligible assignments in force now or starting later, newest first",
)
def eligible_schedules(
    caller: CallerDep, rt: RuntimeDep, paging: PagingDep, filters: FiltersDep
) -> Page[AssignmentOut]:
    return _listed(rt, caller, paging, filters, AssignmentKind.ELIGIBLE, in_force_only=False)


@router.get(
    "/assignments/eligible/instances",
    response_model=Page[AssignmentOut],
    summary="Eligible assignments in force now, newest first",
)
def eligible_instances(
    caller: CallerDep, rt: RuntimeDep, paging: PagingDep, filters: FiltersDep
) -> Page[AssignmentOut]:
    return _listed(rt, caller, paging, filters, AssignmentKind.ELIGIBLE, in_force_only=True)


@router.get(
    "/assignments/active/schedules",
    response_model=Page[AssignmentOut],
    summary="Active assignments (activations too) in force now or starting later, newest first",
)
def active_schedules(
    caller: CallerDep, rt: RuntimeDep, paging: PagingDep, filters: FiltersDep
) -> Page[AssignmentOut]:
    return _listed(rt, caller, paging, filters, AssignmentKind.ACTIVE, in_force_only=False)


@router.get(
    "/assignments/active/instances",
    response_model=Page[AssignmentOut],
    summary="Active assignments (activations too) in force now, newest first",
)
def active_instances(
    caller: CallerDep, rt: RuntimeDep, paging: PagingDep, filters: FiltersDep
) -> Page[AssignmentOut]:
    return _listed(rt, caller, paging, filters, AssignmentKind.ACTIVE, in_force_only=True)
