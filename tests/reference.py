"""A naive reference evaluator: decisions straight from a ``Directory`` snapshot, no index.

Slow and obviously right; the property test holds the indexed engine to it.
"""

from __future__ import annotations

from datetime import datetime

from pimlico.domain.model import Assignment, AssignmentKind, Directory, Relation, TargetType
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


def reference_grants(
    directory: Directory, principal_id: str, at: datetime, max_depth: int
) -> list[Assignment]:
    """The active role assignments in force at ``at`` that ``principal_id`` holds, directly or
    through its groups (none for an unknown or disabled principal)."""
    principal = directory.users.get(principal_id) or directory.service_accounts.get(principal_id)
    if principal is None and principal_id not in directory.groups:
        return []
    if principal is not None and not principal.enabled:
        return []
    holders = {principal_id} | reference_groups(directory, principal_id, at, max_depth)
    return [
        a
        for a in directory.assignments
        if a.kind is AssignmentKind.ACTIVE
        and a.target.type is TargetType.ROLE
        and a.in_force(at)
        and a.principal.id in holders
    ]


def reference_allows(directory: Directory, grant: Assignment, permission: str, scope: str) -> bool:
    """Does ``grant`` (an active role assignment in force) give ``permission`` at ``scope``?"""
    return covers(grant.target.scope, scope) and any(
        matches(p, permission) for p in directory.roles[grant.target.object_id].permissions
    )


def reference_decide(
    directory: Directory,
    principal_id: str,
    permission: str,
    scope: str,
    at: datetime,
    max_depth: int,
) -> bool:
    return any(
        reference_allows(directory, a, permission, scope)
        for a in reference_grants(directory, principal_id, at, max_depth)
    )
