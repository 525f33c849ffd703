"""Reconciliation against a real PostgreSQL: drift injected by hand is corrected and audited
(authoritative), only reported (report_only), and left alone on a dry run."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from pimlico.clock import FixedClock
from pimlico.db.tables import AuditEventRow
from pimlico.domain.model import AssignmentKind, PrincipalRef
from pimlico.errors import PermissionDenied
from pimlico.jobs.provisioning import Dispatcher
from pimlico.jobs.reconcile import reconcile
from pimlico.services import assignments, connector_mappings, connectors
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
from tests.integration.test_requests import READER
from tests.integration.world import OPERATOR, user

__all__ = ["clock", "dispatcher", "downstream", "rt", "settings"]


def active(rt: Pimlico, who: PrincipalRef) -> None:
    assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ACTIVE,
        principal=who,
        target=READER,
        duration=timedelta(hours=1),
        justification="reconcile test",
    )


def drifted(
    rt: Pimlico,
    clock: FixedClock,
    dispatcher: Dispatcher,
    downstream: Downstream,
    mode: str = connectors.AUTHORITATIVE,
) -> tuple[str, str, str]:
    """Alex holds the reader role, provisioned, then removed by hand downstream; Mallory,
    who holds nothing, was added by hand. The object and both identities."""
    obj = downstream.role("reader")
    postgres_connector(rt, downstream.dsn(), mode=mode)
    connector_mappings.add_mapping(
        rt, actor=OPERATOR, connector="db", target=READER, downstream_object=obj
    )
    alex = downstream.role("alex", login=True)
    mallory = downstream.role("mallory", login=True)
    active(rt, user(rt, alex))
    user(rt, mallory)
    settle(rt, clock, dispatcher)
    downstream.revoke(obj, alex)
    downstream.grant(obj, mallory)
    return obj, alex, mallory


def audited(rt: Pimlico, prefix: str) -> list[AuditEventRow]:
    with rt.reading() as s:
        return list(s.scalars(select(AuditEventRow).where(AuditEventRow.action.startswith(prefix))))


def test_drift_both_ways_is_corrected_and_each_correction_audited(
    rt: Pimlico, clock: FixedClock, dispatcher: Dispatcher, downstream: Downstream
) -> None:
    obj, alex, mallory = drifted(rt, clock, dispatcher, downstream)

    found = reconcile(rt, actor=OPERATOR)

    assert downstream.members(obj) == {alex}
    assert {(c.action, c.identity, c.applied) for c in found} == {
        ("grant", alex, True),
        ("revoke", mallory, True),
    }
    events = audited(rt, "reconcile.")
    assert sorted(e.action for e in events) == ["reconcile.grant", "reconcile.revoke"]
    assert {json.loads(e.after or "{}")["identity"] for e in events} == {alex, mallory}
    assert reconcile(rt, actor=OPERATOR) == []  # and now nothing is left to correct


def test_report_only_changes_nothing_but_reports_and_audits_the_drift(
    rt: Pimlico, clock: FixedClock, dispatcher: Dispatcher, downstream: Downstream
) -> None:
    obj, alex, mallory = drifted(rt, clock, dispatcher, downstream, connectors.REPORT_ONLY)

    found = reconcile(rt, actor=OPERATOR)

    assert downstream.members(obj) == {mallory}
    assert {(c.action, c.identity, c.applied) for c in found} == {
        ("grant", alex, False),
        ("revoke", mallory, False),
    }
    assert [e.action for e in audited(rt, "reconcile.")] == ["reconcile.drift"] * 2


def test_a_dry_run_changes_nothing_and_writes_nothing(
    rt: Pimlico, clock: FixedClock, dispatcher: Dispatcher, downstream: Downstream
) -> None:
    obj, alex, mallory = drifted(rt, clock, dispatcher, downstream)

    found = reconcile(rt, actor=OPERATOR, dry_run=True)

    assert downstream.members(obj) == {mallory}
    assert {(c.action, c.identity, c.applied) for c in found} == {
        ("grant", alex, False),
        ("revoke", mallory, False),
    }
    assert audited(rt, "reconcile.") == []


def test_reconcile_of_one_connector_leaves_the_others_alone(
    rt: Pimlico, clock: FixedClock, dispatcher: Dispatcher, downstream: Downstream
) -> None:
    obj, _, mallory = drifted(rt, clock, dispatcher, downstream)
    postgres_connector(rt, downstream.dsn(), name="other")

    assert reconcile(rt, actor=OPERATOR, connector="other") == []
    assert mallory in downstream.members(obj)


def test_a_user_without_the_connectors_permission_may_not_reconcile(
    rt: Pimlico, downstream: Downstream
) -> None:
    nobody = Actor.principal(user(rt, "nobody").id)
    with pytest.raises(PermissionDenied):
        reconcile(rt, actor=nobody, dry_run=True)
