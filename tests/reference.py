"""A naive reference evaluator: decisions straight from a ``Directory`` snapshot, no index.

Slow and obviously right; the property test holds the indexed engine to it.
"""

from __future__ import annotations

from datetime import datetime

from pimlico.domain.model import AssignmentKind, Directory, Relation, TargetType
from pimlico.domain.permissions import matches
from pimlico.domain.scopes import covers


def reference_groups(
    directory: Directory, principal_id: str, at: datetime, max_depth: int
) -> set[str]:
    """Groups ``principal_id`` belongs to at ``at`` through chains of at most ``max_depth``."""
    edges = [
        (m.member.id, m.group_id)
        for m in directory.memberships
        if m.relation is Relation.MEMBER and m.in_force(at)
    ] + [
        (a.principal.id, a.target.object_id)
        for a in directory.assignments
        if a.kind is AssignmentKind.ACTIVE
        and a.target.type is TargetType.GROUP_MEMBER
        and a.in_force(at)
    ]
    reached: set[str] = set()
    frontier = {principal_id}
    for _ in range(max_depth):
        frontier = {group for member, group in edges if member in frontier}
        reached |= frontier
    return reached


def reference_decide(
    directory: Directory,
    principal_id: str,
    permission: str,
    scope: str,
    at: datetime,
    max_depth: int,
) -> bool:
    principal = directory.users.get(principal_id) or directory.service_accounts.get(principal_id)
    if principal is None and principal_id not in directory.groups:
        return False
    if principal is not None and not principal.enabled:
        return False
    holders = {principal_id} | reference_groups(directory, principal_id, at, max_depth)
    for a in directory.assignments:
        if (
            a.kind is AssignmentKind.ACTIVE
            and a.target.type is TargetType.ROLE
            and a.in_force(at)
            and a.principal.id in holders
            and covers(a.target.scope, scope)
            and any(matches(p, permission) for p in directory.roles[a.target.object_id].permissions)
        ):
            return True
    return False
