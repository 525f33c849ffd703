"""The worker benchmark: lag from due time to job done when thousands of jobs fall due in the
same instant, on SQLite and on PostgreSQL, against the issue's target (p99 ≤ 1 s).

This module owns the scenario (enqueue, start real workers, wait, read back), how lag is
measured, and the report. The workers are real ``Worker.run_forever`` loops on the system
clock, each in its own process like ``pimlico worker``; ``python -m bench.worker --serve URL
NAME [BATCH]`` is that child process. It reports the wall-clock instant of every commit it
made. Two job kinds: ``bench.audit``, the measured one, writes one audit event per job in the
worker's transaction, as real handlers write theirs; ``bench.nothing`` does nothing, and is
run as a reference for what the worker itself costs.

Lag is measured to the commit, not to ``finished_at``: a job's effects exist from the commit
of its batch's transaction, and ``finished_at`` is read just before that. For each job, its
commit is the first commit its worker made at or after its ``finished_at``.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from bench import Sample, duration, machine
from pimlico.db import migrate
from pimlico.db.audit import WriteContext, verify
from pimlico.db.tables import AuditEventRow, JobRow
from pimlico.jobs import outbox
from pimlico.jobs.worker import Handler, Job, Worker
from pimlico.services.runtime import Actor, Pimlico
from pimlico.settings import Settings

NAME = "worker"
TARGET_P99_S = 1.0
"""The issue's target: 99 % of the jobs done within a second of their due time."""
AUDIT, NOTHING = "bench.audit", "bench.nothing"
DOES = {
    AUDIT: "appends one hash-chained audit event (bench.job_ran) per job through "
    "WriteContext.record, in the worker's write, committed with the job's done",
    NOTHING: "does nothing: what the worker itself costs (claim, re-check, savepoints, done)",
}
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
ROOT = Path(__file__).resolve().parent.parent
OPERATOR = Actor.operator("bench")
SCENARIOS = (("SQLite", 1), ("PostgreSQL", 1), ("PostgreSQL", 2))
"""(database, workers): the issue's three setups."""


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--worker-jobs", type=int, default=10_000, help="jobs due at once (times --scale)"
    )
    parser.add_argument(
        "--worker-postgres-url",
        default=os.environ.get("PIMLICO_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="admin URL of the PostgreSQL server the worker benchmark creates its database on",
    )
    parser.add_argument(
        "--worker-batch", type=int, default=None, help="the workers' batch size (default: theirs)"
    )
    parser.add_argument(
        "--worker-lead",
        type=float,
        default=3.0,
        help="seconds from the start of the enqueue to the jobs' due instant",
    )
    parser.add_argument(
        "--worker-no-reference",
        action="store_true",
        help="skip the reference runs with a handler that does nothing",
    )


# -- the worker process -------------------------------------------------------------------


def _serve(url: str, name: str, batch: int | None) -> None:
    """Say it is ready, start the worker on the first line of input, run it until the input
    closes, then print its commit instants as JSON."""
    commits: list[float] = []
    with Pimlico(Settings(database_url=url)) as rt:
        event.listen(rt.sessions, "after_commit", lambda _session: commits.append(time.time()))
        if batch is None:
            worker = Worker(rt, HANDLERS, name=name)
        else:
            worker = Worker(rt, HANDLERS, name=name, batch=batch)
        stop = threading.Event()
        thread = threading.Thread(target=worker.run_forever, args=(stop,))
        said = {"batch": worker.batch, "group": worker.group, "hold": worker.hold}
        print(json.dumps(said), flush=True)
        sys.stdin.readline()
        thread.start()
        sys.stdin.read()
        stop.set()
        worker.wake()
        thread.join()
    print(json.dumps(commits), flush=True)


@dataclass
class Child:
    """A worker process, and its settings as it reported them."""

    name: str
    process: subprocess.Popen[str]
    settings: str = ""

    @classmethod
    def spawn(cls, url: str, name: str, batch: int | None) -> Child:
        command = [sys.executable, "-m", "bench.worker", "--serve", url, name]
        process = subprocess.Popen(
            [*command, *([] if batch is None else [str(batch)])],
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

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def stop(self) -> list[float]:
        """Close its input, wait for it to finish, and return its commit instants."""
        out, _ = self.process.communicate(timeout=60)
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
def database(kind: str, admin_url: str) -> Iterator[str]:
    """A fresh migrated database: a temporary SQLite file, or a PostgreSQL database on the
    server at ``admin_url``; removed afterwards."""
    if kind == "SQLite":
        with tempfile.TemporaryDirectory(prefix="pimlico-bench-") as folder:
            url = f"sqlite:///{Path(folder) / 'bench.db'}"
            migrate.upgrade(url)
            yield url
        return
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"pimlico_bench_{secrets.token_hex(6)}"
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {name}")
        try:
            url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
            migrate.upgrade(url)
            yield url
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        admin.dispose()


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


# -- one run ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    """One scenario's figures; lags in ns from the due instant to the job's commit."""

    database: str
    workers: int
    kind: str
    jobs: int
    settings: str
    enqueue_seconds: float
    lags: Sample
    stamp_gap_ns: int
    writes: int
    problems: tuple[str, ...]

    @property
    def rate(self) -> float:
        """Jobs per second from the due instant to the last commit."""
        last = max(self.lags.latencies, default=0)
        return self.jobs / (last / 1e9) if last > 0 else 0.0


def run_scenario(db: str, url: str, workers: int, kind: str, args: argparse.Namespace) -> Run:
    """Enqueue the jobs due at D, start the workers, wait until every job is done, read back."""
    jobs = max(1, round(args.worker_jobs * args.scale))
    children = [Child.spawn(url, f"w{i + 1}", args.worker_batch) for i in range(workers)]
    problems = []
    try:
        for child in children:
            child.ready()
        with Pimlico(Settings(database_url=url)) as rt:
            started = time.time()
            due = datetime.fromtimestamp(started, UTC) + timedelta(seconds=args.worker_lead)
            with rt.writing(OPERATOR) as w:
                for _ in range(jobs):
                    outbox.enqueue(w, kind=kind, payload={}, due_at=due)
            enqueued = time.time() - started
            # Started once the jobs are in, as a worker that has been running a while has
            # seen them: each reads the due instant and sleeps until it.
            for child in children:
                child.go()
            if time.time() >= due.timestamp():
                problems.append("the enqueue ended after the due instant: lag overstated")
            _wait_until_finished(rt, jobs, timeout=60 + jobs / 50)
            commits = {child.name: child.stop() for child in children}
            with rt.reading() as s:
                rows = _outcomes(s)
                problems += _checks(s, rows, jobs, kind)
    finally:
        for child in children:
            child.kill()
    lags, gaps, writes = [], [], set()
    for claimed_by, finished_at, status, _ in rows:
        if status != outbox.DONE or finished_at is None:
            continue
        stamped = finished_at.timestamp()
        mine = commits[claimed_by]
        committed = mine[bisect.bisect_left(mine, stamped)]
        writes.add((claimed_by, committed))
        lags.append(round((committed - due.timestamp()) * 1e9))
        gaps.append(round((committed - stamped) * 1e9))
    return Run(
        database=db,
        workers=workers,
        kind=kind,
        jobs=jobs,
        settings=children[0].settings,
        enqueue_seconds=enqueued,
        lags=Sample(lags, [True] * len(lags)),
        stamp_gap_ns=max(gaps, default=0),
        writes=len(writes),
        problems=tuple(problems),
    )


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


def _outcomes(s: Session) -> list[tuple[str, datetime | None, str, int]]:
    """(claimed_by, finished_at, status, attempts) of every job."""
    columns = JobRow.claimed_by, JobRow.finished_at, JobRow.status, JobRow.attempts
    return [(str(r[0]), r[1], r[2], r[3]) for r in s.execute(select(*columns))]


def _checks(
    s: Session, rows: list[tuple[str, datetime | None, str, int]], jobs: int, kind: str
) -> list[str]:
    """What is wrong with the outcome: jobs not done, retried, or not run exactly once."""
    found = []
    statuses = Counter((status, attempts) for _, _, status, attempts in rows)
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
    console = Console(width=max(Console().width, 110))
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
    kinds = (AUDIT,) if args.worker_no_reference else (AUDIT, NOTHING)
    runs = []
    for kind in kinds:
        for db, workers in SCENARIOS:
            if db == "PostgreSQL" and unreachable:
                continue
            with database(db, args.worker_postgres_url) as url:
                runs.append(run_scenario(db, url, workers, kind, args))
    _print(console, runs, args)
    return 1 if any(r.problems for r in runs) else 0


def _print(console: Console, runs: list[Run], args: argparse.Namespace) -> None:
    table = Table(title="Worker lag: due instant → commit of the job's write", title_justify="left")
    for column in ("handler", "database", "workers", "jobs", "p50", "p99", "max", "jobs/s"):
        table.add_column(column, justify="right")
    for column in ("writes", "target"):
        table.add_column(column, justify="right")
    for r in runs:
        p50, p99, top = r.lags.percentiles(0.5, 0.99, 1.0)
        table.add_row(
            r.kind,
            r.database,
            str(r.workers),
            f"{r.jobs:,}",
            duration(p50),
            duration(p99),
            duration(top),
            f"{r.rate:,.0f}",
            f"{r.writes:,}",
            _verdict(p99) if r.kind == AUDIT else "reference",
        )
    console.print(table)
    for kind in dict.fromkeys(r.kind for r in runs):
        console.print(f"{kind}: {DOES[kind]}")
    enqueues = ", ".join(f"{r.enqueue_seconds:.1f}" for r in runs)
    gaps = ", ".join(duration(r.stamp_gap_ns) for r in runs)
    console.print(
        f"workers: Worker.run_forever on the system clock, one process each, "
        f"{runs[0].settings if runs else '-'}\n"
        f"jobs: all enqueued in one write, due {args.worker_lead:g} s after it began "
        f"(it took {enqueues} s); the workers start once it commits and sleep until then\n"
        "lag: commit instant (after_commit, wall clock) minus due instant; jobs/s: jobs over "
        "(last commit minus due instant); writes: write transactions that committed jobs\n"
        f"finished_at was read at most {gaps} before the commit it belongs to"
    )
    for r in runs:
        for problem in r.problems:
            console.print(f"[red]{r.kind} on {r.database}, {r.workers} worker(s)[/]: {problem}")
    measured = [r for r in runs if r.kind == AUDIT]
    missed = [f"{r.database} with {r.workers}" for r in measured if r.lags.p99 > _TARGET_NS]
    verdict = "[green]met[/]" if measured and not missed else "[red]not met[/]"
    detail = f" ({', '.join(missed)})" if missed else ""
    console.print(f"target worker lag p99 ≤ {TARGET_P99_S:g} s ({AUDIT}): {verdict}{detail}")


_TARGET_NS = TARGET_P99_S * 1e9


def _verdict(p99: int) -> str:
    return "[green]✓[/]" if p99 <= _TARGET_NS else "[red]✗ over[/]"


if __name__ == "__main__" and sys.argv[1:2] == ["--serve"]:
    _serve(sys.argv[2], sys.argv[3], int(sys.argv[4]) if sys.argv[4:] else None)
