"""Reads the portal's request pages need beside the request use cases: the names behind the
ids of requests already shown, where each pending request's approval stands now, and
whether the viewer may decide a request now.

Nothing here authorizes a request read or judges a request: the views get requests only from
``services.requests`` / ``services.request_reads`` (which decide who sees what) and pass
those views here. ``names_for`` reads only the names those views mention; ``standing`` and
``may_decide_now`` use the very functions ``services.approvals`` decides with, so the page
says what the decision would do. Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from pimlico.db.request_store import decisions_of_many, request_of
from pimlico.db.tables import (
    GroupRow,
    RequestRow,
    RoleRow,
    ServiceAccountRow,
    UserRow,
)
from pimlico.domain.model import Target, TargetType
from pimlico.domain.policy import ApprovalStage, ApproverType
from pimlico.domain.requests import RequestStatus
from pimlico.services import approvals
from pimlico.services.request_records import RequestView
from pimlico.services.runtime import Actor, Pimlico


@dataclass(frozen=True, slots=True)
class Names:
    """Display names of the people, groups and roles some requests mention (by id)."""

    principals: dict[str, str]
    roles: dict[str, str]

    def of(self, principal_id: str | None) -> str:
        """A principal's display name; ``Pimlico`` for the system, the id if unknown."""
        if principal_id is None:
            return "Pimlico"
        if principal_id.startswith("system:"):
            return f"Pimlico ({principal_id.removeprefix('system:')})"
        return self.principals.get(principal_id, principal_id)

    def target(self, target: Target) -> str:
        """The role's or the group's name."""
        if target.type is TargetType.ROLE:
            return self.roles.get(target.object_id, target.object_id)
        return self.principals.get(target.object_id, target.object_id)


def names_for(rt: Pimlico, *, views: Sequence[RequestView]) -> Names:
    """The names ``views`` mention: requesters, principals, targets, approvers (named, in
    groups, escalation), deciders and who changed each status. Pass only views a request use
    case gave the viewer. Three queries whatever the number of views."""
    ids: set[str] = set()
    role_ids: set[str] = set()
    for view in views:
        r = view.request
        ids.update((r.requested_by, r.principal.id))
        if r.target.type is TargetType.ROLE:
            role_ids.add(r.target.object_id)
        else:
            ids.add(r.target.object_id)
        for stage in view.stages:
            ids.update(a.id for a in (*stage.approvers, *stage.escalation_approvers))
        ids.update(d.approver_id for d in view.decisions)
        ids.update(c.by for c in r.history if c.by is not None)
    principals: dict[str, str] = {}
    roles: dict[str, str] = {}
    if not ids and not role_ids:
        return Names(principals, roles)
    with rt.reading() as s:
        for table in (UserRow, GroupRow, ServiceAccountRow):
            found = s.execute(select(table.id, table.display_name).where(table.id.in_(sorted(ids))))
            principals.update({row_id: name for row_id, name in found})
        if role_ids:
            found = s.execute(
                select(RoleRow.id, RoleRow.name).where(RoleRow.id.in_(sorted(role_ids)))
            )
            roles.update({row_id: name for row_id, name in found})
    return Names(principals, roles)


@dataclass(frozen=True, slots=True)
class Standing:
    """Where a pending request's approval stands now: stage ``number`` (1-based) of
    ``stages``, since ``started_at``, timing out at ``deadline``; ``escalated``: the stage's
    escalation approvers have been asked too."""

    number: int
    stages: int
    stage: ApprovalStage
    started_at: datetime
    deadline: datetime
    escalated: bool

    @property
    def approvers_named(self) -> bool:
        """Does the stage name its approvers (else: holders of ``pim.requests.approve``)?"""
        return bool(self.stage.approvers)

    def approver_ids(self) -> list[tuple[ApproverType, str]]:
        """The approvers asked now: the stage's, and its escalation approvers once asked."""
        asked = list(self.stage.approvers)
        if self.escalated:
            asked += [a for a in self.stage.escalation_approvers if a not in asked]
        return [(a.type, a.id) for a in asked]


def standing(rt: Pimlico, *, views: Iterable[RequestView]) -> dict[str, Standing]:
    """For each pending request among ``views`` (by id), where its approval stands, rebuilt
    from the store as ``approvals.approval_of`` rebuilds it for a decision. Two queries
    whatever the number of views: the requests, then all their decisions."""
    pending = [
        v.request.id
        for v in views
        if v.request.status is RequestStatus.PENDING_APPROVAL and v.stages
    ]
    if not pending:
        return {}
    found: dict[str, Standing] = {}
    with rt.reading() as s:
        rows = list(s.scalars(select(RequestRow).where(RequestRow.id.in_(pending))))
        decided = decisions_of_many(s, [row.id for row in rows])
        for row in rows:
            approval = approvals.approval_of(s, row, request_of(row), decided[row.id])
            found[row.id] = Standing(
                number=approval.current + 1,
                stages=len(approval.stages),
                stage=approval.stage,
                started_at=approval.stage_started_at,
                deadline=approval.deadline,
                escalated=approval.current in approval.escalated,
            )
    return found


def may_decide_now(rt: Pimlico, *, actor: Actor, view: RequestView) -> bool:
    """Whether ``actor`` may approve or deny the request of ``view`` now, as
    ``approvals.approve`` would judge it (never its requester; only a pending request; only an
    approver of its current stage who has not decided it yet), with the decisions the view
    already carries."""
    with rt.reading() as s:
        row = s.get(RequestRow, view.request.id)
        return row is not None and approvals.may_decide(rt, s, actor, row, list(view.decisions))
