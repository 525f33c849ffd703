"""Feeding domain entities into the decision index: one function per entity kind.

The same functions serve a full build (from a ``Directory`` snapshot or a stream of rows) and
the incremental follow of the store, so both paths give the index the same facts.
"""

from __future__ import annotations

from pimlico.domain.decisions import DecisionIndex, ts
from pimlico.domain.model import (
    Assignment,
    Directory,
    Group,
    Membership,
    Role,
    ServiceAccount,
    User,
)


def feed_user(index: DecisionIndex, user: User | ServiceAccount) -> None:
    index.put_principal(user.id, enabled=user.enabled)


def feed_group(index: DecisionIndex, group: Group) -> None:
    index.put_group(group.id)


def feed_role(index: DecisionIndex, role: Role) -> None:
    index.put_role(role.id, role.permissions)


def feed_membership(index: DecisionIndex, membership: Membership) -> None:
    index.put_membership(
        membership.id,
        group_id=membership.group_id,
        member_id=membership.member.id,
        relation=membership.relation.value,
        start=ts(membership.created_at),
        end=ts(membership.ended_at),
    )


def feed_assignment(index: DecisionIndex, assignment: Assignment) -> None:
    index.put_assignment(
        assignment.id,
        kind=assignment.kind.value,
        principal_id=assignment.principal.id,
        target_type=assignment.target.type.value,
        target_id=assignment.target.object_id,
        scope=assignment.target.scope,
        start=ts(assignment.start),
        end=ts(assignment.effective_end),
    )


def build_index(directory: Directory, *, max_depth: int, revision: int = 0) -> DecisionIndex:
    index = DecisionIndex(max_depth=max_depth)
    with index.bulk():
        for user in directory.users.values():
            feed_user(index, user)
        for account in directory.service_accounts.values():
            feed_user(index, account)
        for group in directory.groups.values():
            feed_group(index, group)
        for role in directory.roles.values():
            feed_role(index, role)
        for membership in directory.memberships:
            feed_membership(index, membership)
        for assignment in directory.assignments:
            feed_assignment(index, assignment)
    index.revision = revision
    return index
