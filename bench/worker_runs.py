"""One run of the worker benchmark: start the workers, let D come, wait until every job is
done, read the outcome back — lags (due instant to the commit of the job's write) and what is
wrong (a job not done at its first attempt, an event missing or doubled, the chain broken).
"""

from __future__ import annotations

import argparse
import bisect
import os
import pstats
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bench import Sample
from bench.worker_process import AUDIT, Child
from bench.worker_world import OPERATOR, World, database
from pimlico.db.audit import verify
from pimlico.db.tables import AuditEventRow, JobRow
from pimlico.domain.events import EXPIRED
from pimlico.jobs import outbox
from pimlico.jobs.events import PUBLISH_JOB
from pimlico.services.assignment_events import EXPIRE_JOB
from pimlico.services.runtime import Pimlico
from pimlico.settings import Settings


@dataclass(frozen=True, slots=True)
class Run:
    """One scenario's figures; lags in ns from the due instant to the job's commit."""

    database: str
    workers: int
    kind: str
    jobs: int
    load: float
    settings: str
    lags: Sample
    follow_ups: int
    follow_up_lag_ns: int | None
    stamp_gap_ns: int
    writes: int
    problems: tuple[str, ...]

    @property
    def rate(self) -> float:
        """Jobs (and their follow-ups) per second from the due instant to the last commit."""
        last = max([*self.lags.latencies, self.follow_up_lag_ns or 0], default=0)
        return (self.jobs + self.follow_ups) / (last / 1e9) if last > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """A job as it ended."""

    kind: str
    claimed_by: str
    finished_at: datetime | None
    status: str
    attempts: int
    created_at: datetime


def run_scenario(
    db: str,
    url: str,
    workers: int,
    kind: str,
    args: argparse.Namespace,
    world: World | None = None,
    profile: str | None = None,
) -> Run:
    """Start the workers, let D come, wait until every job is done, read back. The real
    scenario (``world``) is in the database already; a synthetic kind's jobs are enqueued
    first, due ``--worker-lead`` seconds after the enqueue begins. ``profile``: where the
    first worker writes its profile."""
    jobs = world.size if world else max(1, round(args.worker_jobs * args.scale))
    children = [
        Child.spawn(
            url,
            f"w{i + 1}",
            args.worker_batch,
            profile if i == 0 else None,
            consumers=args.worker_consumers,
        )
        for i in range(workers)
    ]
    try:
        for child in children:
            child.ready()
        with Pimlico(Settings(database_url=url)) as rt:
            due = time.time() + args.worker_lead
            offset = world.ends.timestamp() - due if world else 0.0
            if world is None:
                with rt.writing(OPERATOR) as w:
                    at = datetime.fromtimestamp(due, UTC)
                    outbox.enqueue_many(w, [outbox.NewJob(kind, {}, at)] * jobs)
            load = os.getloadavg()[0]
            # Started once the jobs are in, as workers that have been running a while have
            # seen them: each reads the due instant and sleeps until it.
            for child in children:
                child.go(offset)
            late = time.time() >= due
            _wait_until_finished(rt, jobs, timeout=60 + jobs / 20)
            commits = {child.name: child.stop() for child in children}
            with rt.reading() as s:
                rows = _outcomes(s)
                problems = _real_checks(s, rows, world) if world else _checks(s, rows, jobs, kind)
    finally:
        for child in children:
            child.kill()
    if late:
        problems.insert(0, "the set-up ended after the due instant: lag overstated")
    ran = [r for r in rows if r.kind == kind]
    lags, gaps, writes = _lags(ran, commits, due, offset)
    follow_ups = [r for r in rows if world and r.kind == PUBLISH_JOB and r.created_at >= world.ends]
    follow_lags, _, _ = _lags(follow_ups, commits, due, offset)
    return Run(
        database=db,
        workers=workers,
        kind=kind,
        jobs=len(ran),
        load=load,
        settings=children[0].settings,
        lags=Sample(lags, [True] * len(lags)),
        follow_ups=len(follow_ups),
        follow_up_lag_ns=max(follow_lags) if follow_lags else None,
        stamp_gap_ns=max(gaps, default=0),
        writes=writes,
        problems=tuple(problems),
    )


def profile(db: str, seed: str, world: World, args: argparse.Namespace) -> pstats.Stats:
    """One worker through the real scenario, profiled (its figures are not reported)."""
    with (
        tempfile.TemporaryDirectory(prefix="pimlico-profile-") as folder,
        database(db, args.worker_postgres_url, like=seed) as url,
    ):
        path = str(Path(folder) / "worker.prof")
        run_scenario(db, url, 1, EXPIRE_JOB, args, world, profile=path)
        return pstats.Stats(path, stream=sys.stdout)


