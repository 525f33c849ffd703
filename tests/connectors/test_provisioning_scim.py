"""Provisioning end to end into a real SCIM 2.0 server (scim2-server on loopback): a SCIM
group follows Security Reader through the whole pipeline (outbox consumer, provisioning rows,
dispatcher, SCIM connector; reconcile), on a Pimlico store on SQLite and on PostgreSQL.

Grant on activation, revocation at the end instant and on an early deactivation, an outage
(the server stopped: connections refused) retried with backoff until it is back, and drift
made by hand through the server's own SCIM API corrected by reconcile. Every test asserts the
group's members as the server holds them (``ScimServer.members``), not only Pimlico's rows.
Users are matched by ``userName``; identities are SCIM user ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from pimlico.clock import FixedClock
from pimlico.jobs.provisioning import Dispatcher
from pimlico.jobs.reconcile import reconcile
from pimlico.services import assignments, connector_mappings, connectors, provisioning
from pimlico.services.runtime import Pimlico
from tests.connectors.downstreams import (
    HOUR,
    active,
    reconcile_audit,
    rows,
    self_activated,
    self_deactivate,
)
from tests.connectors.provisioning_world import clock, dispatcher, rt, settings, settle
from tests.connectors.scim_server import ScimServer
from tests.integration.test_requests import READER
from tests.integration.world import OPERATOR, user

__all__ = ["clock", "dispatcher", "rt", "settings"]


@pytest.fixture
def scim() -> Iterator[ScimServer]:
    with ScimServer() as server:
        yield server


def mapped_group(rt: Pimlico, scim: ScimServer) -> str:
    """An empty SCIM group driven by Security Reader at / through a SCIM connector that
    matches users by ``userName``; the group's id."""
    group = scim.create_group("Security Reader")
    connectors.add_connector(
        rt,
        actor=OPERATOR,
        name="idp",
        kind="scim",
        config=scim.config(match="user_name", timeout_seconds=2.0),
        secret=scim.token,
    )
    connector_mappings.add_mapping(
        rt, actor=OPERATOR, connector="idp", target=READER, downstream_object=group
    )
    return group


def test_a_self_activation_is_granted_in_the_scim_group_and_shows_provisioned(
    rt: Pimlico, clock: FixedClock, dispatcher: Dispatcher, scim: ScimServer
) -> None:
    group = mapped_group(rt, scim)
    alex = scim.create_user("alex", email="alex@example.org")
    _, assignment = self_activated(rt, clock, "alex")
    assert scim.members(group) == frozenset()

    settle(rt, clock, dispatcher)

    assert scim.members(group) == {alex}
    states = provisioning.states_of_assignment(rt, actor=OPERATOR, assignment_id=assignment)
    assert [(s.connector, s.status, s.identity) for s in states] == [
        ("idp", provisioning.PROVISIONED, alex)
    ]


def test_the_scim_membership_is_revoked_once_the_end_instant_comes(
    rt: Pimlico, clock: FixedClock, dispatcher: Dispatcher, scim: ScimServer
) -> None:
    group = mapped_group(rt, scim)
    alex = scim.create_user("alex")
    assignment = active(rt, user(rt, "alex"))
    settle(rt, clock, dispatcher)
    assert scim.members(group) == {alex}

    clock.advance(HOUR - timedelta(microseconds=1))
    settle(rt, clock, dispatcher)
    assert scim.members(group) == {alex}
    clock.advance(timedelta(microseconds=1))
    settle(rt, clock, dispatcher)

    assert scim.members(group) == frozenset()
    states = provisioning.states_of_assignment(rt, actor=OPERATOR, assignment_id=assignment)
    assert [s.status for s in states] == [provisioning.REVOKED]


def test_an_early_deactivation_is_revoked_in_the_scim_group(
    rt: Pimlico, clock: FixedClock, dispatcher: Dispatcher, scim: ScimServer
) -> None:
    group = mapped_group(rt, scim)
    alex = scim.create_user("alex")
    sam = scim.create_user("sam")
    active(rt, user(rt, "sam"), duration=4 * HOUR)
    me, assignment = self_activated(rt, clock, "alex")
    settle(rt, clock, dispatcher)
    assert scim.members(group) == {alex, sam}

    clock.advance(timedelta(minutes=10))
    self_deactivate(rt, me)
    settle(rt, clock, dispatcher)

    assert scim.members(group) == {sam}
    states = provisioning.states_of_assignment(rt, actor=OPERATOR, assignment_id=assignment)
    assert [s.status for s in states] == [provisioning.REVOKED]


def test_a_scim_outage_is_retried_with_backoff_and_converges_once_the_server_is_back(
    rt: Pimlico, clock: FixedClock, dispatcher: Dispatcher, scim: ScimServer
) -> None:
    group = mapped_group(rt, scim)
    alex = scim.create_user("alex")
    sam = scim.create_user("sam")
    leaving = active(rt, user(rt, "sam"))
    settle(rt, clock, dispatcher)
    assert scim.members(group) == {sam}

    scim.stop()
    active(rt, user(rt, "alex"))
    clock.advance(timedelta(minutes=10))
    assignments.remove_assignment(rt, actor=OPERATOR, assignment_id=leaving, reason="left")
    settle(rt, clock, dispatcher)

    failing = rows(rt)
    assert len(failing) == 2
    assert all(r.status == provisioning.PENDING and r.attempts == 1 for r in failing)
    assert all("ConnectError" in (r.last_error or "") for r in failing)
    first_retry = [r.due_at - clock.now() for r in failing]
    assert all(timedelta(seconds=1) <= d <= timedelta(seconds=1.1) for d in first_retry)

    clock.advance(timedelta(seconds=1.1))
    settle(rt, clock, dispatcher)
    again = rows(rt)
    assert {(r.status, r.attempts) for r in again} == {(provisioning.PENDING, 2)}
    second_retry = [r.due_at - clock.now() for r in again]
    assert all(timedelta(seconds=2) <= d <= timedelta(seconds=2.2) for d in second_retry)

    scim.start()
    assert scim.members(group) == {sam}  # nothing changed while it was down
    clock.advance(timedelta(seconds=2.2))
    settle(rt, clock, dispatcher)

    assert scim.members(group) == {alex}
    assert {(r.identity, r.present, r.status) for r in rows(rt)} == {
        (alex, True, provisioning.PROVISIONED),
        (sam, False, provisioning.REVOKED),
    }


def test_scim_members_added_and_removed_by_hand_are_corrected_by_reconcile_and_audited(
    rt: Pimlico, clock: FixedClock, dispatcher: Dispatcher, scim: ScimServer
) -> None:
    group = mapped_group(rt, scim)
    alex = scim.create_user("alex")
    mallory = scim.create_user("mallory")
    active(rt, user(rt, "alex"))
    user(rt, "mallory")  # known to Pimlico, holding nothing
    settle(rt, clock, dispatcher)
    assert scim.members(group) == {alex}

    scim.remove_member_by_hand(group, alex)
    scim.add_member_by_hand(group, mallory)
    assert scim.members(group) == {mallory}

    found = reconcile(rt, actor=OPERATOR)

    assert scim.members(group) == {alex}
    assert {(c.action, c.identity, c.applied) for c in found} == {
        ("grant", alex, True),
        ("revoke", mallory, True),
    }
    assert reconcile_audit(rt) == [("reconcile.grant", alex), ("reconcile.revoke", mallory)]
    assert reconcile(rt, actor=OPERATOR) == []  # nothing is left to correct
    assert scim.members(group) == {alex}
