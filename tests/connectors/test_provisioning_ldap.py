"""Provisioning end to end into a real OpenLDAP slapd: a ``groupOfNames`` group follows
Security Reader through the whole pipeline (outbox consumer, provisioning rows, dispatcher,
LDAP connector; reconcile), on a Pimlico store on SQLite and on PostgreSQL.

Grant on activation, revocation at the end instant and on an early deactivation, an outage
(slapd stopped) retried with backoff until it is back, and drift made by hand with the
OpenLDAP tools corrected by reconcile. Every test asserts what slapd itself holds, read with
``ldapsearch`` (``Slapd.members``), not only Pimlico's rows. The group is never empty: it keeps
the connector's ``empty_member_dn`` placeholder as a member, which Pimlico never reports or
removes.
"""

from __future__ import annotations

from datetime import timedelta

from pimlico.clock import FixedClock
from pimlico.connectors.ldap import canonical_dn
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
from tests.connectors.slapd import PEOPLE, SERVICE_DN, SERVICE_PASSWORD, SUFFIX, Slapd
from tests.integration.test_requests import READER
from tests.integration.world import OPERATOR, user

__all__ = ["clock", "dispatcher", "rt", "settings"]

PLACEHOLDER = canonical_dn(f"cn=nobody,{SUFFIX}")


def mapped_group(rt: Pimlico, slapd: Slapd) -> str:
    """A ``groupOfNames`` holding only the placeholder, driven by Security Reader at / through
    an LDAP connector that matches users by ``uid``; the group's DN."""
    slapd.add_entry(PLACEHOLDER, "objectClass: organizationalRole", "cn: nobody")
    group = canonical_dn(slapd.add_group("security-reader", members=[PLACEHOLDER]))
    connectors.add_connector(
        rt,
        actor=OPERATOR,
        name="directory",
        kind="ldap",
        config={
            "url": slapd.url,
            "bind_dn": SERVICE_DN,
            "user_base": PEOPLE,
            "user_attribute": "uid",
            "match": "user_name",
            "empty_member_dn": PLACEHOLDER,
            "timeout_seconds": 2,
        },
        secret=SERVICE_PASSWORD,
    )
    connector_mappings.add_mapping(
        rt, actor=OPERATOR, connector="directory", target=READER, downstream_object=group
    )
    return group


def account(slapd: Slapd, uid: str) -> str:
    """An ``inetOrgPerson`` with this ``uid`` in ``ou=people``; its DN as slapd stores it."""
    return canonical_dn(slapd.add_user(uid))


def test_a_self_activation_is_granted_in_the_ldap_group_and_shows_provisioned(
    rt: Pimlico, clock: FixedClock, dispatcher: Dispatcher, slapd: Slapd
) -> None:
    group = mapped_group(rt, slapd)
    alex = account(slapd, "alex")
    _, assignment = self_activated(rt, clock, "alex")
    assert slapd.members(group) == {PLACEHOLDER}

    settle(rt, clock, dispatcher)

    assert slapd.members(group) == {PLACEHOLDER, alex}
    states = provisioning.states_of_assignment(rt, actor=OPERATOR, assignment_id=assignment)
    assert [(s.connector, s.status, s.identity) for s in states] == [
        ("directory", provisioning.PROVISIONED, alex)
    ]


def test_the_ldap_membership_is_revoked_once_the_end_instant_comes(
    rt: Pimlico, clock: FixedClock, dispatcher: Dispatcher, slapd: Slapd
) -> None:
    group = mapped_group(rt, slapd)
    alex = account(slapd, "alex")
    assignment = active(rt, user(rt, "alex"))
    settle(rt, clock, dispatcher)
    assert slapd.members(group) == {PLACEHOLDER, alex}

    clock.advance(HOUR - timedelta(microseconds=1))
    settle(rt, clock, dispatcher)
    assert slapd.members(group) == {PLACEHOLDER, alex}
    clock.advance(timedelta(microseconds=1))
    settle(rt, clock, dispatcher)

    assert slapd.members(group) == {PLACEHOLDER}
    states = provisioning.states_of_assignment(rt, actor=OPERATOR, assignment_id=assignment)
    assert [s.status for s in states] == [provisioning.REVOKED]


