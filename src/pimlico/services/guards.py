"""Invariants that protect the installation itself: never lose the last Global Administrator.

Two rules, checked on the store's state before and after a change, inside its transaction
(after the write lock, so two administrators removing each other at once cannot both win):

- a change may not leave nobody holding Global Administrator *now* (Entra's rule), and
- a change may not leave nobody holding it *permanently* when someone did: the break-glass
  account. Time-bound holders come and go; the permanent one is what gets you back in.

"Holding" means an enabled user with an active Global Administrator assignment at ``/`` in
force now, directly or through groups (static memberships and active PIM memberships in
force, up to the nesting cap). A group nobody enabled is in holds nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from pimlico.db.tables import AssignmentRow, MembershipRow, UserRow
from pimlico.domain.catalogue import GLOBAL_ADMINISTRATOR
from pimlico.domain.model import AssignmentKind, PrincipalType, Relation, TargetType
from pimlico.errors import LastGlobalAdministrator


@dataclass(frozen=True, slots=True)
class GlobalAdministrators:
    active: frozenset[str]
    """Enabled users who hold Global Administrator now."""
    permanent: frozenset[str]
    """Those of them whose every link (assignment and memberships) has no end."""


def _in_force(now: datetime) -> list[object]:
    return [
        AssignmentRow.kind == AssignmentKind.ACTIVE.value,
        AssignmentRow.ended_at.is_(None),
        AssignmentRow.start_at <= now,
        or_(AssignmentRow.end_at.is_(None), AssignmentRow.end_at > now),
    ]


def global_administrators(
    session: Session, *, now: datetime, max_depth: int
) -> GlobalAdministrators:
    grants = session.execute(
        select(
            AssignmentRow.principal_type, AssignmentRow.principal_id, AssignmentRow.end_at
        ).where(
            AssignmentRow.target_type == TargetType.ROLE.value,
            AssignmentRow.target_id == GLOBAL_ADMINISTRATOR.id,
            AssignmentRow.scope == "/",
            *_in_force(now),  # type: ignore[arg-type]
        )
    ).all()
    users: dict[str, bool] = {}  # user id → holds it permanently
    groups: dict[str, bool] = {}

    def reach(table: dict[str, bool], key: str, permanent: bool) -> bool:
        """Record a holder; True when this is news (new, or newly permanent)."""
        known = table.get(key)
        if known is None or (permanent and not known):
            table[key] = permanent
            return True
        return False

    frontier: dict[str, bool] = {}
    for principal_type, principal_id, end_at in grants:
        if principal_type == PrincipalType.USER.value:
            reach(users, principal_id, end_at is None)
        elif principal_type == PrincipalType.GROUP.value and reach(
            groups, principal_id, end_at is None
        ):
            frontier[principal_id] = groups[principal_id]
    for _ in range(max_depth):
        if not frontier:
            break
        links = session.execute(
            select(
                MembershipRow.member_type, MembershipRow.member_id, MembershipRow.group_id
            ).where(
                MembershipRow.group_id.in_(list(frontier)),
                MembershipRow.relation == Relation.MEMBER.value,
                MembershipRow.created_at <= now,
                MembershipRow.ended_at.is_(None),
            )
        ).all()
        pim_links = session.execute(
            select(
                AssignmentRow.principal_type,
                AssignmentRow.principal_id,
                AssignmentRow.target_id,
                AssignmentRow.end_at,
            ).where(
                AssignmentRow.target_type == TargetType.GROUP_MEMBER.value,
                AssignmentRow.target_id.in_(list(frontier)),
                *_in_force(now),  # type: ignore[arg-type]
            )
        ).all()
        below: dict[str, bool] = {}
        edges = [(t, m, g, True) for t, m, g in links] + [
            (t, m, g, e is None) for t, m, g, e in pim_links
        ]
        for member_type, member_id, group_id, link_permanent in edges:
            permanent = frontier[group_id] and link_permanent
            if member_type == PrincipalType.USER.value:
                reach(users, member_id, permanent)
            elif member_type == PrincipalType.GROUP.value and reach(groups, member_id, permanent):
                below[member_id] = groups[member_id]
        frontier = below
    enabled = set(
        session.scalars(select(UserRow.id).where(UserRow.id.in_(list(users)), UserRow.enabled))
    )
    return GlobalAdministrators(
        active=frozenset(u for u in users if u in enabled),
        permanent=frozenset(u for u, permanent in users.items() if permanent and u in enabled),
    )


@contextmanager
def keeping_a_global_administrator(
    session: Session, *, now: datetime, max_depth: int
) -> Iterator[None]:
    """Wrap a change; raise ``LastGlobalAdministrator`` (so the transaction rolls back) if
    the change leaves nobody holding Global Administrator now, or nobody permanently when
    somebody did."""
    before = global_administrators(session, now=now, max_depth=max_depth)
    yield
    if not before.active:
        return
    session.flush()
    after = global_administrators(session, now=now, max_depth=max_depth)
    if not after.active:
        raise LastGlobalAdministrator(
            "this would leave no active Global Administrator; assign another one first"
        )
    if before.permanent and not after.permanent:
        raise LastGlobalAdministrator(
            "this would leave no permanent (break-glass) Global Administrator; "
            "give another user a permanent active Global Administrator assignment first"
        )
