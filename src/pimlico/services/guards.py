"""Invariants that protect the installation itself: never lose the last Global Administrator."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from pimlico.db.tables import AssignmentRow, GroupRow, UserRow
from pimlico.domain.catalogue import GLOBAL_ADMINISTRATOR
from pimlico.domain.model import AssignmentKind, PrincipalType, TargetType
from pimlico.errors import LastGlobalAdministrator


def guard_last_global_administrator(
    session: Session,
    *,
    now: datetime,
    losing_assignment: str | None = None,
    losing_user: str | None = None,
) -> None:
    """Raise if, after losing an assignment or a user, nobody would hold Global Administrator.

    Counts active Global Administrator assignments at ``/`` in force now, held by an enabled
    user or by a group. Runs inside the write transaction, after the write lock, so two
    administrators removing each other at once cannot both succeed.
    """
    holders = session.execute(
        select(AssignmentRow.id, AssignmentRow.principal_type, AssignmentRow.principal_id).where(
            AssignmentRow.kind == AssignmentKind.ACTIVE.value,
            AssignmentRow.target_type == TargetType.ROLE.value,
            AssignmentRow.target_id == GLOBAL_ADMINISTRATOR.id,
            AssignmentRow.scope == "/",
            AssignmentRow.ended_at.is_(None),
            AssignmentRow.start_at <= now,
            or_(AssignmentRow.end_at.is_(None), AssignmentRow.end_at > now),
        )
    ).all()
    if losing_assignment is None and losing_user is None:
        return
    relevant = [h for h in holders if h.id == losing_assignment or h.principal_id == losing_user]
    if not relevant:
        return  # the change does not touch a Global Administrator in force
    enabled_users = set(
        session.scalars(
            select(UserRow.id).where(
                UserRow.enabled.is_(True),
                UserRow.id.in_([h.principal_id for h in holders]),
            )
        )
    )
    groups = set(
        session.scalars(
            select(GroupRow.id).where(GroupRow.id.in_([h.principal_id for h in holders]))
        )
    )
    remaining = [
        h
        for h in holders
        if h.id != losing_assignment
        and h.principal_id != losing_user
        and (
            (h.principal_type == PrincipalType.USER.value and h.principal_id in enabled_users)
            or (h.principal_type == PrincipalType.GROUP.value and h.principal_id in groups)
        )
    ]
    if not remaining:
        raise LastGlobalAdministrator(
            "this would leave no active Global Administrator; assign another one first"
        )
