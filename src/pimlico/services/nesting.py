"""Group nesting rules at write time: no cycles, no chain deeper than the configured cap.

Nesting is made of static memberships (a group member of a group) and of group-membership
assignments held by groups, eligible or active, current or scheduled: a cycle that would only
appear once something is activated is still refused when it is written.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from functools import cache

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from pimlico.db.tables import AssignmentRow, GroupRow, MembershipRow
from pimlico.domain.model import PrincipalType, Relation, TargetType
from pimlico.errors import CycleDetected, DepthExceeded, FieldError, InvalidInput


def _group_edges(session: Session, now: datetime) -> list[tuple[str, str]]:
    """(child group, parent group) for every current or future nesting link."""
    static = session.execute(
        select(MembershipRow.member_id, MembershipRow.group_id).where(
            MembershipRow.member_type == PrincipalType.GROUP.value,
            MembershipRow.relation == Relation.MEMBER.value,
            MembershipRow.ended_at.is_(None),
        )
    ).all()
    assigned = session.execute(
        select(AssignmentRow.principal_id, AssignmentRow.target_id).where(
            AssignmentRow.principal_type == PrincipalType.GROUP.value,
            AssignmentRow.target_type == TargetType.GROUP_MEMBER.value,
            AssignmentRow.ended_at.is_(None),
            or_(AssignmentRow.end_at.is_(None), AssignmentRow.end_at > now),
        )
    ).all()
    return [(child, parent) for child, parent in [*static, *assigned]]


def check_nesting(
    session: Session, *, child: str, parent: str, now: datetime, max_depth: int
) -> None:
    """Raise unless making group ``child`` a member of group ``parent`` keeps the rules."""
    if child == parent:
        raise CycleDetected("a group cannot be a member of itself")
    up: dict[str, set[str]] = defaultdict(set)
    down: dict[str, set[str]] = defaultdict(set)
    for c, p in _group_edges(session, now):
        up[c].add(p)
        down[p].add(c)
    seen: set[str] = set()
    stack = [parent]
    while stack:
        group = stack.pop()
        if group == child:
            raise CycleDetected(
                f"group {parent} is already (transitively) a member of group {child}: "
                "nesting it would make a cycle"
            )
        if group not in seen:
            seen.add(group)
            stack.extend(up[group])

    @cache
    def height(group: str) -> int:
        """Links from a principal at the bottom up to ``group`` (a user in it counts 1)."""
        return 1 + max((height(g) for g in down[group]), default=0)

    @cache
    def above(group: str) -> int:
        return max((1 + above(g) for g in up[group]), default=0)

    depth = height(child) + 1 + above(parent)
    if depth > max_depth:
        raise DepthExceeded(
            f"nesting group {child} into {parent} makes a chain of {depth} links; "
            f"the cap is {max_depth} (setting PIMLICO_MAX_NESTING_DEPTH)"
        )


def check_role_assignable_nesting(parent: GroupRow, member: GroupRow) -> None:
    """Only a role-assignable group may be nested into a role-assignable group.

    Otherwise whoever manages the plain group (``pim.groups.write``) would decide who
    receives the privileged group's roles: exactly what role-assignability exists to stop.
    """
    if parent.role_assignable and not member.role_assignable:
        raise InvalidInput(
            "a plain group cannot be nested into a role-assignable group",
            [
                FieldError(
                    "member",
                    "RoleAssignableGroupRequired",
                    f"{parent.name} is role-assignable: only role-assignable groups may be "
                    "nested into it",
                )
            ],
        )
