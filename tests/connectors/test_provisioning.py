"""Provisioning into a real PostgreSQL from the outbox: grants on activation, revocations at
the end instant and on early ends, effective membership (nested groups, several backing
assignments), on a Pimlico store on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from pimlico.clock import FixedClock
from pimlico.db.tables import AuditEventRow
from pimlico.domain.model import AssignmentKind, PrincipalRef, PrincipalType, Target
from pimlico.domain.requests import RequestAction
from pimlico.jobs.provisioning import Dispatcher
from pimlico.services import (
    assignments,
    connector_mappings,
    connectors,
    directory,
    provisioning,
    requests,
)
from pimlico.services.runtime import Actor, Pimlico
from tests.connectors.provisioning_world import (
    Downstream,
    clock,
    dispatcher,
    downstream,
    postgres_connector,
    rt,
    settings,
    settle,
)
from tests.integration.test_requests import (
    READER,
    activate,
    eligible,
    reader_without_justification,
    with_mfa,
)
from tests.integration.world import OPERATOR, group, user

__all__ = ["clock", "dispatcher", "downstream", "rt", "settings"]

HOUR = timedelta(hours=1)


def active(rt: Pimlico, who: PrincipalRef, target: Target, duration: timedelta = HOUR) -> str:
    return assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ACTIVE,
        principal=who,
        target=target,
        duration=duration,
        justification="provisioning test",
    ).value.id


def mapped_reader(rt: Pimlico, downstream: Downstream) -> str:
    """Security Reader at / drives a fresh PostgreSQL role; its name."""
    obj = downstream.role("reader")
    postgres_connector(rt, downstream.dsn())
    connector_mappings.add_mapping(
        rt, actor=OPERATOR, connector="db", target=READER, downstream_object=obj
    )
    return obj


def test_an_activation_is_granted_downstream_and_shows_provisioned(
    rt: Pimlico, clock: FixedClock, dispatcher: Dispatcher, downstream: Downstream
) -> None:
    obj = mapped_reader(rt, downstream)
    alex = user(rt, downstream.role("alex", login=True))
    assignment = active(rt, alex, READER)

    settle(rt, clock, dispatcher)

    assert downstream.members(obj) == {f"{downstream.prefix}-alex"}
    states = provisioning.states_of_assignment(rt, actor=OPERATOR, assignment_id=assignment)
    assert [(s.connector, s.status, s.identity) for s in states] == [
        ("db", provisioning.PROVISIONED, f"{downstream.prefix}-alex")
    ]


def test_access_is_revoked_downstream_once_its_end_instant_comes(
    rt: Pimlico, clock: FixedClock, dispatcher: Dispatcher, downstream: Downstream
) -> None:
    obj = mapped_reader(rt, downstream)
    alex = user(rt, downstream.role("alex", login=True))
    assignment = active(rt, alex, READER)
    settle(rt, clock, dispatcher)

    clock.advance(HOUR - timedelta(microseconds=1))
    settle(rt, clock, dispatcher)
    assert downstream.members(obj) == {f"{downstream.prefix}-alex"}
    clock.advance(timedelta(microseconds=1))
    settle(rt, clock, dispatcher)

    assert downstream.members(obj) == set()
    states = provisioning.states_of_assignment(rt, actor=OPERATOR, assignment_id=assignment)
    assert [s.status for s in states] == [provisioning.REVOKED]


def test_a_revocation_takes_away_the_identity_that_was_granted_whatever_a_lookup_says_now(
    rt: Pimlico, clock: FixedClock, dispatcher: Dispatcher, downstream: Downstream
) -> None:
    obj = mapped_reader(rt, downstream)
    alex = user(rt, downstream.role("alex", login=True))
    active(rt, alex, READER)
    settle(rt, clock, dispatcher)
    assert downstream.members(obj) == {f"{downstream.prefix}-alex"}
    # The administrator points the connector at other login roles: a lookup of Alex's
    # identity would now find none, but what was granted must still be taken away.
    connectors.update_connector(
        rt,
        actor=OPERATOR,
        name="db",
        config={"dsn": downstream.dsn(), "identity_template": "{user_name}-elsewhere"},
    )
    clock.advance(HOUR)
    settle(rt, clock, dispatcher)

    assert downstream.members(obj) == set()


def test_an_early_deactivation_is_revoked_downstream(
    rt: Pimlico, clock: FixedClock, dispatcher: Dispatcher, downstream: Downstream
) -> None:
    obj = mapped_reader(rt, downstream)
    name = downstream.role("alex", login=True)
    alex = Actor.principal(user(rt, name).id)
    me = PrincipalRef(PrincipalType.USER, alex.name)
    eligible(rt, me, READER)
    reader_without_justification(rt)
    with_mfa(rt, clock, alex)
    activate(rt, alex, READER)
    settle(rt, clock, dispatcher)
    assert downstream.members(obj) == {name}

    clock.advance(timedelta(minutes=10))
    requests.submit(
        rt,
        actor=alex,
        action=RequestAction.SELF_DEACTIVATE,
        kind=AssignmentKind.ACTIVE,
        target=READER,
    )
    settle(rt, clock, dispatcher)

    assert downstream.members(obj) == set()


def test_a_removed_assignment_is_revoked_downstream(
    rt: Pimlico, clock: FixedClock, dispatcher: Dispatcher, downstream: Downstream
) -> None:
    obj = mapped_reader(rt, downstream)
    alex = user(rt, downstream.role("alex", login=True))
    assignment = active(rt, alex, READER)
    settle(rt, clock, dispatcher)

    clock.advance(timedelta(minutes=10))
    assignments.remove_assignment(rt, actor=OPERATOR, assignment_id=assignment, reason="done")
    settle(rt, clock, dispatcher)

    assert downstream.members(obj) == set()


def test_ending_one_of_two_assignments_that_back_the_access_keeps_it_granted(
    rt: Pimlico, clock: FixedClock, dispatcher: Dispatcher, downstream: Downstream
) -> None:
    obj = mapped_reader(rt, downstream)
    alex = user(rt, downstream.role("alex", login=True))
    readers = group(rt, "readers", role_assignable=True)
    directory.add_member(rt, actor=OPERATOR, group_id=readers.id, member=alex)
    active(rt, readers, READER, duration=4 * HOUR)
    direct = active(rt, alex, READER, duration=HOUR)
    settle(rt, clock, dispatcher)
    assert downstream.members(obj) == {f"{downstream.prefix}-alex"}

    clock.advance(HOUR)  # the direct assignment ends; the group's still backs the access
    settle(rt, clock, dispatcher)

    assert downstream.members(obj) == {f"{downstream.prefix}-alex"}
    states = provisioning.states_of_assignment(rt, actor=OPERATOR, assignment_id=direct)
    assert [s.status for s in states] == [provisioning.PROVISIONED]

    clock.advance(3 * HOUR)  # and now the group's ends too
    settle(rt, clock, dispatcher)
    assert downstream.members(obj) == set()


def test_a_nested_group_s_activation_grants_its_users_the_outer_group_s_object(
    rt: Pimlico, clock: FixedClock, dispatcher: Dispatcher, downstream: Downstream
) -> None:
    obj = downstream.role("purge")
    postgres_connector(rt, downstream.dsn())
    outer = group(rt, "search-and-purge")
    inner = group(rt, "search-and-purge-pim")
    connector_mappings.add_mapping(
        rt,
        actor=OPERATOR,
        connector="db",
        target=Target.group_member(outer.id),
        downstream_object=obj,
    )
    names = [downstream.role(n, login=True) for n in ("alex", "sam")]
    for name in names:
        directory.add_member(rt, actor=OPERATOR, group_id=inner.id, member=user(rt, name))
    settle(rt, clock, dispatcher)
    assert downstream.members(obj) == set()

    active(rt, inner, Target.group_member(outer.id))
    settle(rt, clock, dispatcher)

    assert downstream.members(obj) == set(names)
    clock.advance(HOUR)
    settle(rt, clock, dispatcher)
    assert downstream.members(obj) == set()


def test_a_new_mapping_provisions_who_already_holds_its_target(
    rt: Pimlico, clock: FixedClock, dispatcher: Dispatcher, downstream: Downstream
) -> None:
    alex = user(rt, downstream.role("alex", login=True))
    active(rt, alex, READER)
    settle(rt, clock, dispatcher)

    obj = mapped_reader(rt, downstream)
    settle(rt, clock, dispatcher)

    assert downstream.members(obj) == {f"{downstream.prefix}-alex"}


def test_grants_and_revocations_are_audited_and_the_connector_s_secret_never_is(
    rt: Pimlico, clock: FixedClock, dispatcher: Dispatcher, downstream: Downstream
) -> None:
    mapped_reader(rt, downstream)
    alex = user(rt, downstream.role("alex", login=True))
    active(rt, alex, READER)
    settle(rt, clock, dispatcher)

    with rt.reading() as s:
        events = list(s.scalars(select(AuditEventRow)))
    grants = [e for e in events if e.action == "provisioning.grant"]
    assert len(grants) == 1
    assert alex.id in str(grants[0].after)
    assert not any("not-needed-with-trust" in f"{e.before}{e.after}" for e in events)


def test_a_static_membership_of_a_mapped_group_is_provisioned_and_its_end_revoked(
    rt: Pimlico, clock: FixedClock, dispatcher: Dispatcher, downstream: Downstream
) -> None:
    obj = downstream.role("purge")
    postgres_connector(rt, downstream.dsn())
    outer = group(rt, "search-and-purge")
    inner = group(rt, "search-and-purge-pim")
    directory.add_member(rt, actor=OPERATOR, group_id=outer.id, member=inner)
    connector_mappings.add_mapping(
        rt,
        actor=OPERATOR,
        connector="db",
        target=Target.group_member(outer.id),
        downstream_object=obj,
    )
    name = downstream.role("alex", login=True)
    alex = user(rt, name)

    directory.add_member(rt, actor=OPERATOR, group_id=inner.id, member=alex)
    settle(rt, clock, dispatcher)
    assert downstream.members(obj) == {name}

    directory.remove_member(rt, actor=OPERATOR, group_id=outer.id, member=inner)
    settle(rt, clock, dispatcher)
    assert downstream.members(obj) == set()


def test_a_disabled_user_is_revoked_downstream(
    rt: Pimlico, clock: FixedClock, dispatcher: Dispatcher, downstream: Downstream
) -> None:
    obj = mapped_reader(rt, downstream)
    alex = user(rt, downstream.role("alex", login=True))
    active(rt, alex, READER)
    settle(rt, clock, dispatcher)

    directory.set_user_enabled(rt, actor=OPERATOR, user_id=alex.id, enabled=False)
    settle(rt, clock, dispatcher)

    assert downstream.members(obj) == set()


def test_at_the_end_instant_the_dispatcher_revokes_before_the_end_s_event_is_delivered(
    rt: Pimlico, clock: FixedClock, dispatcher: Dispatcher, downstream: Downstream
) -> None:
    obj = mapped_reader(rt, downstream)
    alex = user(rt, downstream.role("alex", login=True))
    active(rt, alex, READER)
    settle(rt, clock, dispatcher)

    clock.advance(HOUR)
    dispatcher.run_once(clock.now())  # the worker has not run: no AssignmentEnded delivered

    assert downstream.members(obj) == set()
    settle(rt, clock, dispatcher)  # and the event, delivered later, changes nothing more
    assert downstream.members(obj) == set()


def test_a_holding_backed_past_its_first_end_is_re_dated_not_revoked(
    rt: Pimlico, clock: FixedClock, dispatcher: Dispatcher, downstream: Downstream
) -> None:
    obj = mapped_reader(rt, downstream)
    alex = user(rt, downstream.role("alex", login=True))
    readers = group(rt, "readers", role_assignable=True)
    directory.add_member(rt, actor=OPERATOR, group_id=readers.id, member=alex)
    active(rt, alex, READER, duration=HOUR)
    active(rt, readers, READER, duration=3 * HOUR)
    settle(rt, clock, dispatcher)

    clock.advance(HOUR)
    dispatcher.run_once(clock.now())

    assert downstream.members(obj) == {f"{downstream.prefix}-alex"}
    clock.advance(2 * HOUR)
    dispatcher.run_once(clock.now())
    assert downstream.members(obj) == set()
