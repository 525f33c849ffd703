"""Directory use cases on SQLite and PostgreSQL: users, groups, nesting and their rules."""

from __future__ import annotations

from itertools import pairwise

import pytest

from pimlico.clock import FixedClock
from pimlico.domain.catalogue import GLOBAL_ADMINISTRATOR
from pimlico.domain.model import AssignmentKind, Relation, Target
from pimlico.errors import (
    AlreadyExists,
    CycleDetected,
    DepthExceeded,
    InvalidInput,
    LastGlobalAdministrator,
)
from pimlico.services import assignments, decisions, directory
from pimlico.services.runtime import Pimlico
from tests.factories import HOUR
from tests.integration.world import OPERATOR, audit_count, group, role, user


def test_a_taken_user_name_is_refused_whatever_its_case_and_nothing_is_written(
    rt: Pimlico,
) -> None:
    user(rt, "alex")
    before = audit_count(rt)
    with pytest.raises(AlreadyExists):
        directory.create_user(rt, actor=OPERATOR, user_name="ALEX")
    assert audit_count(rt) == before
    assert [u.user_name for u in directory.list_users(rt, actor=OPERATOR)] == ["alex"]


def test_a_bad_email_names_the_field_and_the_rule(rt: Pimlico) -> None:
    with pytest.raises(InvalidInput) as caught:
        directory.create_user(rt, actor=OPERATOR, user_name="bob", email="not-an-address")
    assert [(e.field, e.rule) for e in caught.value.errors] == [("email", "EmailFormat")]


def test_every_write_returns_the_next_revision(rt: Pimlico) -> None:
    first = directory.create_user(rt, actor=OPERATOR, user_name="a").revision
    second = directory.create_user(rt, actor=OPERATOR, user_name="b").revision
    assert second == first + 1


def test_a_group_cannot_contain_itself_directly_or_through_others(rt: Pimlico) -> None:
    a, b, c = group(rt, "a"), group(rt, "b"), group(rt, "c")
    directory.add_member(rt, actor=OPERATOR, group_id=b.id, member=a)
    directory.add_member(rt, actor=OPERATOR, group_id=c.id, member=b)
    with pytest.raises(CycleDetected):
        directory.add_member(rt, actor=OPERATOR, group_id=a.id, member=a)
    with pytest.raises(CycleDetected):
        directory.add_member(rt, actor=OPERATOR, group_id=a.id, member=c)


def test_a_cycle_through_an_eligible_group_membership_is_refused_too(rt: Pimlico) -> None:
    a, b = group(rt, "a"), group(rt, "b")
    directory.add_member(rt, actor=OPERATOR, group_id=b.id, member=a)
    with pytest.raises(CycleDetected):
        assignments.assign(
            rt,
            actor=OPERATOR,
            kind=AssignmentKind.ELIGIBLE,
            principal=b,
            target=Target.group_member(a.id),
            duration=HOUR * 24,
        )


def test_nesting_deeper_than_the_cap_is_refused(rt: Pimlico) -> None:
    # The fixture's cap is 4 links: user → g1 → g2 → g3 → g4.
    g = [group(rt, f"g{i}") for i in range(1, 6)]
    for lower, upper in pairwise(g[:4]):
        directory.add_member(rt, actor=OPERATOR, group_id=upper.id, member=lower)
    with pytest.raises(DepthExceeded):
        directory.add_member(rt, actor=OPERATOR, group_id=g[4].id, member=g[3])


def test_a_removed_member_keeps_its_row_with_who_when_and_why(
    rt: Pimlico, clock: FixedClock
) -> None:
    g, u = group(rt, "g"), user(rt, "u")
    directory.add_member(rt, actor=OPERATOR, group_id=g.id, member=u)
    clock.advance(HOUR)
    directory.remove_member(rt, actor=OPERATOR, group_id=g.id, member=u, reason="left the team")
    rows = directory.list_memberships(rt, actor=OPERATOR, group_id=g.id, include_ended=True)
    assert [(m.ended_at, m.ended_by, m.end_reason) for m in rows] == [
        (clock.now(), OPERATOR.name, "left the team")
    ]
    assert directory.list_memberships(rt, actor=OPERATOR, group_id=g.id) == []


def test_a_disabled_user_holds_nothing_and_holds_it_again_when_enabled(rt: Pimlico) -> None:
    u = user(rt, "u")
    g = group(rt, "g", role_assignable=True)
    r = role(rt, "purger", "mail.purge")
    directory.add_member(rt, actor=OPERATOR, group_id=g.id, member=u)
    assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ACTIVE,
        principal=g,
        target=Target.role(r),
        duration=HOUR * 24,
        justification="standing",
    )
    assert decisions.check(
        rt, actor=OPERATOR, principal_id=u.id, permission="mail.purge", scope="/"
    ).allowed
    directory.set_user_enabled(rt, actor=OPERATOR, user_id=u.id, enabled=False, reason="leaver")
    assert not decisions.check(
        rt, actor=OPERATOR, principal_id=u.id, permission="mail.purge", scope="/"
    ).allowed
    directory.set_user_enabled(rt, actor=OPERATOR, user_id=u.id, enabled=True)
    assert decisions.check(
        rt, actor=OPERATOR, principal_id=u.id, permission="mail.purge", scope="/"
    ).allowed


def test_an_owner_must_be_a_person_or_a_service_account(rt: Pimlico) -> None:
    g, h = group(rt, "g"), group(rt, "h")
    with pytest.raises(InvalidInput):
        directory.add_member(rt, actor=OPERATOR, group_id=g.id, member=h, relation=Relation.OWNER)


def test_the_last_global_administrator_can_be_neither_disabled_nor_removed(rt: Pimlico) -> None:
    root = user(rt, "root")
    first = assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ACTIVE,
        principal=root,
        target=Target.role(GLOBAL_ADMINISTRATOR.id),
        duration=HOUR * 24,
        justification="break glass",
    ).value
    with pytest.raises(LastGlobalAdministrator):
        directory.set_user_enabled(rt, actor=OPERATOR, user_id=root.id, enabled=False)
    with pytest.raises(LastGlobalAdministrator):
        assignments.remove_assignment(rt, actor=OPERATOR, assignment_id=first.id)
    second = user(rt, "second")
    assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ACTIVE,
        principal=second,
        target=Target.role(GLOBAL_ADMINISTRATOR.id),
        duration=HOUR * 24,
        justification="a second one",
    )
    ended = assignments.remove_assignment(rt, actor=OPERATOR, assignment_id=first.id).value
    assert ended.ended_at is not None
