"""The decision engine: windows, boundaries, nesting, wildcards, scopes and explanations."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from itertools import pairwise, permutations

from pimlico.domain.decisions import DecisionIndex
from pimlico.domain.index_feed import build_index
from pimlico.domain.model import AssignmentKind, Relation, Target
from tests.factories import HOUR, T0, DirectoryBuilder


def index_of(d: DirectoryBuilder, max_depth: int = 8) -> DecisionIndex:
    return build_index(d.directory, max_depth=max_depth)


def story() -> DirectoryBuilder:
    """Alex is eligible for the Search and Purge PIM group, nested into Search and Purge."""
    d = DirectoryBuilder()
    d.user("alex")
    d.user("bob")
    d.group("sp-pim")
    d.group("sp")
    d.role("purger", "mail.purge", "mail.read")
    d.member("sp", "sp-pim")
    d.assign("sp", Target.role("purger", "/apps/mail"))
    return d


def test_access_starts_exactly_at_start_and_ends_exactly_at_end() -> None:
    d = story()
    d.assign("alex", Target.group_member("sp-pim"), start=T0, end=T0 + 2 * HOUR)
    index = index_of(d)
    at_end = T0 + 2 * HOUR
    assert not index.decide("alex", "mail.purge", "/apps/mail", T0 - HOUR / 3600).allowed
    assert index.decide("alex", "mail.purge", "/apps/mail", T0).allowed
    assert index.decide("alex", "mail.purge", "/apps/mail", at_end - HOUR / 3_600_000).allowed
    assert not index.decide("alex", "mail.purge", "/apps/mail", at_end).allowed


def test_an_ended_assignment_stops_at_its_ended_at_even_before_its_end() -> None:
    d = story()
    d.assign("alex", Target.group_member("sp-pim"), start=T0, end=T0 + 8 * HOUR, ended_at=T0 + HOUR)
    index = index_of(d)
    assert index.decide("alex", "mail.purge", "/apps/mail", T0 + HOUR / 2).allowed
    assert not index.decide("alex", "mail.purge", "/apps/mail", T0 + HOUR).allowed


def test_an_eligible_assignment_grants_nothing_until_activated() -> None:
    d = story()
    d.assign("alex", Target.group_member("sp-pim"), kind=AssignmentKind.ELIGIBLE)
    d.assign("alex", Target.role("purger", "/"), kind=AssignmentKind.ELIGIBLE)
    index = index_of(d)
    decision = index.decide("alex", "mail.purge", "/apps/mail", T0)
    assert not decision.allowed
    assert [e.target_id for e in index.effective_access("alex", T0).eligible] == [
        "sp-pim",
        "purger",
    ]


def test_the_explanation_names_the_assignment_and_the_chain_of_groups() -> None:
    d = story()
    activation = d.assign("alex", Target.group_member("sp-pim"), start=T0, end=T0 + HOUR)
    index = index_of(d)
    decision = index.decide("alex", "mail.purge", "/apps/mail/inbox", T0)
    assert decision.allowed
    assert decision.grant is not None
    assert decision.grant.role_id == "purger"
    assert decision.grant.holder_id == "sp"
    assert decision.grant.scope == "/apps/mail"
    assert [(s.member_id, s.group_id, s.via) for s in decision.grant.chain] == [
        ("alex", "sp-pim", "assignment"),
        ("sp-pim", "sp", "membership"),
    ]
    assert decision.grant.chain[0].via_id == activation.id
    assert decision.grant.end == T0 + HOUR


def test_a_grant_at_a_scope_covers_its_descendants_but_not_its_parent_or_siblings() -> None:
    d = story()
    d.member("sp", "alex")
    index = index_of(d)
    assert index.decide("alex", "mail.purge", "/apps/mail", T0).allowed
    assert index.decide("alex", "mail.purge", "/apps/mail/finance/inbox", T0).allowed
    assert not index.decide("alex", "mail.purge", "/apps", T0).allowed
    assert not index.decide("alex", "mail.purge", "/", T0).allowed
    assert not index.decide("alex", "mail.purge", "/apps/mailbox", T0).allowed


def test_a_trailing_wildcard_matches_below_its_prefix_only() -> None:
    d = DirectoryBuilder()
    d.user("eve")
    d.role("mail-admin", "mail.*")
    d.assign("eve", Target.role("mail-admin"))
    index = index_of(d)
    assert index.decide("eve", "mail.purge", "/x", T0).allowed
    assert index.decide("eve", "mail.admin.read", "/x", T0).allowed
    assert not index.decide("eve", "mail", "/x", T0).allowed
    assert not index.decide("eve", "mailbox.read", "/x", T0).allowed


def test_a_disabled_user_holds_nothing() -> None:
    d = story()
    d.user("carol", enabled=False)
    d.member("sp", "carol")
    index = index_of(d)
    decision = index.decide("carol", "mail.purge", "/apps/mail", T0)
    assert not decision.allowed
    assert decision.reason == "principal is disabled"
    assert index.effective_access("carol", T0).roles == ()


def test_an_unknown_principal_is_refused() -> None:
    index = index_of(story())
    assert index.decide("nobody", "mail.purge", "/", T0).reason == "unknown principal"


def test_nesting_is_followed_up_to_the_depth_cap_and_no_further() -> None:
    d = DirectoryBuilder()
    d.user("u")
    d.role("r", "x.y")
    groups = [d.group(f"g{i}") for i in range(1, 6)]
    d.member("g1", "u")
    for lower, upper in pairwise(groups):
        d.member(upper, lower)
    d.assign("g5", Target.role("r"))
    assert index_of(d, max_depth=5).decide("u", "x.y", "/", T0).allowed
    assert not index_of(d, max_depth=4).decide("u", "x.y", "/", T0).allowed


def test_a_time_bound_link_in_the_middle_of_a_chain_bounds_the_whole_chain() -> None:
    d = DirectoryBuilder()
    d.user("u")
    d.role("r", "x.y")
    for g in ("a", "b", "c"):
        d.group(g)
    d.member("a", "u")
    d.assign("a", Target.group_member("b"), start=T0, end=T0 + HOUR)
    d.member("c", "b")
    d.assign("c", Target.role("r"))
    index = index_of(d)
    assert not index.decide("u", "x.y", "/", T0 - HOUR).allowed
    decision = index.decide("u", "x.y", "/", T0)
    assert decision.allowed
    assert decision.grant is not None
    assert decision.grant.end == T0 + HOUR
    assert not index.decide("u", "x.y", "/", T0 + HOUR).allowed


def test_a_service_account_holds_its_active_assignments() -> None:
    d = DirectoryBuilder()
    d.service_account("ci-bot")
    d.role("deployer", "deploy.run")
    d.assign("ci-bot", Target.role("deployer", "/apps/web"), start=T0, end=T0 + HOUR)
    index = index_of(d)
    assert index.decide("ci-bot", "deploy.run", "/apps/web", T0).allowed


def test_a_group_can_be_asked_about_directly() -> None:
    index = index_of(story())
    assert index.decide("sp-pim", "mail.purge", "/apps/mail", T0).allowed


def test_effective_access_lists_roles_groups_and_permissions_in_force() -> None:
    d = story()
    d.assign("alex", Target.group_member("sp-pim"), start=T0, end=T0 + HOUR)
    d.member("sp-pim", "alex", relation=Relation.OWNER)
    access = index_of(d).effective_access("alex", T0)
    assert {(g.group_id, g.relation) for g in access.groups} == {
        ("sp-pim", "member"),
        ("sp", "member"),
        ("sp-pim", "owner"),
    }
    assert [r.role_id for r in access.roles] == ["purger"]
    assert access.permissions == {("mail.purge", "/apps/mail"), ("mail.read", "/apps/mail")}
    assert index_of(d).effective_access("alex", T0 + HOUR).roles == ()


def test_incremental_changes_are_seen_by_the_next_decision() -> None:
    d = story()
    index = index_of(d)
    assert not index.decide("alex", "mail.purge", "/apps/mail", T0).allowed
    index.put_assignment(
        "act-1",
        kind="active",
        principal_id="alex",
        target_type="group_member",
        target_id="sp-pim",
        scope="/",
        start=T0.timestamp(),
        end=(T0 + HOUR).timestamp(),
    )
    assert index.decide("alex", "mail.purge", "/apps/mail", T0).allowed
    index.put_role("purger", ("mail.read",))
    assert not index.decide("alex", "mail.purge", "/apps/mail", T0).allowed
    index.put_role("purger", ("mail.*",))
    assert index.decide("alex", "mail.purge", "/apps/mail", T0).allowed
    index.drop_assignment("act-1", "alex")
    assert not index.decide("alex", "mail.purge", "/apps/mail", T0).allowed


def test_nesting_a_group_later_reaches_users_already_inside_it() -> None:
    d = DirectoryBuilder()
    d.user("u")
    d.group("inner")
    d.group("outer")
    d.role("r", "x.y")
    d.member("inner", "u")
    d.assign("outer", Target.role("r"))
    index = index_of(d)
    assert not index.decide("u", "x.y", "/", T0).allowed
    index.put_membership(
        "m-late",
        group_id="outer",
        member_id="inner",
        relation="member",
        start=T0.timestamp(),
        end=float("inf"),
    )
    assert index.decide("u", "x.y", "/", T0).allowed
    index.end_edge("m-late", "inner")
    assert not index.decide("u", "x.y", "/", T0).allowed


def test_a_short_chain_is_kept_beside_a_longer_one_with_a_wider_window() -> None:
    d = DirectoryBuilder()
    d.user("u")
    d.role("r", "x.y")
    for g in ("g1", "g2", "g3", "g4"):
        d.group(g)
    d.member("g1", "u")
    d.member("g2", "g1")  # the long way: g1 → g2 → g3, always
    d.member("g3", "g2")
    d.assign("g1", Target.group_member("g3"), start=T0, end=T0 + HOUR)  # the short way, briefly
    d.member("g4", "g3")
    d.assign("g4", Target.role("r"))
    index = index_of(d, max_depth=3)
    assert index.decide("u", "x.y", "/", T0).allowed
    assert not index.decide("u", "x.y", "/", T0 + HOUR).allowed


INF = float("inf")


def test_a_group_first_seen_as_a_member_follows_later_nesting_once_it_is_known() -> None:
    index = DecisionIndex(max_depth=4)
    t = T0.timestamp()
    # A follower may see the membership before the group it names.
    index.put_membership("m1", group_id="G", member_id="X", relation="member", start=t, end=INF)
    for g in ("X", "G", "H"):
        index.put_group(g)
    index.put_role("r", ("x.y",))
    index.put_assignment(
        "a1",
        kind="active",
        principal_id="H",
        target_type="role",
        target_id="r",
        scope="/",
        start=t,
        end=INF,
    )
    index.put_membership("m2", group_id="H", member_id="G", relation="member", start=t, end=INF)
    assert index.decide("X", "x.y", "/", T0).allowed


def test_ending_one_of_two_links_between_the_same_groups_keeps_the_other_working() -> None:
    index = DecisionIndex(max_depth=4)
    t = T0.timestamp()
    index.put_principal("u", enabled=True)
    for g in ("A", "B", "C"):
        index.put_group(g)
    index.put_role("r", ("x.y",))
    index.put_assignment(
        "grant",
        kind="active",
        principal_id="C",
        target_type="role",
        target_id="r",
        scope="/",
        start=t,
        end=INF,
    )
    index.put_membership("m1", group_id="A", member_id="u", relation="member", start=t, end=INF)
    index.put_membership("m2", group_id="B", member_id="A", relation="member", start=t, end=INF)
    index.put_assignment(
        "pim",
        kind="active",
        principal_id="A",
        target_type="group_member",
        target_id="B",
        scope="/",
        start=t,
        end=INF,
    )
    index.drop_assignment("pim", "A")
    # B is nested later: A (still a static member of B) must follow.
    index.put_membership("m3", group_id="C", member_id="B", relation="member", start=t, end=INF)
    assert index.decide("u", "x.y", "/", T0).allowed


def test_nesting_that_reversed_over_time_still_reaches_the_current_parent() -> None:
    # g1 was in g2 (ended); now g2 is in g1. Every feeding order must give the same answer.
    t = T0.timestamp()
    hour = 3600.0
    feeds: list[Callable[[DecisionIndex], None]] = [
        lambda i: i.put_membership(
            "m1", group_id="g2", member_id="g1", relation="member", start=t, end=t + hour
        ),
        lambda i: i.put_membership(
            "m2", group_id="g1", member_id="g2", relation="member", start=t + 2 * hour, end=INF
        ),
        lambda i: i.put_membership(
            "m3", group_id="g2", member_id="u", relation="member", start=t, end=INF
        ),
        lambda i: i.put_assignment(
            "a",
            kind="active",
            principal_id="g1",
            target_type="role",
            target_id="r",
            scope="/",
            start=t,
            end=INF,
        ),
    ]
    for order in permutations(feeds):
        for bulk in (False, True):
            index = DecisionIndex(max_depth=4)
            index.put_principal("u", enabled=True)
            index.put_group("g1")
            index.put_group("g2")
            index.put_role("r", ("x.y",))
            with index.bulk() if bulk else nullcontext(index):
                for feed in order:
                    feed(index)
            assert index.decide("u", "x.y", "/", T0 + 3 * HOUR).allowed
            assert not index.decide("u", "x.y", "/", T0 + HOUR).allowed
            assert index.decide("g2", "x.y", "/", T0 + 3 * HOUR).allowed


def test_a_group_named_as_a_member_before_it_is_known_follows_later_grants() -> None:
    index = DecisionIndex(max_depth=4)
    with index.bulk():
        index.put_membership(
            "m", group_id="H", member_id="G", relation="member", start=-INF, end=INF
        )
        index.put_group("G")
        index.put_group("H")
    index.put_role("r", ("x.y",))
    index.put_assignment(
        "a",
        kind="active",
        principal_id="H",
        target_type="role",
        target_id="r",
        scope="/",
        start=-INF,
        end=INF,
    )
    assert index.decide("G", "x.y", "/", T0).allowed


def test_a_holder_never_put_still_decides_through_its_own_grants() -> None:
    index = DecisionIndex(max_depth=4)
    index.put_role("r", ("x.y",))
    index.put_assignment(
        "a",
        kind="active",
        principal_id="lonely",
        target_type="role",
        target_id="r",
        scope="/",
        start=-INF,
        end=INF,
    )
    assert index.decide("lonely", "x.y", "/", T0).allowed
    index.drop_assignment("a", "lonely")
    assert not index.decide("lonely", "x.y", "/", T0).allowed
