"""A real ``pimlico worker`` killed (SIGKILL) between the decision and the downstream call:
after a new worker starts, the downstream state is right.

Real processes and real time: the downstream PostgreSQL sits behind a relay that accepts
connections and forwards nothing (a hung server), so the first worker's dispatcher is stuck
connecting while it holds the work; it is killed then. The relay is healed, a second worker
starts, takes the work over once the dead one's lease (1 s) has run out, and grants.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import select

from pimlico.db.tables import ProvisioningRow
from pimlico.domain.model import AssignmentKind
from pimlico.services import assignments, connector_mappings, connectors, provisioning
from pimlico.services.runtime import Pimlico
from pimlico.settings import Settings
from tests.connectors.provisioning_world import KEY, Downstream, Relay, downstream, relay
from tests.integration.test_requests import READER
from tests.integration.world import OPERATOR, user

__all__ = ["downstream", "relay"]

ROOT = Path(__file__).resolve().parents[2]


def start_worker(url: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PIMLICO_DATABASE_URL": url,
        "PIMLICO_SECRET_KEY": KEY,
        "PIMLICO_PROVISIONING_LEASE": "1",
        "PIMLICO_RECONCILE_INTERVAL": "0",
    }
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "pimlico"), "worker"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_for(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def row(rt: Pimlico) -> ProvisioningRow | None:
    with rt.reading() as s:
        return s.scalars(select(ProvisioningRow)).first()


def test_a_worker_killed_while_its_dispatcher_holds_work_leaves_it_to_the_next(
    migrated_url: str, downstream: Downstream, relay: Relay
) -> None:
    settings = Settings(database_url=migrated_url, secret_key=SecretStr(KEY))
    with Pimlico(settings) as rt:
        obj = downstream.role("reader")
        name = downstream.role("alex", login=True)
        connectors.add_connector(
            rt,
            actor=OPERATOR,
            name="db",
            kind="postgres",
            config={"dsn": downstream.dsn(relay.port), "connect_timeout": 60},
        )
        connector_mappings.add_mapping(
            rt, actor=OPERATOR, connector="db", target=READER, downstream_object=obj
        )
        relay.stalled = True
        assignment = assignments.assign(
            rt,
            actor=OPERATOR,
            kind=AssignmentKind.ACTIVE,
            principal=user(rt, name),
            target=READER,
            duration=timedelta(hours=1),
            justification="crash test",
        ).value.id

        first = start_worker(migrated_url)
        try:
            wait_for(lambda: (r := row(rt)) is not None and r.claimed_by is not None, 60)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        assert downstream.members(obj) == set()
        held = row(rt)
        assert held is not None
        assert held.status == provisioning.PENDING

        relay.stalled = False
        second = start_worker(migrated_url)
        try:
            wait_for(lambda: (r := row(rt)) is not None and r.status != "pending", 60)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=30)

        assert downstream.members(obj) == {name}
        [state] = provisioning.states_of_assignment(rt, actor=OPERATOR, assignment_id=assignment)
        assert state.status == provisioning.PROVISIONED, state.last_error
