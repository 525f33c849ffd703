"""Each kind of change reaches the next decision, however the index files what it derives.

One test per way a change can leave derived state stale: a group that gains a permission new
to it, a principal's own grants added, replaced or dropped, a role that changes, a window that
moves. (The stateful test in ``test_decisions_following`` covers their combinations.)
"""

from __future__ import annotations

from pimlico.domain.decisions import DecisionIndex
from tests.factories import HOUR, T0

INF = float("inf")
t0 = T0.timestamp()
hour = HOUR.total_seconds()


def directory() -> DecisionIndex:
    """Uma is in the ops group, which is inside the admins group."""
    index = DecisionIndex(max_depth=4)
    index.put_principal("uma", enabled=True)
    index.put_group("ops")
    index.put_group("admins")
    index.put_role("reader", ("mail.read",))
    index.put_role("purger", ("mail.purge",))
    index.put_membership(
        "m1", group_id="ops", member_id="uma", relation="member", start=-INF, end=INF
    )
    index.put_membership(
        "m2", group_id="admins", member_id="ops", relation="member", start=-INF, end=INF
    )
    return index


def grant(
    index: DecisionIndex,
    aid: str,
    holder: str,
    role: str,
    scope: str = "/",
    start: float = -INF,
    end: float = INF,
) -> None:
    index.put_assignment(
        aid,
        kind="active",
        principal_id=holder,
        target_type="role",
        target_id=role,
        scope=scope,
        start=start,
        end=end,
    )


def allowed(index: DecisionIndex, permission: str, scope: str = "/", hours: float = 0) -> bool:
    return index.decide("uma", permission, scope, T0 + hours * HOUR).allowed


def test_a_group_given_a_permission_new_to_it_passes_it_on_to_its_members_at_once() -> None:
    index = directory()
    grant(index, "a1", "admins", "reader")
    assert allowed(index, "mail.read")
    assert not allowed(index, "mail.purge")
    grant(index, "a2", "admins", "purger")
    assert allowed(index, "mail.purge")


def test_a_second_grant_of_a_permission_the_user_holds_counts_at_its_own_scope() -> None:
    index = directory()
    grant(index, "a1", "uma", "purger", "/apps/mail")
    grant(index, "a2", "uma", "purger", "/apps/defender")
    assert allowed(index, "mail.purge", "/apps/defender")
    assert allowed(index, "mail.purge", "/apps/mail")


def test_dropping_one_of_two_grants_of_a_permission_keeps_only_the_other() -> None:
    index = directory()
    grant(index, "a1", "uma", "purger", "/apps/mail")
    grant(index, "a2", "uma", "purger", "/apps/defender")
    index.drop_assignment("a2", "uma")
    assert not allowed(index, "mail.purge", "/apps/defender")
    assert allowed(index, "mail.purge", "/apps/mail")
    index.drop_assignment("a1", "uma")
    assert not allowed(index, "mail.purge", "/apps/mail")


def test_a_grant_put_again_with_a_new_window_ends_at_its_new_end() -> None:
    index = directory()
    grant(index, "a1", "uma", "purger", start=t0, end=t0 + 2 * hour)
    grant(index, "a2", "ops", "purger", start=t0, end=t0 + 2 * hour)
    assert allowed(index, "mail.purge", hours=1.5)
    grant(index, "a1", "uma", "purger", start=t0, end=t0 + hour)
    grant(index, "a2", "ops", "purger", start=t0, end=t0 + hour)
    assert allowed(index, "mail.purge", hours=0.5)
    assert not allowed(index, "mail.purge", hours=1)
    assert not allowed(index, "mail.purge", hours=1.5)


def test_a_role_that_changes_changes_what_its_holders_and_their_members_may_do() -> None:
    index = directory()
    grant(index, "a1", "admins", "reader")  # admins keep another grant through the change
    grant(index, "a2", "admins", "purger")
    grant(index, "a3", "uma", "purger", "/apps/mail")
    index.put_role("purger", ("mail.export",))
    assert not allowed(index, "mail.purge")
    assert allowed(index, "mail.export")
    assert allowed(index, "mail.export", "/apps/mail")
    index.put_role("purger", ("mail.purge",))
    assert allowed(index, "mail.purge")
    assert not allowed(index, "mail.export")


def test_a_group_that_loses_a_permission_and_gains_it_back_grants_it_again() -> None:
    index = directory()
    grant(index, "a1", "admins", "reader")
    grant(index, "a2", "admins", "purger")
    index.drop_assignment("a2", "admins")
    assert not allowed(index, "mail.purge")
    grant(index, "a3", "admins", "purger", "/apps/mail")
    assert allowed(index, "mail.purge", "/apps/mail")
    assert not allowed(index, "mail.purge", "/")


def test_a_group_that_loses_its_last_grant_and_gets_one_again_is_reached_again() -> None:
    index = directory()
    grant(index, "a1", "ops", "reader")
    index.drop_assignment("a1", "ops")
    assert not allowed(index, "mail.read")
    grant(index, "a2", "ops", "reader")
    assert allowed(index, "mail.read")


def test_the_explanation_names_the_users_own_grant_before_a_groups() -> None:
    index = directory()
    grant(index, "own", "uma", "purger")
    grant(index, "inherited", "admins", "purger")
    decision = index.decide("uma", "mail.purge", "/", T0)
    assert decision.grant is not None
    assert (decision.grant.assignment_id, decision.grant.holder_id) == ("own", "uma")
    assert decision.grant.chain == ()
    index.drop_assignment("own", "uma")
    decision = index.decide("uma", "mail.purge", "/", T0)
    assert decision.grant is not None
    assert (decision.grant.assignment_id, decision.grant.holder_id) == ("inherited", "admins")
    assert [s.group_id for s in decision.grant.chain] == ["ops", "admins"]


def test_a_grant_put_twice_in_a_first_build_ends_at_its_second_window() -> None:
    """A first build skips forgetting ids it has not seen: one seen in the same block is
    still forgotten before it is put again."""
    index = DecisionIndex(max_depth=4)
    with index.bulk():
        index.put_principal("uma", enabled=True)
        index.put_role("purger", ("mail.purge",))
        grant(index, "a1", "uma", "purger", start=t0, end=t0 + 2 * hour)
        grant(index, "a1", "uma", "purger", start=t0, end=t0 + hour)
    assert allowed(index, "mail.purge", hours=0.5)
    assert not allowed(index, "mail.purge", hours=1.5)
    assert len(index._held["uma"]["mail.purge"]) == 1
