"""Assignment use cases on SQLite and PostgreSQL: rules, windows, ends, extend and renew."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from pimlico.clock import FixedClock
from pimlico.domain.model import AssignmentKind, PrincipalRef, PrincipalType, Target, TargetType
from pimlico.errors import (
    InvalidInput,
    PolicyViolation,
    RoleAssignmentDoesNotExist,
    RoleAssignmentExists,
)
from pimlico.services import assignments, decisions, directory, role_settings
from pimlico.services.runtime import Pimlico
from tests.factories import HOUR
from tests.integration.world import OPERATOR, audit_count, group, role, user

DAY = timedelta(days=1)
ACTIVE, ELIGIBLE = AssignmentKind.ACTIVE, AssignmentKind.ELIGIBLE


def allowed(rt: Pimlico, who: PrincipalRef, permission: str, scope: str = "/") -> bool:
    return decisions.check(
        rt, actor=OPERATOR, principal_id=who.id, permission=permission, scope=scope
    ).allowed


def test_the_search_and_purge_story_through_the_services(rt: Pimlico, clock: FixedClock) -> None:
    alex = user(rt, "alex")
    sp = group(rt, "Search and Purge", role_assignable=True)
    sp_pim = group(rt, "Search and Purge PIM", role_assignable=True)
    purge = role(rt, "Mail Search and Purge", "mail.search", "mail.purge")
    directory.add_member(rt, actor=OPERATOR, group_id=sp.id, member=sp_pim)
    assignments.assign(
        rt,
        actor=OPERATOR,
        kind=ACTIVE,
        principal=sp,
        target=Target.role(purge, "/apps/mail"),
        duration=30 * DAY,
        justification="standing grant of the role group",
    )
    assignments.assign(
        rt,
        actor=OPERATOR,
        kind=ELIGIBLE,
        principal=alex,
        target=Target.group_member(sp_pim.id),
        duration=90 * DAY,
    )
    assert not allowed(rt, alex, "mail.purge", "/apps/mail")

    activation = assignments.assign(
        rt,
        actor=OPERATOR,
        kind=ACTIVE,
        principal=alex,
        target=Target.group_member(sp_pim.id),
        duration=2 * HOUR,
        justification="INC-1234 malicious mail",
    )
    decision = decisions.check(
        rt,
        actor=OPERATOR,
        principal_id=alex.id,
        permission="mail.purge",
        scope="/apps/mail/inbox",
        at_least_revision=activation.revision,
    )
    assert decision.allowed
    assert decision.grant is not None
    assert [s.group_id for s in decision.grant.chain] == [sp_pim.id, sp.id]

    clock.advance(2 * HOUR - timedelta(microseconds=1))
    assert allowed(rt, alex, "mail.purge", "/apps/mail")
    clock.advance(timedelta(microseconds=1))
    assert not allowed(rt, alex, "mail.purge", "/apps/mail")


def test_every_broken_rule_is_reported_at_once_and_nothing_is_written(rt: Pimlico) -> None:
    u = user(rt, "u")
    r = role(rt, "r", "x.y")
    before = audit_count(rt)
    with pytest.raises(PolicyViolation) as caught:
        assignments.assign(
            rt,
            actor=OPERATOR,
            kind=ACTIVE,
            principal=u,
            target=Target.role(r),
            justification=None,
        )
    # Permanent active is not allowed by default, and active assignments need a justification.
    assert caught.value.rules == ["ExpirationRule", "JustificationRule"]
    assert {e.field for e in caught.value.errors} == {"end", "justification"}
    assert audit_count(rt) == before


def test_the_maximum_and_the_minimum_duration_are_enforced(rt: Pimlico) -> None:
    u = user(rt, "u")
    r = role(rt, "r", "x.y")
    with pytest.raises(PolicyViolation, match="ExpirationRule"):
        assignments.assign(
            rt,
            actor=OPERATOR,
            kind=ELIGIBLE,
            principal=u,
            target=Target.role(r),
            duration=366 * DAY,
        )
    with pytest.raises(PolicyViolation, match="ExpirationRule"):
        assignments.assign(
            rt,
            actor=OPERATOR,
            kind=ELIGIBLE,
            principal=u,
            target=Target.role(r),
            duration=timedelta(minutes=4),
        )
    made = assignments.assign(
        rt, actor=OPERATOR, kind=ELIGIBLE, principal=u, target=Target.role(r), duration=365 * DAY
    )
    assert made.value.end == made.value.start + 365 * DAY


def test_permanent_assignments_are_allowed_only_when_the_settings_say_so(rt: Pimlico) -> None:
    u = user(rt, "u")
    r = role(rt, "r", "x.y")
    role_settings.update_policy(
        rt,
        actor=OPERATOR,
        target_type=TargetType.ROLE,
        object_id=r,
        changes={"assignment": {"allow_permanent_eligible": True}},
    )
    made = assignments.assign(rt, actor=OPERATOR, kind=ELIGIBLE, principal=u, target=Target.role(r))
    assert made.value.permanent


def test_a_duplicate_assignment_is_refused_as_role_assignment_exists(rt: Pimlico) -> None:
    u = user(rt, "u")
    r = role(rt, "r", "x.y")
    assignments.assign(
        rt, actor=OPERATOR, kind=ELIGIBLE, principal=u, target=Target.role(r, "/a"), duration=DAY
    )
    with pytest.raises(RoleAssignmentExists):
        assignments.assign(
            rt,
            actor=OPERATOR,
            kind=ELIGIBLE,
            principal=u,
            target=Target.role(r, "/a"),
            duration=2 * DAY,
        )
    # A different scope is a different target.
    assignments.assign(
        rt, actor=OPERATOR, kind=ELIGIBLE, principal=u, target=Target.role(r, "/b"), duration=DAY
    )


def test_a_service_account_cannot_be_eligible(rt: Pimlico) -> None:
    bot = directory.create_service_account(rt, actor=OPERATOR, name="ci-bot").value
    r = role(rt, "r", "deploy.run")
    ref = PrincipalRef(PrincipalType.SERVICE_ACCOUNT, bot.id)
    with pytest.raises(InvalidInput) as caught:
        assignments.assign(
            rt, actor=OPERATOR, kind=ELIGIBLE, principal=ref, target=Target.role(r), duration=DAY
        )
    assert caught.value.errors[0].rule == "ServiceAccountActiveOnly"
    assignments.assign(
        rt,
        actor=OPERATOR,
        kind=ACTIVE,
        principal=ref,
        target=Target.role(r),
        duration=DAY,
        justification="pipeline",
    )
    assert allowed(rt, ref, "deploy.run")


def test_only_role_assignable_groups_can_hold_roles(rt: Pimlico) -> None:
    g = group(rt, "plain")
    r = role(rt, "r", "x.y")
    with pytest.raises(InvalidInput) as caught:
        assignments.assign(
            rt,
            actor=OPERATOR,
            kind=ACTIVE,
            principal=g,
            target=Target.role(r),
            duration=DAY,
            justification="j",
        )
    assert caught.value.errors[0].rule == "RoleAssignableGroupRequired"


def test_removing_ends_access_at_once_and_keeps_the_row(rt: Pimlico, clock: FixedClock) -> None:
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
    assert allowed(rt, u, "x.y")
    clock.advance(HOUR)
    removed = assignments.remove_assignment(
        rt, actor=OPERATOR, assignment_id=made.id, reason="incident closed"
    ).value
    assert (removed.ended_at, removed.ended_by, removed.end_reason) == (
        clock.now(),
        OPERATOR.name,
        "incident closed",
    )
    assert not allowed(rt, u, "x.y")
    everything = assignments.list_assignments(rt, actor=OPERATOR, principal=u, include_ended=True)
    assert [a.id for a in everything] == [made.id]
    with pytest.raises(RoleAssignmentDoesNotExist):
        assignments.remove_assignment(rt, actor=OPERATOR, assignment_id=made.id)


def test_extend_moves_the_end_within_the_maximum_counted_from_now(
    rt: Pimlico, clock: FixedClock
) -> None:
    u = user(rt, "u")
    r = role(rt, "r", "x.y")
    made = assignments.assign(
        rt, actor=OPERATOR, kind=ELIGIBLE, principal=u, target=Target.role(r), duration=300 * DAY
    ).value
    clock.advance(290 * DAY)
    with pytest.raises(PolicyViolation):
        assignments.extend_assignment(rt, actor=OPERATOR, assignment_id=made.id, duration=400 * DAY)
    extended = assignments.extend_assignment(
        rt, actor=OPERATOR, assignment_id=made.id, duration=365 * DAY
    ).value
    assert extended.end == clock.now() + 365 * DAY


def test_renew_grants_an_expired_assignment_again_as_a_new_one(
    rt: Pimlico, clock: FixedClock
) -> None:
    u = user(rt, "u")
    r = role(rt, "r", "x.y")
    made = assignments.assign(
        rt, actor=OPERATOR, kind=ELIGIBLE, principal=u, target=Target.role(r), duration=DAY
    ).value
    with pytest.raises(InvalidInput):
        assignments.renew_assignment(rt, actor=OPERATOR, assignment_id=made.id, duration=DAY)
    clock.advance(2 * DAY)
    with pytest.raises(RoleAssignmentDoesNotExist):
        assignments.extend_assignment(rt, actor=OPERATOR, assignment_id=made.id, duration=DAY)
    renewed = assignments.renew_assignment(
        rt, actor=OPERATOR, assignment_id=made.id, duration=30 * DAY
    ).value
    assert renewed.id != made.id
    assert (renewed.start, renewed.end) == (clock.now(), clock.now() + 30 * DAY)


def test_update_changes_the_window_under_the_same_rules(rt: Pimlico, clock: FixedClock) -> None:
    u = user(rt, "u")
    r = role(rt, "r", "x.y")
    made = assignments.assign(
        rt, actor=OPERATOR, kind=ELIGIBLE, principal=u, target=Target.role(r), duration=DAY
    ).value
    updated = assignments.update_assignment(
        rt, actor=OPERATOR, assignment_id=made.id, start=clock.now() + HOUR, duration=10 * DAY
    ).value
    assert (updated.start, updated.end) == (clock.now() + HOUR, clock.now() + HOUR + 10 * DAY)
    with pytest.raises(PolicyViolation):
        assignments.update_assignment(rt, actor=OPERATOR, assignment_id=made.id, permanent=True)


def test_simultaneous_identical_assignments_make_exactly_one(rt: Pimlico) -> None:
    u = user(rt, "u")
    r = role(rt, "r", "x.y")
    outcomes: list[str] = []

    def attempt() -> None:
        try:
            assignments.assign(
                rt,
                actor=OPERATOR,
                kind=ACTIVE,
                principal=u,
                target=Target.role(r),
                duration=HOUR,
                justification="race",
            )
            outcomes.append("made")
        except RoleAssignmentExists:
            outcomes.append("exists")

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["exists"] * 7 + ["made"]
    assert len(assignments.list_assignments(rt, actor=OPERATOR, principal=u)) == 1
