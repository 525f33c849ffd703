"""The worker benchmark: lag from due time to job done when ten thousand jobs fall due in the
same second, on SQLite and on PostgreSQL, against the issue's target (p99 ≤ 1 s).

This module owns the scenarios, how lag is measured, and the report. The measured scenario is
the real one: a shift ends. N users (made through ``directory.create_user``) hold a role
(``roles.create_role``) through N active assignments that all end at the same instant D,
stored in one write through ``assignment_store.insert_assignment``, which schedules the real
``assignment.expire`` jobs (``follow_up``). At D each job re-reads its assignment and
publishes ``AssignmentEnded`` (an ``event.publish`` job), which the workers then run in turn.
The workers run the real handlers (``jobs.handlers.HANDLERS``, no event consumers, as
``pimlico worker``). Two synthetic kinds follow, as labelled rows: ``bench.audit`` writes one
audit event per job (as ``request.advance`` does when it expires a request) and
``bench.nothing`` does nothing (what the worker itself costs).

The world of the real scenario is built once per database, as of S = 8 hours before D (the
shift's start): its users, its role, its assignments, and the jobs of its own events
(``AssignmentCreated``, ``AssignmentActivated``), run then by a worker of this process. On
PostgreSQL it is then vacuumed and analysed, as autovacuum would have done in eight hours.
Each run works on a copy of it, so every run starts from the same state; the copy is flushed
(``CHECKPOINT``, ``sync``) before the run, so that the run does not pay for writing it. Its
workers' clock runs at the wall clock's pace, shifted so that D comes ``--worker-lead``
seconds after they start (``ShiftedClock``): building ten thousand users and assignments
takes a minute, and a world built for one instant could not be reused.

The workers are real ``Worker.run_forever`` loops, each in its own process like ``pimlico
worker``; ``python -m bench.worker --serve CONFIG`` is that child process. It reports the
wall-clock instant of every commit it made. Lag is measured to the commit, not to
``finished_at``: a job's effects exist from the commit of its write, and ``finished_at`` is
read just before it. For each job, its commit is the first commit its worker made at or after
its ``finished_at``. ``--worker-profile`` adds one profiled run of the real scenario per
database (one worker, cProfile in the worker's thread): its figures are not reported.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import pstats
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from cProfile import Profile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from bench import Sample, duration, machine
from pimlico.clock import FixedClock
from pimlico.db import migrate
from pimlico.db.audit import WriteContext, verify
from pimlico.db.tables import AuditEventRow, JobRow
from pimlico.domain.catalogue import Perm
from pimlico.domain.events import EXPIRED
from pimlico.domain.model import (
    Assignment,
    AssignmentKind,
    PrincipalRef,
    PrincipalType,
    Target,
    new_id,
)
from pimlico.jobs import handlers, outbox
from pimlico.jobs.events import PUBLISH_JOB
from pimlico.jobs.worker import Handler, Job, Worker
from pimlico.services import directory, roles
from pimlico.services.assignment_events import EXPIRE_JOB
from pimlico.services.assignment_store import insert_assignment
from pimlico.services.runtime import Actor, Pimlico
from pimlico.settings import Settings

NAME = "worker"
TARGET_P99_S = 1.0
"""The issue's target: 99 % of the jobs done within a second of their due time."""
AUDIT, NOTHING = "bench.audit", "bench.nothing"
DOES = {
    EXPIRE_JOB: "N active assignments end at D: each assignment.expire job re-reads its "
    "assignment and publishes AssignmentEnded (an event.publish job: the follow-up, run by "
    "the same workers; no consumers, as pimlico worker)",
    AUDIT: "appends one hash-chained audit event (bench.job_ran) per job through "
    "WriteContext.record, in the worker's write, committed with the job's done",
    NOTHING: "does nothing: what the worker itself costs (claim, re-check, savepoints, done)",
}
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
ROOT = Path(__file__).resolve().parent.parent
OPERATOR = Actor.operator("bench")
SCENARIOS = (("SQLite", 1), ("PostgreSQL", 1), ("PostgreSQL", 2))
"""(database, workers): the issue's three setups."""
SHIFT = timedelta(hours=8)


