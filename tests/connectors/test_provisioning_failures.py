"""Provisioning when the downstream system is down: retries with backoff, convergence once it
is back with nothing lost, ``failed`` with the error (and an alert) after the last attempt."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from pimlico.clock import FixedClock
from pimlico.db.tables import AuditEventRow, JobRow, ProvisioningRow
from pimlico.domain.model import AssignmentKind, PrincipalRef, Target
from pimlico.jobs.provisioning import Dispatcher
from pimlico.services import assignments, connector_mappings, connectors, provisioning
from pimlico.services.provisioning_work import ALERT_JOB
from pimlico.services.runtime import Pimlico
from tests.connectors.provisioning_world import (
    Downstream,
    Relay,
    clock,
    dispatcher,
    downstream,
    postgres_connector,
    relay,
    rt,
    settings,
    settle,
)
from tests.integration.test_requests import READER
from tests.integration.world import OPERATOR, user

__all__ = ["clock", "dispatcher", "downstream", "relay", "rt", "settings"]

HOUR = timedelta(hours=1)


def active(rt: Pimlico, who: PrincipalRef, target: Target = READER) -> str:
    return assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ACTIVE,
        principal=who,
        target=target,
        duration=HOUR,
        justification="provisioning test",
    ).value.id


def rows(rt: Pimlico) -> list[ProvisioningRow]:
    with rt.reading() as s:
        return list(s.scalars(select(ProvisioningRow).order_by(ProvisioningRow.principal_id)))


def through_relay(rt: Pimlico, downstream: Downstream, relay: Relay) -> str:
    obj = downstream.role("reader")
    postgres_connector(rt, downstream.dsn(relay.port))
    connector_mappings.add_mapping(
        rt, actor=OPERATOR, connector="db", target=READER, downstream_object=obj
    )
    return obj


def test_an_outage_is_retried_with_backoff_and_converges_once_the_server_is_back(
    rt: Pimlico, clock: FixedClock, dispatcher: Dispatcher, downstream: Downstream, relay: Relay
) -> None:
    obj = through_relay(rt, downstream, relay)
    alex = user(rt, downstream.role("alex", login=True))
    sam = user(rt, downstream.role("sam", login=True))
    leaving = active(rt, sam)
    settle(rt, clock, dispatcher)
    assert downstream.members(obj) == {f"{downstream.prefix}-sam"}

    relay.stop()
    active(rt, alex)
    clock.advance(timedelta(minutes=10))
    assignments.remove_assignment(rt, actor=OPERATOR, assignment_id=leaving, reason="left")
    settle(rt, clock, dispatcher)

    failing = rows(rt)
    assert {r.status for r in failing} == {provisioning.PENDING}
    assert all(r.attempts == 1 and "PostgreSQL" in (r.last_error or "") for r in failing)
    first_retry = [r.due_at - clock.now() for r in failing]
    assert all(timedelta(seconds=1) <= d <= timedelta(seconds=1.1) for d in first_retry)

    clock.advance(timedelta(seconds=1.1))
    settle(rt, clock, dispatcher)
    second_retry = [r.due_at - clock.now() for r in rows(rt)]
    assert all(timedelta(seconds=2) <= d <= timedelta(seconds=2.2) for d in second_retry)
    assert {r.attempts for r in rows(rt)} == {2}

    relay.start()
    clock.advance(timedelta(seconds=2.2))
    settle(rt, clock, dispatcher)

    assert downstream.members(obj) == {f"{downstream.prefix}-alex"}
    assert {(r.present, r.status) for r in rows(rt)} == {
        (True, provisioning.PROVISIONED),
        (False, provisioning.REVOKED),
    }


def test_after_the_last_attempt_the_state_is_failed_with_the_error_audited_and_alerted(
    rt: Pimlico, clock: FixedClock, dispatcher: Dispatcher, downstream: Downstream, relay: Relay
) -> None:
    through_relay(rt, downstream, relay)
    alex = user(rt, downstream.role("alex", login=True))
    relay.stop()
    assignment = active(rt, alex)

    for _ in range(rt.settings.provisioning_max_attempts):
        settle(rt, clock, dispatcher)
        clock.advance(timedelta(seconds=30))
    settle(rt, clock, dispatcher)

    [state] = provisioning.states_of_assignment(rt, actor=OPERATOR, assignment_id=assignment)
    assert state.status == provisioning.FAILED
    assert state.attempts == rt.settings.provisioning_max_attempts
    assert state.last_error is not None
    assert "PostgreSQL" in state.last_error
    with rt.reading() as s:
        failures = list(
            s.scalars(select(AuditEventRow).where(AuditEventRow.action == "provisioning.fail"))
        )
        alerts = list(s.scalars(select(JobRow).where(JobRow.kind == ALERT_JOB)))
    assert len(failures) == 1
    assert alex.id in str(failures[0].after)
    assert len(alerts) == 1
    assert alerts[0].payload["data"]["principal_id"] == alex.id


def test_a_refused_object_fails_at_once_without_retrying(
    rt: Pimlico, clock: FixedClock, dispatcher: Dispatcher, downstream: Downstream
) -> None:
    postgres_connector(rt, downstream.dsn())
    connector_mappings.add_mapping(
        rt,
        actor=OPERATOR,
        connector="db",
        target=READER,
        downstream_object=f"{downstream.prefix}-no-such-role",
    )
    alex = user(rt, downstream.role("alex", login=True))
    assignment = active(rt, alex)

    settle(rt, clock, dispatcher)

    [state] = provisioning.states_of_assignment(rt, actor=OPERATOR, assignment_id=assignment)
    assert (state.status, state.attempts) == (provisioning.FAILED, 1)
    assert "no role" in (state.last_error or "")


def test_a_disabled_connector_is_not_called_and_its_work_waits(
    rt: Pimlico, clock: FixedClock, dispatcher: Dispatcher, downstream: Downstream
) -> None:
    obj = downstream.role("reader")
    postgres_connector(rt, downstream.dsn())
    connector_mappings.add_mapping(
        rt, actor=OPERATOR, connector="db", target=READER, downstream_object=obj
    )
    connectors.disable_connector(rt, actor=OPERATOR, name="db", reason="maintenance")
    alex = user(rt, downstream.role("alex", login=True))
    active(rt, alex)
    settle(rt, clock, dispatcher)
    assert downstream.members(obj) == set()

    connectors.update_connector(rt, actor=OPERATOR, name="db", enabled=True)
    settle(rt, clock, dispatcher)

    assert downstream.members(obj) == {f"{downstream.prefix}-alex"}
