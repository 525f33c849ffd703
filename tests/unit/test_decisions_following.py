"""The index follows the store: after every change, fed one by one or in a bulk block, it
answers every question, at every instant, as the reference evaluator does on the directory as
it stands then, and explains each "yes" with a grant that really gives it.

The index keeps derived state (each principal's paths, table of patterns and the groups it
reaches) that every change must refresh or leave harmlessly stale; this is the test that
catches a change that forgets to.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from pimlico.domain.decisions import Decision, DecisionIndex
from pimlico.domain.index_feed import (
    feed_assignment,
    feed_group,
    feed_membership,
    feed_role,
    feed_user,
)
from pimlico.domain.model import (
    Assignment,
    AssignmentKind,
    Directory,
    Group,
    Membership,
    PrincipalRef,
    PrincipalType,
    Relation,
    Role,
    ServiceAccount,
    Target,
    User,
)
from pimlico.domain.permissions import matches
from tests.engines import decide_both
from tests.factories import HOUR, T0
from tests.reference import reference_allows, reference_grants

INSTANTS = [T0 + k * HOUR for k in range(-1, 7)]
PERMISSIONS = ["mail.purge", "mail.read", "mail.admin.read", "security.read"]
PATTERNS = ["mail.purge", "mail.*", "mail.admin.*", "security.read", "*", "pim.*"]
SCOPES = ["/", "/apps/mail", "/apps/mail/finance", "/apps/defender"]
USERS = ["u0", "u1"]
SERVICE_ACCOUNT = "sa0"
GROUPS = ["g0", "g1", "g2", "g3"]
ROLES = ["r0", "r1", "r2"]

starts = st.sampled_from(INSTANTS[:-1])
ends = st.none() | st.sampled_from(INSTANTS)


@dataclass(frozen=True, slots=True)
class MembershipChange:
    """A membership put: new, or a known one (``slot``) with a new window."""

    slot: int
    group_id: str
    member_id: str
    owner: bool
    since: datetime
    ended_at: datetime | None


@dataclass(frozen=True, slots=True)
class AssignmentChange:
    """An assignment put: new, or a known one (``slot``) changed."""

    slot: int
    principal_id: str
    kind: AssignmentKind
    holds: Target
    start: datetime
    end: datetime | None
    ended_at: datetime | None


MEMBERS = [*USERS, SERVICE_ACCOUNT, *GROUPS]
memberships = st.builds(
    MembershipChange,
    slot=st.integers(0, 9),
    group_id=st.sampled_from(GROUPS),
    member_id=st.sampled_from(MEMBERS),
    owner=st.integers(0, 4).map(lambda n: n == 0),
    since=starts,
    ended_at=ends,
)
roles_at_scopes = st.builds(Target.role, st.sampled_from(ROLES), st.sampled_from(SCOPES))
assignments = st.builds(
    AssignmentChange,
    slot=st.integers(0, 39),
    principal_id=st.sampled_from([*MEMBERS, *GROUPS]),
    kind=st.sampled_from([*[AssignmentKind.ACTIVE] * 3, AssignmentKind.ELIGIBLE]),
    holds=st.one_of(
        roles_at_scopes,
        roles_at_scopes,
        st.builds(Target.group_member, st.sampled_from(GROUPS)),
        st.builds(Target.group_owner, st.sampled_from(GROUPS)),
    ),
    start=starts,
    end=ends,
    ended_at=ends,
)


def _ref(principal_id: str) -> PrincipalRef:
    if principal_id in GROUPS:
        return PrincipalRef(PrincipalType.GROUP, principal_id)
    if principal_id == SERVICE_ACCOUNT:
        return PrincipalRef(PrincipalType.SERVICE_ACCOUNT, principal_id)
    return PrincipalRef(PrincipalType.USER, principal_id)


class FollowingTheStore(RuleBasedStateMachine):
    """One directory and one index, changed alike; questions asked after every change."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = Directory()
        self.index = DecisionIndex()
        self.max_depth = 8
        self.bulk = self.index.bulk()
        self.bulk_open = False

    @initialize(
        max_depth=st.integers(1, 4),
        patterns=st.lists(
            st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=3, unique=True),
            min_size=len(ROLES),
            max_size=len(ROLES),
        ),
        data=st.data(),
    )
    def start(self, max_depth: int, patterns: list[list[str]], data: st.DataObject) -> None:
        """A directory already busy (so that each change meets state it can leave stale),
        built one change at a time or in one bulk block."""
        self.max_depth = max_depth
        self.index = DecisionIndex(max_depth=max_depth)
        with self.index.bulk() if data.draw(st.booleans()) else nullcontext():
            for role_id, role_patterns in zip(ROLES, patterns, strict=True):
                self.put_role(role_id, role_patterns)
            for principal_id in [*USERS, SERVICE_ACCOUNT]:
                self.put_principal(principal_id, data.draw(st.booleans() | st.just(True)))
            for group_id in data.draw(st.lists(st.sampled_from(GROUPS), unique=True)):
                self.put_group(group_id)
            for _ in range(data.draw(st.integers(0, 10))):
                self.put_membership(data.draw(memberships))
            for _ in range(data.draw(st.integers(0, 20))):
                self.put_assignment(data.draw(assignments))

    # -- changes ---------------------------------------------------------------------------

    @rule(principal_id=st.sampled_from([*USERS, SERVICE_ACCOUNT]), enabled=st.booleans())
    def put_principal(self, principal_id: str, enabled: bool) -> None:
        if principal_id == SERVICE_ACCOUNT:
            account = ServiceAccount(principal_id, principal_id, principal_id, enabled=enabled)
            self.directory.service_accounts[principal_id] = account
            feed_user(self.index, account)
        else:
            user = User(principal_id, principal_id, principal_id, enabled=enabled)
            self.directory.users[principal_id] = user
            feed_user(self.index, user)

    @rule(group_id=st.sampled_from(GROUPS))
    def put_group(self, group_id: str) -> None:
        group = Group(group_id, group_id, group_id)
        self.directory.groups[group_id] = group
        feed_group(self.index, group)

    @rule(
        role_id=st.sampled_from(ROLES),
        patterns=st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=3, unique=True),
    )
    def put_role(self, role_id: str, patterns: list[str]) -> None:
        role = Role(role_id, role_id, permissions=tuple(patterns))
        self.directory.roles[role_id] = role
        feed_role(self.index, role)

    @rule(change=memberships)
    def put_membership(self, change: MembershipChange) -> None:
        """A new membership, or a known one with a new window (the store never moves one)."""
        mid = f"m{change.slot}"
        group_id, member_id = change.group_id, change.member_id
        relation = Relation.OWNER if change.owner else Relation.MEMBER
        known = next((m for m in self.directory.memberships if m.id == mid), None)
        if known is not None:
            group_id, member_id, relation = known.group_id, known.member.id, known.relation
            self.directory.memberships.remove(known)
        elif group_id == member_id:
            return
        self._known(group_id, member_id)
        membership = Membership(
            mid, group_id, _ref(member_id), relation, change.since, ended_at=change.ended_at
        )
        self.directory.memberships.append(membership)
        feed_membership(self.index, membership)

    @rule(change=assignments)
    def put_assignment(self, change: AssignmentChange) -> None:
        """A new assignment, or a known one changed (same principal: the store never moves
        one); the index is told its effective window, as the follower tells it."""
        aid = f"a{change.slot}"
        principal_id, holds, start, end = (
            change.principal_id,
            change.holds,
            change.start,
            change.end,
        )
        known = self._assignment(aid)
        if known is not None:
            principal_id = known.principal.id
        if holds.is_group and holds.object_id == principal_id:
            return
        if known is not None:
            self.directory.assignments.remove(known)
        self._known(principal_id, holds.object_id if holds.is_group else principal_id)
        assignment = Assignment(
            aid,
            change.kind,
            _ref(principal_id),
            holds,
            start,
            end if end is None or end > start else None,
            created_at=start,
            ended_at=change.ended_at,
        )
        self.directory.assignments.append(assignment)
        feed_assignment(self.index, assignment)

    @rule(slot=st.integers(0, 39))
    def drop_assignment(self, slot: int) -> None:
        known = self._assignment(f"a{slot}")
        if known is not None:
            self.directory.assignments.remove(known)
            self.index.drop_assignment(known.id, known.principal.id)

    @rule(slot=st.integers(0, 9))
    def forget_membership(self, slot: int) -> None:
        known = next((m for m in self.directory.memberships if m.id == f"m{slot}"), None)
        if known is not None:
            self.directory.memberships.remove(known)
            self.index.end_edge(known.id, known.member.id)

    @precondition(lambda self: not self.bulk_open)
    @rule()
    def open_bulk(self) -> None:
        """The next changes are fed as one refresh: derived state is settled when it closes."""
        self.bulk = self.index.bulk()
        self.bulk.__enter__()
        self.bulk_open = True

    @precondition(lambda self: self.bulk_open)
    @rule()
    def close_bulk(self) -> None:
        self.bulk_open = False
        self.bulk.__exit__(None, None, None)

    def teardown(self) -> None:
        if self.bulk_open:
            self.close_bulk()
            self.answers_as_the_reference()

    def _known(self, *ids: str) -> None:
        """The store's foreign keys: a group exists before anything names it. (The index
        catches up once the group is put, but not before: the reference would differ.)"""
        for group_id in ids:
            if group_id in GROUPS and group_id not in self.directory.groups:
                self.put_group(group_id)

    def _assignment(self, aid: str) -> Assignment | None:
        return next((a for a in self.directory.assignments if a.id == aid), None)

    # -- questions -------------------------------------------------------------------------

    @invariant()
    def answers_as_the_reference(self) -> None:
        if self.bulk_open:
            return  # inside a bulk block derived state waits for its end, by design
        d = self.directory
        for principal_id in [*d.users, *d.service_accounts, *d.groups]:
            for at in INSTANTS:
                grants = reference_grants(d, principal_id, at, self.max_depth)
                for permission in PERMISSIONS:
                    for scope in SCOPES:
                        decision = decide_both(self.index, principal_id, permission, scope, at)
                        giving = [a for a in grants if reference_allows(d, a, permission, scope)]
                        assert decision.allowed == bool(giving), (decision, giving)
                        if decision.allowed:
                            self._explanation_holds(decision, giving)

    def _explanation_holds(self, decision: Decision, giving: list[Assignment]) -> None:
        grant = decision.grant
        assert grant is not None
        assignment = next(a for a in giving if a.id == grant.assignment_id)
        assert grant.holder_id == assignment.principal.id
        assert grant.role_id == assignment.target.object_id
        assert grant.scope == assignment.target.scope
        assert matches(grant.pattern, decision.permission)
        assert grant.pattern in self.directory.roles[grant.role_id].permissions
        at = decision.at
        assert grant.start is None or grant.start <= at
        assert grant.end is None or at < grant.end
        member = decision.principal_id
        for step in grant.chain:
            assert step.member_id == member
            assert step.start <= at.timestamp() < step.end
            member = step.group_id
        assert member == grant.holder_id


FollowingTheStore.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_the_index_follows_every_change_exactly = FollowingTheStore.TestCase