def audit(rt: Pimlico, w: WriteContext, job: Job) -> None:
    w.record(
        action="bench.job_ran",
        target_type="bench",
        target_id=job.id,
        before=None,
        after={"attempt": job.attempt},
    )


def nothing(rt: Pimlico, w: WriteContext, job: Job) -> None:
    pass


HANDLERS: Mapping[str, Handler] = {AUDIT: audit, NOTHING: nothing}
"""The synthetic kinds, run alongside the real ones (as ``pimlico worker --handlers``)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--worker-jobs", type=int, default=10_000, help="jobs due at once (times --scale)"
    )
    parser.add_argument(
        "--worker-postgres-url",
        default=os.environ.get("PIMLICO_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="admin URL of the PostgreSQL server the worker benchmark creates its databases on",
    )
    parser.add_argument(
        "--worker-batch", type=int, default=None, help="the workers' batch size (default: theirs)"
    )
    parser.add_argument(
        "--worker-lead",
        type=float,
        default=3.0,
        help="seconds from the workers' start (or the synthetic enqueue's) to the due instant",
    )
    parser.add_argument(
        "--worker-no-reference",
        action="store_true",
        help="skip the synthetic runs (bench.audit, bench.nothing)",
    )
    parser.add_argument(
        "--worker-profile",
        action="store_true",
        help="also profile the real scenario's worker (one more run per database)",
    )


# -- the worker process -------------------------------------------------------------------


class ShiftedClock:
    """The wall clock shifted by ``offset`` (set once the world's due instant is known)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


class ProfiledWorker(Worker):
    """A worker whose runs (not its sleeps) are profiled."""

    profile = Profile()

    def run_once(self, now: datetime) -> int:
        self.profile.enable()
        try:
            return super().run_once(now)
        finally:
            self.profile.disable()


def _serve(config: dict[str, Any]) -> None:
    """Say it is ready, start the worker on the first line of input (its clock's offset),
    run it until the input closes, then print its commit instants as JSON."""
    commits: list[float] = []
    clock = ShiftedClock()
    kind = ProfiledWorker if config["profile"] else Worker
    with Pimlico(Settings(database_url=config["url"]), clock=clock) as rt:
        event.listen(rt.sessions, "after_commit", lambda _session: commits.append(time.time()))
        kinds = {**handlers.HANDLERS, **HANDLERS}
        if config["batch"] is None:
            worker = kind(rt, kinds, name=config["name"])
        else:
            worker = kind(rt, kinds, name=config["name"], batch=config["batch"])
        stop = threading.Event()
        thread = threading.Thread(target=worker.run_forever, args=(stop,))
        said = {"batch": worker.batch, "group": worker.group, "hold": worker.hold}
        print(json.dumps(said), flush=True)
        clock.offset = timedelta(seconds=json.loads(sys.stdin.readline())["offset"])
        thread.start()
        sys.stdin.read()
        stop.set()
        worker.wake()
        thread.join()
    if config["profile"]:
        ProfiledWorker.profile.dump_stats(config["profile"])
    print(json.dumps(commits), flush=True)


@dataclass
class Child:
    """A worker process, and its settings as it reported them."""

    name: str
    process: subprocess.Popen[str]
    settings: str = ""

    @classmethod
    def spawn(cls, url: str, name: str, batch: int | None, profile: str | None = None) -> Child:
        config = {"url": url, "name": name, "batch": batch, "profile": profile}
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.worker", "--serve", json.dumps(config)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        return cls(name, process)

    def ready(self) -> None:
        """Wait until the process has built its worker (its imports take seconds)."""
        assert self.process.stdout is not None
        said = json.loads(self.process.stdout.readline())
        self.settings = (
            f"batch {said['batch']}, {said['group']} jobs per savepoint, "
            f"hold {said['hold'] * 1000:.0f} ms"
        )

    def go(self, offset: float) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"offset": offset}) + "\n")
        self.process.stdin.flush()

    def stop(self) -> list[float]:
        """Close its input, wait for it to finish, and return its commit instants."""
        out, _ = self.process.communicate(timeout=120)
        if self.process.returncode != 0:
            raise RuntimeError(f"worker {self.name} exited with {self.process.returncode}")
        commits: list[float] = json.loads(out.strip().splitlines()[-1])
        return commits

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


# -- databases ----------------------------------------------------------------------------


