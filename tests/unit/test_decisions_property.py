"""The indexed decision engine agrees with the naive reference evaluator, on random worlds."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from random import Random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pimlico.domain.decisions import DecisionIndex
from pimlico.domain.index_feed import (
    build_index,
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
    Relation,
    Role,
    ServiceAccount,
    Target,
    User,
)
from tests.engines import decide_both
from tests.factories import HOUR, T0, DirectoryBuilder
from tests.reference import reference_decide

INSTANTS = [T0 + k * HOUR for k in range(-1, 7)]
PERMISSIONS = ["mail.purge", "mail.read", "mail.admin.read", "security.read", "pim.roles.write"]
PATTERNS = [
    "mail.purge",
    "mail.*",
    "mail.admin.*",
    "security.read",
    "*",
    "pim.*",
    "pim.roles.write",
]
SCOPES = ["/", "/apps", "/apps/mail", "/apps/mail/finance", "/apps/defender"]
window_edge = st.sampled_from([None, *INSTANTS])


@st.composite
def windows(draw: st.DrawFn) -> tuple[datetime, datetime | None, datetime | None]:
    start = draw(st.sampled_from(INSTANTS[:-1]))
    end = draw(st.one_of(st.none(), st.sampled_from([i for i in INSTANTS if i > start])))
    ended_at = draw(st.one_of(st.none(), st.sampled_from(INSTANTS)))
    return start, end, ended_at


@st.composite
def worlds(draw: st.DrawFn) -> tuple[Directory, int]:
    d = DirectoryBuilder()
    users = [d.user(f"u{i}", enabled=draw(st.booleans() | st.just(True))) for i in range(3)]
    d.service_account("sa0")
    groups = [d.group(f"g{i}") for i in range(draw(st.integers(0, 5)))]
    roles = [
        d.role(f"r{i}", *draw(st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=3)))
        for i in range(draw(st.integers(1, 3)))
    ]
    # Nesting mostly from a lower to a higher group number. The store refuses cycles among
    # current and future links, but not across time (g1 in g2 last month, g2 in g1 now), and
    # the index must not care: so some links go the other way, whatever their windows.
    pairs = [(a, b) for a in range(len(groups)) for b in range(len(groups)) if a != b]
    for lower, upper in pairs:
        if draw(st.integers(0, 3 if lower < upper else 12)) == 0:
            start, _, ended_at = draw(windows())
            if draw(st.booleans()):
                d.member(groups[upper], groups[lower], since=start, ended_at=ended_at)
            else:
                _, end, _ = draw(windows())
                d.assign(
                    groups[lower],
                    Target.group_member(groups[upper]),
                    start=start,
                    end=end if end is None or end > start else None,
                    ended_at=ended_at,
                )
    principals = [*users, "sa0"]
    for group in groups:
        for member in draw(st.lists(st.sampled_from(principals), max_size=3, unique=True)):
            start, end, ended_at = draw(windows())
            if draw(st.booleans()):
                d.member(group, member, since=start, ended_at=ended_at)
            else:
                kind = draw(st.sampled_from(list(AssignmentKind)))
                d.assign(member, Target.group_member(group), kind=kind, start=start, end=end)
            if draw(st.integers(0, 4)) == 0:
                d.member(group, member, relation=Relation.OWNER)
    for _ in range(draw(st.integers(0, 8))):
        holder = draw(st.sampled_from([*principals, *groups]))
        start, end, ended_at = draw(windows())
        d.assign(
            holder,
            Target.role(draw(st.sampled_from(roles)), draw(st.sampled_from(SCOPES))),
            kind=draw(st.sampled_from(list(AssignmentKind))),
            start=start,
            end=end,
            ended_at=ended_at,
        )
    return d.directory, draw(st.integers(1, 4))


def every_question(directory: Directory) -> list[tuple[str, str, str, datetime]]:
    principals = [*directory.users, *directory.service_accounts, *directory.groups]
    return [
        (p, perm, scope, at)
        for p in principals
        for perm in PERMISSIONS
        for scope in SCOPES
        for at in INSTANTS
    ]


def agree(index: DecisionIndex, directory: Directory, max_depth: int) -> None:
    for p, perm, scope, at in every_question(directory):
        decision = decide_both(index, p, perm, scope, at)
        expected = reference_decide(directory, p, perm, scope, at, max_depth)
        assert decision.allowed == expected, (p, perm, scope, at, decision)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_the_index_decides_exactly_as_the_reference_evaluator(world: tuple[Directory, int]) -> None:
    directory, max_depth = world
    agree(build_index(directory, max_depth=max_depth), directory, max_depth)


def _earlier_version(entity: object) -> object:
    """A plausible earlier state of ``entity``: what the store said before its last change."""
    if isinstance(entity, User | ServiceAccount):
        return replace(entity, enabled=not entity.enabled)
    if isinstance(entity, Role):
        return replace(entity, permissions=("mail.purge", "*")[: 1 + len(entity.permissions) % 2])
    if isinstance(entity, Membership):
        return replace(entity, ended_at=None)
    if isinstance(entity, Assignment):
        return replace(entity, end=None, ended_at=None, kind=AssignmentKind.ACTIVE)
    return entity


def _feed(index: DecisionIndex, entity: object) -> None:
    if isinstance(entity, User | ServiceAccount):
        feed_user(index, entity)
    elif isinstance(entity, Group):
        feed_group(index, entity)
    elif isinstance(entity, Role):
        feed_role(index, entity)
    elif isinstance(entity, Membership):
        feed_membership(index, entity)
    elif isinstance(entity, Assignment):
        feed_assignment(index, entity)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(), st.randoms(use_true_random=False))
def test_feeding_changes_in_any_order_gives_the_same_decisions_as_a_build(
    world: tuple[Directory, int], rnd: Random
) -> None:
    """Every entity arrives twice (an earlier version, then its final one), in random order:
    a membership may come before its group, a grant before its role."""
    directory, max_depth = world
    entities: list[object] = [
        *directory.users.values(),
        *directory.service_accounts.values(),
        *directory.groups.values(),
        *directory.roles.values(),
        *directory.memberships,
        *directory.assignments,
    ]
    events = [(i, False) for i in range(len(entities))] + [(i, True) for i in range(len(entities))]
    rnd.shuffle(events)
    seen: set[int] = set()
    index = DecisionIndex(max_depth=max_depth)
    for i, _ in events:
        final = i in seen  # whichever of an entity's two events comes first is the earlier one
        seen.add(i)
        _feed(index, entities[i] if final else _earlier_version(entities[i]))
    agree(index, directory, max_depth)
