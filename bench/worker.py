"""The worker benchmark: lag from due time to job done when ten thousand jobs fall due in the
same second, on SQLite and on PostgreSQL, against the issue's target (p99 ≤ 1 s).

This module owns the scenarios, how lag is measured, and the report. The measured scenario is
the real one: a shift ends. N users (made through ``directory.create_user``) hold a role
(``roles.create_role``) through N active assignments that all end at the same instant D,
stored in one write through ``assignment_store.insert_assignment``, which schedules the real
``assignment.expire`` jobs (``follow_up``). At D each job re-reads its assignment and
publishes ``AssignmentEnded`` (an ``event.publish`` job), which the workers then run in turn.
The workers run the real handlers: by default ``jobs.handlers.HANDLERS`` (no event
consumers); with ``--worker-consumers`` those of ``pimlico worker`` and ``pimlico serve``
(``jobs.handlers.worker_handlers``: each event delivered to provisioning and notifications).
Two synthetic kinds follow, as labelled rows: ``bench.audit`` writes one audit event per job
(as ``request.advance`` does when it expires a request) and ``bench.nothing`` does nothing
(what the worker itself costs).

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
worker``; ``python -m bench.worker_process --serve CONFIG`` is that child process. It reports the
wall-clock instant of every commit it made. Lag is measured to the commit, not to
``finished_at``: a job's effects exist from the commit of its write, and ``finished_at`` is
read just before it. For each job, its commit is the first commit its worker made at or after
its ``finished_at``. ``--worker-profile`` adds one profiled run of the real scenario per
database (one worker, cProfile in the worker's thread): its figures are not reported.

The parts: ``bench.worker_world`` (the databases and the world), ``bench.worker_process`` (the
worker process and the synthetic kinds), ``bench.worker_runs`` (one run, its lags and its
checks); this module has the options and the report.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from bench import duration, machine
from bench.worker_process import AUDIT, NOTHING
from bench.worker_runs import Run, profile, run_scenario
from bench.worker_world import DEFAULT_POSTGRES_URL, build_world, database, why_unreachable
from pimlico.services.assignment_events import EXPIRE_JOB

NAME = "worker"
TARGET_P99_S = 1.0
"""The issue's target: 99 % of the jobs done within a second of their due time."""
DOES = {
    EXPIRE_JOB: "N active assignments end at D: each assignment.expire job re-reads its "
    "assignment and publishes AssignmentEnded (an event.publish job: the follow-up, run by "
    "the same workers)",
    AUDIT: "appends one hash-chained audit event (bench.job_ran) per job through "
    "WriteContext.record, in the worker's write, committed with the job's done",
    NOTHING: "does nothing: what the worker itself costs (claim, re-check, savepoints, done)",
}
SCENARIOS = (("SQLite", 1), ("PostgreSQL", 1), ("PostgreSQL", 2))
"""(database, workers): the issue's three setups."""


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
        "--worker-consumers",
        action="store_true",
        help="the handlers of pimlico worker: events delivered to provisioning and "
        "notifications (default: no consumers)",
    )
    parser.add_argument(
        "--worker-profile",
        action="store_true",
        help="also profile the real scenario's worker (one more run per database)",
    )


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
    unreachable = why_unreachable(args.worker_postgres_url)
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
                profiles.append((db, profile(db, seed, world, args)))
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
        "workers: Worker.run_forever with the real handlers ("
        + (
            "pimlico worker's: events delivered to provisioning and notifications"
            if args.worker_consumers
            else "no event consumers"
        )
        + f"), one process each, "
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