def test_an_early_deactivation_is_revoked_in_the_ldap_group(
    rt: Pimlico, clock: FixedClock, dispatcher: Dispatcher, slapd: Slapd
) -> None:
    group = mapped_group(rt, slapd)
    alex = account(slapd, "alex")
    sam = account(slapd, "sam")
    active(rt, user(rt, "sam"), duration=4 * HOUR)
    me, assignment = self_activated(rt, clock, "alex")
    settle(rt, clock, dispatcher)
    assert slapd.members(group) == {PLACEHOLDER, alex, sam}

    clock.advance(timedelta(minutes=10))
    self_deactivate(rt, me)
    settle(rt, clock, dispatcher)

    assert slapd.members(group) == {PLACEHOLDER, sam}
    states = provisioning.states_of_assignment(rt, actor=OPERATOR, assignment_id=assignment)
    assert [s.status for s in states] == [provisioning.REVOKED]


def test_an_ldap_outage_is_retried_with_backoff_and_converges_once_slapd_is_back(
    rt: Pimlico, clock: FixedClock, dispatcher: Dispatcher, slapd: Slapd
) -> None:
    group = mapped_group(rt, slapd)
    alex = account(slapd, "alex")
    sam = account(slapd, "sam")
    leaving = active(rt, user(rt, "sam"))
    settle(rt, clock, dispatcher)
    assert slapd.members(group) == {PLACEHOLDER, sam}

    slapd.stop()
    active(rt, user(rt, "alex"))
    clock.advance(timedelta(minutes=10))
    assignments.remove_assignment(rt, actor=OPERATOR, assignment_id=leaving, reason="left")
    settle(rt, clock, dispatcher)

    failing = rows(rt)
    assert len(failing) == 2
    assert all(r.status == provisioning.PENDING and r.attempts == 1 for r in failing)
    assert all(slapd.url in (r.last_error or "") for r in failing)
    assert all("unreachable" in (r.last_error or "") for r in failing)
    first_retry = [r.due_at - clock.now() for r in failing]
    assert all(timedelta(seconds=1) <= d <= timedelta(seconds=1.1) for d in first_retry)

    clock.advance(timedelta(seconds=1.1))
    settle(rt, clock, dispatcher)
    again = rows(rt)
    assert {(r.status, r.attempts) for r in again} == {(provisioning.PENDING, 2)}
    second_retry = [r.due_at - clock.now() for r in again]
    assert all(timedelta(seconds=2) <= d <= timedelta(seconds=2.2) for d in second_retry)

    slapd.start()
    assert slapd.members(group) == {PLACEHOLDER, sam}  # nothing changed while it was down
    clock.advance(timedelta(seconds=2.2))
    settle(rt, clock, dispatcher)

    assert slapd.members(group) == {PLACEHOLDER, alex}
    assert {(r.identity, r.present, r.status) for r in rows(rt)} == {
        (alex, True, provisioning.PROVISIONED),
        (sam, False, provisioning.REVOKED),
    }


def test_ldap_members_added_and_removed_by_hand_are_corrected_by_reconcile_and_audited(
    rt: Pimlico, clock: FixedClock, dispatcher: Dispatcher, slapd: Slapd
) -> None:
    group = mapped_group(rt, slapd)
    alex = account(slapd, "alex")
    mallory = account(slapd, "mallory")
    active(rt, user(rt, "alex"))
    user(rt, "mallory")  # known to Pimlico, holding nothing
    settle(rt, clock, dispatcher)
    assert slapd.members(group) == {PLACEHOLDER, alex}

    slapd.remove_member_by_hand(group, alex)
    slapd.add_member_by_hand(group, mallory)
    assert slapd.members(group) == {PLACEHOLDER, mallory}

    found = reconcile(rt, actor=OPERATOR)

    assert slapd.members(group) == {PLACEHOLDER, alex}
    assert {(c.action, c.identity, c.applied) for c in found} == {
        ("grant", alex, True),
        ("revoke", mallory, True),
    }
    assert reconcile_audit(rt) == [("reconcile.grant", alex), ("reconcile.revoke", mallory)]
    assert reconcile(rt, actor=OPERATOR) == []  # nothing is left to correct
    assert slapd.members(group) == {PLACEHOLDER, alex}