def _lags(
    rows: list[Outcome], commits: dict[str, list[float]], due: float, offset: float
) -> tuple[list[int], list[int], int]:
    """Lags (ns, due instant to commit) of the ``rows`` done, the gaps between their
    ``finished_at`` and commit, and how many writes committed them. ``offset``: the
    workers' clock minus the wall clock."""
    lags, gaps, writes = [], [], set()
    for row in rows:
        if row.status != outbox.DONE or row.finished_at is None:
            continue
        stamped = row.finished_at.timestamp() - offset
        mine = commits[row.claimed_by]
        committed = mine[bisect.bisect_left(mine, stamped)]
        writes.add((row.claimed_by, committed))
        lags.append(round((committed - due) * 1e9))
        gaps.append(round((committed - stamped) * 1e9))
    return lags, gaps, len(writes)


def _wait_until_finished(rt: Pimlico, jobs: int, timeout: float) -> None:
    """Poll, every 0.2 s, whether a job is left: one row looked up, not all of them counted
    (on PostgreSQL a count visits every job still due, taking CPU from the workers measured
    on this machine's two cores)."""
    unfinished = JobRow.status.in_([outbox.PENDING, outbox.RUNNING])
    deadline = time.monotonic() + timeout
    while True:
        with rt.reading() as s:
            if s.scalar(select(JobRow.id).where(unfinished).limit(1)) is None:
                return
            if time.monotonic() > deadline:
                left = s.scalar(select(func.count()).where(unfinished))
                raise TimeoutError(f"{left} of {jobs} jobs still not done after {timeout:.0f} s")
        time.sleep(0.2)


def _outcomes(s: Session) -> list[Outcome]:
    columns = (
        JobRow.kind,
        JobRow.claimed_by,
        JobRow.finished_at,
        JobRow.status,
        JobRow.attempts,
        JobRow.created_at,
    )
    return [Outcome(r[0], str(r[1]), r[2], r[3], r[4], r[5]) for r in s.execute(select(*columns))]


def _real_checks(s: Session, rows: list[Outcome], world: World) -> list[str]:
    """What is wrong: a job not done at its first attempt, an event missing or doubled."""
    found = []
    expires = Counter((r.status, r.attempts) for r in rows if r.kind == EXPIRE_JOB)
    if expires != Counter({(outbox.DONE, 1): world.size}):
        found.append(f"expire jobs by (status, attempts): {dict(expires)}, expected done at 1")
    follow_ups = Counter((r.kind, r.status, r.attempts) for r in rows if r.created_at >= world.ends)
    if follow_ups != Counter({(PUBLISH_JOB, outbox.DONE, 1): world.size}):
        found.append(f"follow-ups by (kind, status, attempts): {dict(follow_ups)}")
    ended = [
        payload["data"]
        for payload in s.scalars(select(JobRow.payload).where(JobRow.kind == PUBLISH_JOB))
        if payload["type"] == "AssignmentEnded"
    ]
    assignments = {e["assignment"]["assignment_id"] for e in ended}
    reasons = Counter((e["reason"], datetime.fromisoformat(e["at"])) for e in ended)
    if len(ended) != world.size or len(assignments) != world.size:
        found.append(f"{len(ended)} AssignmentEnded for {len(assignments)} assignments")
    if reasons != Counter({(EXPIRED, world.ends): world.size}):
        found.append(f"AssignmentEnded by (reason, at): {dict(reasons)}")
    broken = verify(s)
    if broken is not None:
        found.append(f"audit chain broken: {broken}")
    return found


def _checks(s: Session, rows: list[Outcome], jobs: int, kind: str) -> list[str]:
    """What is wrong with the outcome: jobs not done, retried, or not run exactly once."""
    found = []
    statuses = Counter((r.status, r.attempts) for r in rows)
    if statuses != Counter({(outbox.DONE, 1): jobs}):
        found.append(f"jobs by (status, attempts): {dict(statuses)}, expected {jobs} done at 1")
    expected = jobs if kind == AUDIT else 0
    events, targets = s.execute(
        select(func.count(), func.count(AuditEventRow.target_id.distinct())).where(
            AuditEventRow.action == "bench.job_ran"
        )
    ).one()
    if events != expected or targets != expected:
        found.append(f"{events} audit events for {targets} jobs, expected {expected} (one each)")
    broken = verify(s)
    if broken is not None:
        found.append(f"audit chain broken: {broken}")
    return found
