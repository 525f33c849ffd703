"""One measured run of the revocation benchmark (``bench.revocation``): granting everything
before D, the revocation-lag run, and the reconcile runs, on one store copy and one
downstream; each returns its figures and what went wrong, and prints nothing.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from bench.revocation_downstream import Downstream
from bench.worker_process import ShiftedClock
from bench.worker_world import World
from pimlico.clock import Clock, FixedClock
from pimlico.db.tables import ProvisioningRow
from pimlico.domain.model import Target
from pimlico.jobs.handlers import WORKER_HANDLERS
from pimlico.jobs.provisioning import Dispatcher
from pimlico.jobs.reconcile import reconcile
from pimlico.jobs.worker import Worker
from pimlico.services import connector_mappings, connectors, resolve
from pimlico.services.runtime import Actor, Pimlico
from pimlico.settings import Settings

OPERATOR = Actor.operator("bench")
RECONCILE_RUNS = 3
DRIFT = 0.01
"""The share of the members removed by hand downstream, and of extra accounts added."""


@dataclass
class Lag:
    """One revocation-lag run: per assignment, lags from D in seconds (recorded, seen)."""

    downstream: str
    size: int
    full_size: int
    recorded: list[float] = field(default_factory=list)
    seen: list[float] = field(default_factory=list)
    all_gone: float | None = None
    poll: float = 0.0
    """The median time one poll of the downstream object took, in seconds."""
    problems: list[str] = field(default_factory=list)


@dataclass
class Reconciled:
    """The reconcile runs on one downstream: each run's seconds and corrections applied."""

    downstream: str
    memberships: int
    drift: int
    seconds: list[float] = field(default_factory=list)
    granted: list[int] = field(default_factory=list)
    revoked: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def grant_all(
    settings: Settings, world: World, down: Downstream, kind: str, expected: set[str]
) -> str | None:
    """A connector and a mapping of the world's role to the object, everything granted there
    (as of D - 7 h); what went wrong, if anything."""
    with Pimlico(settings, clock=FixedClock(world.ends - timedelta(hours=7))) as rt:
        role = resolve.resolve_role(rt, "Night shift").id
        connectors.add_connector(
            rt, actor=OPERATOR, name="down", kind=down.kind, config=down.config, secret=down.secret
        )
        connector_mappings.add_mapping(
            rt,
            actor=OPERATOR,
            connector="down",
            target=Target.role(role),
            downstream_object=down.obj,
        )
        dispatcher = Dispatcher(rt, name="grant")
        try:
            dispatcher.run_once()
        finally:
            dispatcher.close()
    found = down.members()
    if found != expected:
        return f"{kind}: {len(found & expected):,} of {len(expected):,} granted before D"
    return None


def lag(
    settings: Settings,
    world: World,
    down: Downstream,
    kind: str,
    expected: set[str],
    full_size: int,
    args: argparse.Namespace,
) -> Lag:
    """Worker and dispatcher running across D; when each assignment was revoked."""
    result = Lag(kind, len(expected), full_size)
    d = world.ends
    clock = ShiftedClock()
    clock.offset = (d - timedelta(hours=1)) - datetime.now(UTC)
    with Pimlico(settings, clock=clock) as rt:
        _ = rt.decisions.index  # built at start, as a serving process has it
        stop = threading.Event()
        worker = Worker(rt, WORKER_HANDLERS, name="w")
        dispatcher = Dispatcher(rt, name="d", reconcile_interval=0)
        threads = [
            threading.Thread(target=worker.run_forever, args=(stop,)),
            threading.Thread(target=dispatcher.run_forever, args=(stop,)),
        ]
        for t in threads:
            t.start()
        try:
            _until_reconciled(dispatcher.name, args.revocation_timeout)
            clock.offset = (d - timedelta(seconds=args.revocation_lead)) - datetime.now(UTC)
            worker.wake()
            dispatcher.wake()
            result.seen, result.all_gone, left, result.poll = _watch(down, expected, clock, d, args)
            if left:
                result.problems.append(f"{left:,} still members after {args.revocation_timeout} s")
        finally:
            stop.set()
            worker.wake()
            dispatcher.wake()
            for t in threads:
                t.join()
        with rt.reading() as s:
            rows = list(s.scalars(select(ProvisioningRow)))
    result.recorded = sorted(
        (r.updated_at - d).total_seconds() for r in rows if r.status == "revoked"
    )
    others = sum(1 for r in rows if r.status != "revoked")
    if others:
        result.problems.append(f"{others:,} provisioning rows not revoked")
    if any(lag < 0 for lag in [*result.recorded, *result.seen]):
        result.problems.append("revoked before D")
    return result


def _until_reconciled(name: str, timeout: float) -> None:
    """Wait for the dispatcher's start-up reconcile pass (its thread, ``NAME-reconcile``, ends
    after one pass when ``reconcile_interval`` is 0) to be over."""
    deadline = time.monotonic() + timeout
    while any(t.name == f"{name}-reconcile" for t in threading.enumerate()):
        if time.monotonic() > deadline:
            raise RuntimeError("the dispatcher's start-up reconcile pass did not end")
        time.sleep(0.05)


def _watch(
    down: Downstream, expected: set[str], clock: Clock, d: datetime, args: argparse.Namespace
) -> tuple[list[float], float | None, int, float]:
    """Poll the object until none of ``expected`` is a member: each identity's lag to the
    first poll without it, when the object was seen empty, how many were left, and the
    median time one poll took."""
    seen: dict[str, float] = {}
    polls: list[float] = []
    left = set(expected)
    deadline = time.monotonic() + args.revocation_timeout
    while left and time.monotonic() < deadline:
        time.sleep(args.revocation_poll)
        began = time.perf_counter()
        current = down.members()
        polls.append(time.perf_counter() - began)
        at = (clock.now() - d).total_seconds()
        for identity in left - current:
            seen[identity] = at
        left &= current
    all_gone = max(seen.values()) if not left and seen else None
    return sorted(seen.values()), all_gone, len(left), statistics.median(polls or [0.0])


def reconcile_runs(
    settings: Settings, world: World, down: Downstream, kind: str, expected: set[str], drift: int
) -> Reconciled:
    """Drift injected by hand, then one reconcile pass timed; ``RECONCILE_RUNS`` times."""
    result = Reconciled(kind, len(expected), drift)
    removed = sorted(expected)[:drift]
    with Pimlico(settings, clock=FixedClock(world.ends - timedelta(hours=1))) as rt:
        _ = rt.decisions.index
        for _run in range(RECONCILE_RUNS):
            down.remove_by_hand(removed)
            down.add_by_hand(down.extras)
            began = time.perf_counter()
            found = reconcile(rt, actor=OPERATOR)
            result.seconds.append(time.perf_counter() - began)
            result.granted.append(sum(1 for c in found if c.action == "grant" and c.applied))
            result.revoked.append(sum(1 for c in found if c.action == "revoke" and c.applied))
            errors = [c.detail for c in found if c.action not in ("grant", "revoke")]
            result.problems += [f"{kind}: {e}" for e in errors]
            if result.granted[-1] != drift or result.revoked[-1] != drift:
                result.problems.append(f"{kind}: {drift:,} grants and revocations expected")
            if down.members() != expected:
                result.problems.append(f"{kind}: the object differs from Pimlico after reconcile")
    return result
