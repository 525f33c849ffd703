"""Pimlico guards itself with itself: admin powers last exactly as long as their activation."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pimlico.clock import FixedClock
from pimlico.domain.catalogue import GROUPS_ADMINISTRATOR, PRIVILEGED_ROLE_ADMINISTRATOR
from pimlico.domain.model import AssignmentKind, Target
from pimlico.errors import PermissionDenied
from pimlico.services import assignments, decisions, directory, roles
from pimlico.services.runtime import Actor, Pimlico
from pimlico.settings import Settings
from tests.factories import HOUR
from tests.integration.world import OPERATOR, user

DAY = timedelta(days=1)


def test_an_administrator_can_act_only_while_their_role_is_active(
    rt: Pimlico, clock: FixedClock
) -> None:
    priya = user(rt, "priya")
    as_priya = Actor.principal(priya.id)
    with pytest.raises(PermissionDenied):
        roles.create_role(rt, actor=as_priya, name="r1", permissions=["x.y"])
    assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ACTIVE,
        principal=priya,
        target=Target.role(PRIVILEGED_ROLE_ADMINISTRATOR.id),
        duration=2 * HOUR,
        justification="change window",
    )
    roles.create_role(rt, actor=as_priya, name="r1", permissions=["x.y"])
    clock.advance(2 * HOUR)
    with pytest.raises(PermissionDenied):
        roles.create_role(rt, actor=as_priya, name="r2", permissions=["x.y"])


def test_a_groups_administrator_cannot_create_a_role_assignable_group(rt: Pimlico) -> None:
    gail = user(rt, "gail")
    assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ACTIVE,
        principal=gail,
        target=Target.role(GROUPS_ADMINISTRATOR.id),
        duration=DAY,
        justification="j",
    )
    as_gail = Actor.principal(gail.id)
    directory.create_group(rt, actor=as_gail, name="plain")
    with pytest.raises(PermissionDenied):
        directory.create_group(rt, actor=as_gail, name="privileged", role_assignable=True)


def test_an_anonymous_actor_is_refused_everything(rt: Pimlico) -> None:
    nobody = Actor(name="anonymous")
    with pytest.raises(PermissionDenied):
        directory.list_users(rt, actor=nobody)


def test_anyone_may_ask_about_themselves_but_not_about_others(rt: Pimlico) -> None:
    alex, bob = user(rt, "alex"), user(rt, "bob")
    as_alex = Actor.principal(alex.id)
    decisions.check(rt, actor=as_alex, principal_id=alex.id, permission="x.y", scope="/")
    decisions.effective_access(rt, actor=as_alex, principal_id=alex.id)
    with pytest.raises(PermissionDenied):
        decisions.check(rt, actor=as_alex, principal_id=bob.id, permission="x.y", scope="/")
    with pytest.raises(PermissionDenied):
        decisions.effective_access(rt, actor=as_alex, principal_id=bob.id)


def test_a_revocation_made_by_another_process_is_honoured_at_once(
    rt: Pimlico, settings: Settings, clock: FixedClock
) -> None:
    priya = user(rt, "priya")
    granted = assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ACTIVE,
        principal=priya,
        target=Target.role(PRIVILEGED_ROLE_ADMINISTRATOR.id),
        duration=2 * HOUR,
        justification="change window",
    ).value
    as_priya = Actor.principal(priya.id)
    roles.create_role(rt, actor=as_priya, name="r1", permissions=["x.y"])
    with Pimlico(settings, clock=clock) as other_process:
        assignments.remove_assignment(rt=other_process, actor=OPERATOR, assignment_id=granted.id)
    with pytest.raises(PermissionDenied):
        roles.create_role(rt, actor=as_priya, name="r2", permissions=["x.y"])
