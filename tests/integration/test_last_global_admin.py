"""The last Global Administrator, and the last permanent (break-glass) one, cannot be lost:
not by removal, shortening, disabling, or ending the membership that carried it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pimlico.clock import FixedClock
from pimlico.domain.catalogue import GLOBAL_ADMINISTRATOR
from pimlico.domain.model import AssignmentKind, PrincipalRef, Target, TargetType
from pimlico.errors import LastGlobalAdministrator
from pimlico.services import assignments, directory, role_settings
from pimlico.services.runtime import Pimlico
from tests.integration.world import OPERATOR, group, user

GA = Target.role(GLOBAL_ADMINISTRATOR.id)
HOUR = timedelta(hours=1)


def make_global_admin(rt: Pimlico, who: PrincipalRef, *, duration: timedelta | None = None) -> str:
    role_settings.update_policy(
        rt,
        actor=OPERATOR,
        target_type=TargetType.ROLE,
        object_id=GLOBAL_ADMINISTRATOR.id,
        changes={"assignment": {"allow_permanent_active": True}},
    )
    return assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ACTIVE,
        principal=who,
        target=GA,
        duration=duration,
        justification="break glass",
    ).value.id


def test_a_group_with_nobody_in_it_does_not_count_as_a_global_administrator(rt: Pimlico) -> None:
    root = user(rt, "root")
    mine = make_global_admin(rt, root)
    make_global_admin(rt, group(rt, "empty admins", role_assignable=True))
    with pytest.raises(LastGlobalAdministrator):
        assignments.remove_assignment(rt, actor=OPERATOR, assignment_id=mine)


def test_leaving_the_group_that_carries_the_last_global_administrator_is_refused(
    rt: Pimlico,
) -> None:
    root = user(rt, "root")
    admins = group(rt, "admins", role_assignable=True)
    directory.add_member(rt, actor=OPERATOR, group_id=admins.id, member=root)
    make_global_admin(rt, admins)
    with pytest.raises(LastGlobalAdministrator):
        directory.remove_member(rt, actor=OPERATOR, group_id=admins.id, member=root)
    with pytest.raises(LastGlobalAdministrator):
        directory.set_user_enabled(rt, actor=OPERATOR, user_id=root.id, enabled=False)


def test_shortening_the_last_permanent_global_administrator_is_refused(
    rt: Pimlico, clock: FixedClock
) -> None:
    root = user(rt, "root")
    mine = make_global_admin(rt, root)
    with pytest.raises(LastGlobalAdministrator):
        assignments.update_assignment(
            rt,
            actor=OPERATOR,
            assignment_id=mine,
            end=clock.now() + timedelta(minutes=6),
            justification="oops",
        )


def test_a_time_bound_holder_does_not_replace_the_break_glass_account(rt: Pimlico) -> None:
    root, temp = user(rt, "root"), user(rt, "temp")
    mine = make_global_admin(rt, root)
    make_global_admin(rt, temp, duration=HOUR)
    with pytest.raises(LastGlobalAdministrator, match="permanent"):
        assignments.remove_assignment(rt, actor=OPERATOR, assignment_id=mine)
    other = user(rt, "second-root")
    make_global_admin(rt, other)
    assignments.remove_assignment(rt, actor=OPERATOR, assignment_id=mine)


def test_a_refused_change_leaves_everything_as_it_was(rt: Pimlico) -> None:
    root = user(rt, "root")
    mine = make_global_admin(rt, root)
    with pytest.raises(LastGlobalAdministrator):
        assignments.remove_assignment(rt, actor=OPERATOR, assignment_id=mine, reason="test")
    current = assignments.list_assignments(rt, actor=OPERATOR, principal=root)
    assert [(a.id, a.ended_at) for a in current] == [(mine, None)]