@contextmanager
def database(kind: str, admin_url: str, *, like: str | None = None) -> Iterator[str]:
    """A fresh migrated database, or a copy of the database at ``like``: a temporary SQLite
    file, or a PostgreSQL database on the server at ``admin_url``; removed afterwards."""
    if kind == "SQLite":
        with tempfile.TemporaryDirectory(prefix="pimlico-bench-") as folder:
            url = f"sqlite:///{Path(folder) / 'bench.db'}"
            if like is None:
                migrate.upgrade(url)
            else:
                _copy_sqlite(make_url(like).database or "", make_url(url).database or "")
                os.sync()  # the copy's pages on disk before the run, not flushed during it
            yield url
        return
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"pimlico_bench_{secrets.token_hex(6)}"
    template = f" TEMPLATE {make_url(like).database}" if like else ""
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {name}{template}")
            if like:
                # A copy is written to the WAL: checkpointed before the run, not during it.
                connection.exec_driver_sql("CHECKPOINT")
        try:
            url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
            if like is None:
                migrate.upgrade(url)
            yield url
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        admin.dispose()


def _copy_sqlite(source: str, target: str) -> None:
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def _unreachable(admin_url: str) -> str | None:
    """Why the server at ``admin_url`` cannot be used, or ``None`` when it can."""
    engine = create_engine(admin_url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except OperationalError as error:
        return str(error).strip().splitlines()[0]
    finally:
        engine.dispose()
    return None


@dataclass(frozen=True, slots=True)
class World:
    """The real scenario's world, in the database at ``url``: ``size`` assignments ending at
    ``ends``, built in ``seconds``."""

    url: str
    size: int
    ends: datetime
    seconds: float


def build_world(db: str, url: str, size: int) -> World:
    """Users, a role and ``size`` assignments ending at D = S + 8 h, as of S; the jobs of
    their own events run at S. Vacuumed and analysed on PostgreSQL."""
    began = time.perf_counter()
    start = datetime.now(UTC).replace(microsecond=0)
    with Pimlico(Settings(database_url=url), clock=FixedClock(start)) as rt:
        users = [
            directory.create_user(rt, actor=OPERATOR, user_name=f"shift-{i}").value.id
            for i in range(size)
        ]
        role = roles.create_role(
            rt, actor=OPERATOR, name="Night shift", permissions=[Perm.USERS_READ]
        ).value.id
        with rt.writing(OPERATOR) as w:
            for user in users:
                assignment = Assignment(
                    id=new_id(),
                    kind=AssignmentKind.ACTIVE,
                    principal=PrincipalRef(PrincipalType.USER, user),
                    target=Target.role(role),
                    start=w.at,
                    end=w.at + SHIFT,
                    created_at=w.at,
                    created_by=None,
                    justification="night shift",
                )
                insert_assignment(rt, w, assignment)
        Worker(rt, handlers.HANDLERS, name="world").run_once(start)
    if db == "PostgreSQL":
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")
        engine.dispose()
    return World(url, size, start + SHIFT, time.perf_counter() - began)


# -- one run ------------------------------------------------------------------------------


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
        Child.spawn(url, f"w{i + 1}", args.worker_batch, profile if i == 0 else None)
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


def _profile(db: str, seed: str, world: World, args: argparse.Namespace) -> pstats.Stats:
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
    deadline = time.monotonic() + timeout
    while True:
        with rt.reading() as s:
            left = s.scalar(
                select(func.count()).where(JobRow.status.in_([outbox.PENDING, outbox.RUNNING]))
            )
        if not left:
            return
        if time.monotonic() > deadline:
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


# -- report -------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    console = Console(width=max(Console().width, 150))
    command = " ".join(["python -m bench", *sys.argv[1:]])
    jobs = max(1, round(args.worker_jobs * args.scale))
    console.rule(
        f"[bold]Worker benchmark[/] · {datetime.now(UTC):%Y-%m-%d} · {jobs:,} jobs due at once"
    )
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    console.print(
        f"machine: {machine()}\nload average (1/5/15 min) before the run: {load}\n"
        f"command: uv run --group bench {command}"
    )
    unreachable = _unreachable(args.worker_postgres_url)
    if unreachable:
        console.print(f"[yellow]PostgreSQL skipped[/]: {unreachable}")
    databases = [
        db for db in dict.fromkeys(db for db, _ in SCENARIOS) if db == "SQLite" or not unreachable
    ]
    runs, built, profiles = [], [], []
    for db in databases:
        with database(db, args.worker_postgres_url) as seed:
            world = build_world(db, seed, jobs)
            built.append(f"{db} {world.seconds:.0f} s")
            for each, workers in SCENARIOS:
                if each == db:
                    with database(db, args.worker_postgres_url, like=seed) as url:
                        runs.append(run_scenario(db, url, workers, EXPIRE_JOB, args, world))
            if args.worker_profile:
                profiles.append((db, _profile(db, seed, world, args)))
    if not args.worker_no_reference:
        for kind in (AUDIT, NOTHING):
            for db, workers in SCENARIOS:
                if db in databases:
                    with database(db, args.worker_postgres_url) as url:
                        runs.append(run_scenario(db, url, workers, kind, args))
    _print(console, runs, args, built)
    for db, stats in profiles:
        console.rule(f"profile: {EXPIRE_JOB}, {db}, one worker (internal time, top 25)")
        stats.sort_stats("tottime").print_stats(25)
    return 1 if any(r.problems for r in runs) else 0


def _print(console: Console, runs: list[Run], args: argparse.Namespace, built: list[str]) -> None:
    table = Table(title="Worker lag: due instant → commit of the job's write", title_justify="left")
    columns = ("kind", "database", "workers", "load", "jobs", "p50", "p99", "max")
    for column in (*columns, "follow-ups done", "jobs/s", "writes", "target"):
        table.add_column(column, justify="right")
    for r in runs:
        p50, p99, top = r.lags.percentiles(0.5, 0.99, 1.0)
        follow = "-" if r.follow_up_lag_ns is None else duration(r.follow_up_lag_ns)
        table.add_row(
            r.kind,
            r.database,
            str(r.workers),
            f"{r.load:.2f}",
            f"{r.jobs:,}",
            duration(p50),
            duration(p99),
            duration(top),
            follow,
            f"{r.rate:,.0f}",
            f"{r.writes:,}",
            _verdict(p99) if r.kind == EXPIRE_JOB else "reference",
        )
    console.print(table)
    for kind in dict.fromkeys(r.kind for r in runs):
        console.print(f"{kind}: {DOES[kind]}")
    gaps = ", ".join(duration(r.stamp_gap_ns) for r in runs)
    console.print(
        f"workers: Worker.run_forever with the real handlers, one process each, "
        f"{runs[0].settings if runs else '-'}; they start {args.worker_lead:g} s before D and "
        "sleep until then\n"
        f"world of {EXPIRE_JOB} built once per database (users, role, assignments, their "
        f"events' jobs) in {', '.join(built)}; each run on a copy\n"
        "load: 1-minute load average when the workers started (it includes this "
        "benchmark's own minute of world building before the first run of a database); "
        "lag: commit instant "
        "(after_commit, wall clock) minus D; follow-ups done: lag of the last follow-up "
        "(event.publish) job; jobs/s: jobs and follow-ups over (last commit minus D); "
        "writes: write transactions that committed the jobs\n"
        f"finished_at was read at most {gaps} before the commit it belongs to"
    )
    for r in runs:
        for problem in r.problems:
            console.print(f"[red]{r.kind} on {r.database}, {r.workers} worker(s)[/]: {problem}")
    measured = [r for r in runs if r.kind == EXPIRE_JOB]
    missed = [f"{r.database} with {r.workers}" for r in measured if r.lags.p99 > _TARGET_NS]
    verdict = "[green]met[/]" if measured and not missed else "[red]not met[/]"
    detail = f" ({', '.join(missed)})" if missed else ""
    console.print(f"target worker lag p99 ≤ {TARGET_P99_S:g} s ({EXPIRE_JOB}): {verdict}{detail}")


_TARGET_NS = TARGET_P99_S * 1e9


def _verdict(p99: int) -> str:
    return "[green]✓[/]" if p99 <= _TARGET_NS else "[red]✗ over[/]"


if __name__ == "__main__" and sys.argv[1:2] == ["--serve"]:
    _serve(json.loads(sys.argv[2]))
