"""Paths to privilege that must stay closed: plain groups inside role-assignable ones,
standing access for service accounts, rewritten history and sloppy instants."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from pimlico.clock import FixedClock
from pimlico.domain.catalogue import PRIVILEGED_ROLE_ADMINISTRATOR, USER_ADMINISTRATOR
from pimlico.domain.model import AssignmentKind, PrincipalRef, PrincipalType, Target
from pimlico.errors import InvalidInput, PermissionDenied, PolicyViolation
from pimlico.services import assignments, decisions, directory
from pimlico.services.runtime import Actor, Pimlico
from tests.integration.world import OPERATOR, group, role, user

DAY = timedelta(days=1)
ACTIVE, ELIGIBLE = AssignmentKind.ACTIVE, AssignmentKind.ELIGIBLE


def test_a_plain_group_cannot_be_nested_into_a_role_assignable_group(rt: Pimlico) -> None:
    privileged = group(rt, "PRA holders", role_assignable=True)
    helpdesk = group(rt, "helpdesk")
    with pytest.raises(InvalidInput) as caught:
        directory.add_member(rt, actor=OPERATOR, group_id=privileged.id, member=helpdesk)
    assert caught.value.errors[0].rule == "RoleAssignableGroupRequired"
    with pytest.raises(InvalidInput):
        assignments.assign(
            rt,
            actor=OPERATOR,
            kind=ELIGIBLE,
            principal=helpdesk,
            target=Target.group_member(privileged.id),
            duration=DAY,
        )
    directory.add_member(
        rt, actor=OPERATOR, group_id=privileged.id, member=group(rt, "ops", role_assignable=True)
    )


def test_a_service_account_gets_no_standing_place_in_a_role_assignable_group(
    rt: Pimlico,
) -> None:
    bot = directory.create_service_account(rt, actor=OPERATOR, name="bot").value
    ref = PrincipalRef(PrincipalType.SERVICE_ACCOUNT, bot.id)
    privileged = group(rt, "privileged", role_assignable=True)
    with pytest.raises(InvalidInput):
        directory.add_member(rt, actor=OPERATOR, group_id=privileged.id, member=ref)
    made = assignments.assign(
        rt,
        actor=OPERATOR,
        kind=ACTIVE,
        principal=ref,
        target=Target.group_member(privileged.id),
        duration=DAY,
        justification="deploy",
    ).value
    with pytest.raises(PolicyViolation):
        assignments.update_assignment(rt, actor=OPERATOR, assignment_id=made.id, permanent=True)


def test_a_group_cannot_be_assigned_ownership_of_a_group(rt: Pimlico) -> None:
    g, h = group(rt, "g"), group(rt, "h")
    with pytest.raises(InvalidInput):
        assignments.assign(
            rt,
            actor=OPERATOR,
            kind=ELIGIBLE,
            principal=h,
            target=Target.group_owner(g.id),
            duration=DAY,
        )


def test_history_is_not_rewritten_by_a_start_in_the_past(rt: Pimlico, clock: FixedClock) -> None:
    u = user(rt, "u")
    r = role(rt, "r", "x.y")
    made = assignments.assign(
        rt,
        actor=OPERATOR,
        kind=ACTIVE,
        principal=u,
        target=Target.role(r),
        start=clock.now() - 100 * DAY,
        duration=DAY,
        justification="j",
    ).value
    assert made.start == clock.now()
    with pytest.raises(PolicyViolation):
        assignments.update_assignment(
            rt,
            actor=OPERATOR,
            assignment_id=made.id,
            start=clock.now() - DAY,
            justification="j",
        )
    earlier = decisions.check(
        rt,
        actor=OPERATOR,
        principal_id=u.id,
        permission="x.y",
        scope="/",
        at=clock.now() - DAY,
    )
    assert not earlier.allowed


def test_an_instant_without_a_time_zone_is_refused_with_its_field(rt: Pimlico) -> None:
    u = user(rt, "u")
    r = role(rt, "r", "x.y")
    with pytest.raises(InvalidInput) as caught:
        assignments.assign(
            rt,
            actor=OPERATOR,
            kind=ELIGIBLE,
            principal=u,
            target=Target.role(r),
            end=datetime(2026, 3, 2),  # noqa: DTZ001 (the point of the test)
        )
    assert [(e.field, e.rule) for e in caught.value.errors] == [("end", "Timezone")]


def test_extending_an_active_assignment_still_needs_its_justification(rt: Pimlico) -> None:
    u = user(rt, "u")
    r = role(rt, "r", "x.y")
    made = assignments.assign(
        rt,
        actor=OPERATOR,
        kind=ACTIVE,
        principal=u,
        target=Target.role(r),
        duration=DAY,
        justification="j",
    ).value
    pra = user(rt, "pra")
    assignments.assign(
        rt,
        actor=OPERATOR,
        kind=ACTIVE,
        principal=pra,
        target=Target.role(PRIVILEGED_ROLE_ADMINISTRATOR.id),
        duration=DAY,
        justification="j",
    )
    with pytest.raises(PolicyViolation, match="JustificationRule"):
        assignments.extend_assignment(
            rt, actor=Actor.principal(pra.id), assignment_id=made.id, duration=2 * DAY
        )


def test_a_user_administrator_cannot_disable_an_administrator(rt: Pimlico) -> None:
    ua, admin = user(rt, "ua"), user(rt, "admin")
    for who, r in ((ua, USER_ADMINISTRATOR.id), (admin, PRIVILEGED_ROLE_ADMINISTRATOR.id)):
        assignments.assign(
            rt,
            actor=OPERATOR,
            kind=ELIGIBLE if who is admin else ACTIVE,
            principal=who,
            target=Target.role(r),
            duration=DAY,
            justification="j",
        )
    as_ua = Actor.principal(ua.id)
    with pytest.raises(PermissionDenied):
        directory.set_user_enabled(rt, actor=as_ua, user_id=admin.id, enabled=False)
    directory.set_user_enabled(rt, actor=as_ua, user_id=user(rt, "plain").id, enabled=False)
