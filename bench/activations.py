"""The activation benchmark: self-service activations through the service layer on
PostgreSQL, on one thread and on several, then what one activation costs in statements.

This module owns its throwaway databases (made on the server ``--activations-postgres-url``
names and dropped at the end, whatever happens), the world it builds in them through the
real use cases (users, one role whose settings ask for nothing the benchmark cannot give, an
eligible assignment per user), the issue's target and the report. Every timed call is a
real ``requests.submit``: it commits a provisioned request, an active assignment and their
audit events, and the runtime's decision index follows it, as in a server. Activations that
arrive together share a write (``services.activations``: group commit), so the runs with
more threads show what a server under load does; the one-thread run, an activation alone.

The world is built once, in a seed database; each measured run works on a copy of it
(``CREATE DATABASE … TEMPLATE``), so every run starts from the same state. Threads share one
runtime, as a server's worker threads do (see ``SHARED_RUNTIME``).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import secrets
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.engine import Connection, make_url

from bench import Sample, duration, machine
from pimlico.db import audit, migrate
from pimlico.db.engine import normalise_url
from pimlico.db.tables import AssignmentRow, AuditEventRow, PimStateRow, RequestRow
from pimlico.domain.model import AssignmentKind, PrincipalRef, PrincipalType, Target, TargetType
from pimlico.domain.requests import RequestAction, RequestStatus, Schedule
from pimlico.services import assignments, directory, requests, role_settings, roles
from pimlico.services.runtime import Actor, Pimlico
from pimlico.settings import Settings

NAME = "activations"
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TARGET = 500.0
"""The issue's target: activations per second on the 2-core machine."""
WARM_UP = 20
"""Activations made before each timed run (of a role of their own), not counted."""
STATEMENT_SAMPLE = 200
"""Activations the statement count and the profile look at."""
OPERATOR = Actor.operator("bench")
SCHEDULE = Schedule(duration=timedelta(hours=1))
SHARED_RUNTIME = (
    "one runtime shared by all threads, as in a server. Safe: the follower applies changes "
    "under its own lock and through its own connection; an activation reads the index "
    "(eligibility) inside its write, where the write lock keeps every other commit, so every "
    "change to the index, out; and readers racing a follow elsewhere only ever see entries "
    "replaced whole or dropped (DecisionIndex docstring)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--activations-count",
        type=int,
        default=5_000,
        help="activations per run, each by its own user (times --scale)",
    )
    parser.add_argument(
        "--activations-threads",
        default="1,8,32,64",
        help="comma-separated thread counts, one run each (default 1,8,32,64)",
    )
    parser.add_argument(
        "--activations-postgres-url",
        default=os.environ.get("PIMLICO_BENCH_POSTGRES_URL", DEFAULT_URL),
        help="admin URL of the PostgreSQL server the throwaway databases are made on "
        "(default: $PIMLICO_BENCH_POSTGRES_URL, else the local server)",
    )
    parser.add_argument(
        "--activations-profile",
        action="store_true",
        help="also print a cProfile of single-thread activations",
    )


# -- databases ------------------------------------------------------------------------------


class Server:
    """The admin connection: makes and drops the throwaway databases."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = normalise_url(admin_url)
        self.engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        self.made: list[str] = []

    def url_of(self, database: str) -> str:
        return make_url(self.admin_url).set(database=database).render_as_string(hide_password=False)

    def create(self, *, template: str | None = None) -> str:
        name = f"pimlico_bench_{secrets.token_hex(6)}"
        suffix = f" TEMPLATE {template}" if template else ""
        self._execute(f"CREATE DATABASE {name}{suffix}")
        self.made.append(name)
        return name

    def drop(self, name: str) -> None:
        self._execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        if name in self.made:
            self.made.remove(name)

    def close(self) -> None:
        for name in list(reversed(self.made)):
            self.drop(name)
        self.engine.dispose()

    def _execute(self, statement: str) -> None:
        with self.engine.connect() as connection:
            connection.exec_driver_sql(statement)


@dataclass(frozen=True, slots=True)
class World:
    """What the seed database holds: the role and who may activate it."""

    target: Target
    warm_up_target: Target
    users: tuple[str, ...]
    warm_up_users: tuple[str, ...]
    seconds: float
    writes: int


def build_world(url: str, count: int) -> World:
    """Users, two roles and an eligible assignment per user, through the use cases."""
    started = time.perf_counter()
    with Pimlico(Settings(database_url=url)) as rt:
        target = _role(rt, "Bench Reader")
        warm_up_target = _role(rt, "Bench Warm-up")
        users = tuple(_eligible_user(rt, f"bench-{i:06d}", target) for i in range(count))
        warm_up = tuple(_eligible_user(rt, f"warm-{i:03d}", warm_up_target) for i in range(WARM_UP))
        with rt.reading() as s:
            writes = s.scalar(select(PimStateRow.revision)) or 0
    return World(target, warm_up_target, users, warm_up, time.perf_counter() - started, writes)


def _role(rt: Pimlico, name: str) -> Target:
    role = roles.create_role(rt, actor=OPERATOR, name=name, permissions=["bench.read"]).value
    # No MFA (benchmark users have no second factor to verify) and no justification (they
    # would all give the same made-up one): the activation asks for nothing else.
    role_settings.update_policy(
        rt,
        actor=OPERATOR,
        target_type=TargetType.ROLE,
        object_id=role.id,
        changes={"activation": {"require_mfa": False, "require_justification": False}},
    )
    return Target(TargetType.ROLE, role.id, "/")


def _eligible_user(rt: Pimlico, name: str, target: Target) -> str:
    user = directory.create_user(rt, actor=OPERATOR, user_name=name).value
    assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ELIGIBLE,
        principal=PrincipalRef(PrincipalType.USER, user.id),
        target=target,
        duration=timedelta(days=30),
    )
    return user.id


# -- activating -----------------------------------------------------------------------------


def activate(rt: Pimlico, user_id: str, target: Target) -> None:
    view = requests.submit(
        rt,
        actor=Actor.principal(user_id),
        action=RequestAction.SELF_ACTIVATE,
        kind=AssignmentKind.ACTIVE,
        target=target,
        schedule=SCHEDULE,
    ).value
    if view.request.status is not RequestStatus.PROVISIONED:
        raise RuntimeError(f"activation of {user_id} ended {view.request.status.value}")


@dataclass(slots=True)
class Run:
    """One timed run: activations spread over ``threads`` threads sharing one runtime."""

    threads: int
    latencies: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    connects: int = 0
    load: float = 0.0
    writes: int = 0
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    @property
    def sample(self) -> Sample:
        return Sample(self.latencies, [True] * len(self.latencies))


def timed_run(rt: Pimlico, world: World, threads: int) -> Run:
    """Every user of ``world`` activates once, the users dealt round-robin to the threads,
    which start together; each call is timed on its own."""
    for user_id in world.warm_up_users:
        activate(rt, user_id, world.warm_up_target)
    run = Run(threads)
    start = threading.Barrier(threads + 1)
    lock = threading.Lock()
    clock = time.perf_counter_ns

    def work(users: Sequence[str]) -> None:
        mine: list[int] = []
        failed: list[str] = []
        start.wait()
        for user_id in users:
            began = clock()
            try:
                activate(rt, user_id, world.target)
            except Exception as exc:  # reported and counted, never hidden
                failed.append(f"{type(exc).__name__}: {exc}")
                continue
            mine.append(clock() - began)
        with lock:
            run.latencies.extend(mine)
            run.errors.extend(failed)

    workers = [
        threading.Thread(target=work, args=(world.users[i::threads],)) for i in range(threads)
    ]
    connects = [0]

    def on_connect(*_args: Any) -> None:
        connects[0] += 1

    event.listen(rt.engine.pool, "connect", on_connect)
    run.load = os.getloadavg()[0]
    for worker in workers:
        worker.start()
    start.wait()
    began, cpu = time.perf_counter(), time.process_time()
    for worker in workers:
        worker.join()
    run.seconds = time.perf_counter() - began
    run.cpu_seconds = time.process_time() - cpu
    event.remove(rt.engine.pool, "connect", on_connect)
    run.connects = connects[0]
    writes, run.checks = verify(rt, world, seed_revision=world.writes)
    run.writes = writes - len(world.warm_up_users)  # each warm-up one ran alone, in a row
    return run


def verify(rt: Pimlico, world: World, *, seed_revision: int) -> tuple[int, dict[str, bool]]:
    """The writes the run made, and what must hold after it: one active assignment per user,
    at most one write per activation (activations arriving together share one), revisions
    gap-free and each audited, and an intact audit chain."""
    expected = len(world.users) + len(world.warm_up_users)
    with rt.reading() as s:
        active = s.scalar(
            select(func.count())
            .select_from(AssignmentRow)
            .where(
                AssignmentRow.kind == AssignmentKind.ACTIVE.value,
                AssignmentRow.target_id == world.target.object_id,
                AssignmentRow.ended_at.is_(None),
            )
        )
        provisioned = s.scalar(
            select(func.count())
            .select_from(RequestRow)
            .where(
                RequestRow.action == RequestAction.SELF_ACTIVATE.value,
                RequestRow.status == RequestStatus.PROVISIONED.value,
            )
        )
        revision = s.scalar(select(PimStateRow.revision))
        written = s.scalar(
            select(func.count(func.distinct(AuditEventRow.revision))).where(
                AuditEventRow.revision > seed_revision
            )
        )
        broken = audit.verify(s)
    writes = (revision or 0) - seed_revision
    return writes, {
        f"{len(world.users):,} active assignments of the role": active == len(world.users),
        f"{expected:,} activation requests provisioned (warm-up included)": (
            provisioned == expected
        ),
        f"revisions gap-free, each write audited, at most {expected:,} writes": (
            written == writes and 0 < writes <= expected
        ),
        "audit chain verifies": broken is None,
    }


# -- statements and profile -----------------------------------------------------------------


@dataclass(slots=True)
class Counts:
    """What the database saw during the sampled activations, and how long the lock was held.

    Round trips are statements, ``BEGIN``s, ``COMMIT``s (or ``ROLLBACK``s) and the ping
    before each pool checkout (``pool_pre_ping``): psycopg sends each on its own.
    """

    activations: int = 0
    statements: int = 0
    transactions: int = 0
    checkouts: int = 0
    round_trips: int = 0
    in_write: int = 0
    round_trips_in_write: int = 0
    held_ns: list[int] = field(default_factory=list)
    by_statement: dict[str, int] = field(default_factory=dict)
    by_statement_in_write: dict[str, int] = field(default_factory=dict)


@contextmanager
def counting(*engines: Engine) -> Iterator[Counts]:
    """Count statements, transactions, checkouts and round trips on ``engines``, for one
    thread.

    A write holds the lock from its ``UPDATE pim_state`` until its connection is back in the
    pool after ``COMMIT``; whatever reaches the database meanwhile, on any connection (the
    decision index reads on its own), counts as inside the write lock.
    """
    counts = Counts()
    clock = time.perf_counter_ns
    locked_at: int | None = None

    def trip() -> None:
        counts.round_trips += 1
        if locked_at is not None:
            counts.round_trips_in_write += 1

    def on_execute(conn: Connection, _c: Any, statement: str, *_rest: Any) -> None:
        nonlocal locked_at
        counts.statements += 1
        key = _shape(statement)
        counts.by_statement[key] = counts.by_statement.get(key, 0) + 1
        if statement.startswith("UPDATE pim_state SET revision"):
            locked_at = clock()
            conn.info["bench_writer"] = True
        if locked_at is not None:
            counts.in_write += 1
            counts.by_statement_in_write[key] = counts.by_statement_in_write.get(key, 0) + 1
        trip()

    def on_begin(_conn: Connection) -> None:
        counts.transactions += 1
        trip()

    def on_end(_conn: Connection) -> None:
        trip()

    def on_checkout(*_args: Any) -> None:
        counts.checkouts += 1
        trip()

    def on_checkin(_dbapi_connection: Any, record: Any) -> None:
        # The session gives its connection back right after COMMIT (or ROLLBACK) returns.
        nonlocal locked_at
        if record.info.pop("bench_writer", False) and locked_at is not None:
            counts.held_ns.append(clock() - locked_at)
            locked_at = None

    listeners: list[tuple[Any, str, Any]] = []
    for engine in engines:
        listeners += [
            (engine, "before_cursor_execute", on_execute),
            (engine, "begin", on_begin),
            (engine, "commit", on_end),
            (engine, "rollback", on_end),
            (engine.pool, "checkout", on_checkout),
            (engine.pool, "checkin", on_checkin),
        ]
    for target, name, listener in listeners:
        event.listen(target, name, listener)
    try:
        yield counts
    finally:
        for target, name, listener in listeners:
            event.remove(target, name, listener)


def _shape(statement: str) -> str:
    """A statement's first words, enough to tell the statements apart in a table."""
    words = statement.split()
    if not words:
        return "?"
    verb = words[0].upper()
    upper = [w.upper() for w in words]
    if verb == "SELECT" and "FROM" in upper:
        table = words[upper.index("FROM") + 1]
        return " ".join(("SELECT … FROM", table, "FOR UPDATE" if "UPDATE" in upper else ""))
    return " ".join(words[:3] if verb != "UPDATE" else words[:4])


def statement_run(rt: Pimlico, world: World, profile: bool) -> tuple[Counts, float, str | None]:
    """Single-thread activations of the first ``STATEMENT_SAMPLE`` users, counted (and
    profiled, if asked) — a separate run, so the counting never slows a timed one."""
    for user_id in world.warm_up_users:
        activate(rt, user_id, world.warm_up_target)
    users = world.users[:STATEMENT_SAMPLE]
    profiler = cProfile.Profile() if profile else None
    with counting(rt.engine, rt.decisions.engine) as counts:
        began = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        for user_id in users:
            activate(rt, user_id, world.target)
        if profiler is not None:
            profiler.disable()
        seconds = time.perf_counter() - began
    counts.activations = len(users)
    report = None
    if profiler is not None:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("cumulative").print_stats(r"pimlico|sqlalchemy/orm/session", 30)
        stats.sort_stats("tottime").print_stats(25)
        report = out.getvalue()
    return counts, seconds, report


# -- report ---------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    count = max(1, round(args.activations_count * args.scale))
    thread_counts = [int(t) for t in str(args.activations_threads).split(",") if t.strip()]
    console = Console(width=max(Console().width, 110))
    command = " ".join(["python -m bench", *sys.argv[1:]])
    console.rule(
        f"[bold]Activation benchmark[/] · {datetime.now(UTC):%Y-%m-%d} · "
        f"{count:,} activations per run"
    )
    console.print(f"machine: {machine()}\ncommand: uv run --group bench {command}")
    server = Server(args.activations_postgres_url)
    status = 0
    try:
        console.print(f"PostgreSQL: {_server_version(server)}")
        seed = server.create()
        seed_url = server.url_of(seed)
        migrate.upgrade(seed_url)
        world = build_world(seed_url, count)
        console.print(
            f"world, built through the use cases: {len(world.users):,} users each eligible "
            f"for one role (+{WARM_UP} warm-up users of another role), in {world.writes:,} "
            f"writes, {world.seconds:.1f} s ({world.writes / world.seconds:,.0f} writes/s)"
        )
        console.print(f"threads: {SHARED_RUNTIME}")
        runs = []
        for threads in thread_counts:
            with _copy(server, seed) as url, Pimlico(Settings(database_url=url)) as rt:
                runs.append(timed_run(rt, world, threads))
        status = _print_runs(console, runs)
        with _copy(server, seed) as url, Pimlico(Settings(database_url=url)) as rt:
            counts, seconds, profile = statement_run(rt, world, args.activations_profile)
        _print_counts(console, counts, seconds)
        if profile is not None:
            console.print("[bold]cProfile[/], single thread, the same activations:")
            console.print(profile, markup=False, highlight=False)
    finally:
        server.close()
    return status


@contextmanager
def _copy(server: Server, seed: str) -> Iterator[str]:
    name = server.create(template=seed)
    try:
        yield server.url_of(name)
    finally:
        server.drop(name)


def _server_version(server: Server) -> str:
    with server.engine.connect() as connection:
        version = connection.exec_driver_sql("SHOW server_version").scalar_one()
        commit = connection.exec_driver_sql("SHOW synchronous_commit").scalar_one()
    return f"{version}, synchronous_commit={commit}"


def _print_runs(console: Console, runs: list[Run]) -> int:
    """The runs' throughput and latency tables; 1 if any activation failed or check broke."""
    table = Table(title="Activations through requests.submit", title_justify="left")
    for column in ("threads", "done", "failed", "wall", "activations/s", "target", ""):
        table.add_column(column, justify="right")
    for column in ("per write", "CPU each", "new conns", "load"):
        table.add_column(column, justify="right")
    latency = Table(title="Latency of one activation", title_justify="left")
    for column in ("threads", "p50", "p90", "p99", "max"):
        latency.add_column(column, justify="right")
    status = 0
    for r in runs:
        sound = not r.errors and all(r.checks.values())
        status = status or (0 if sound else 1)
        table.add_row(
            str(r.threads),
            f"{len(r.latencies):,}",
            f"{len(r.errors):,}",
            f"{r.seconds:.2f} s",
            f"{r.rate:,.0f}",
            f"≥ {TARGET:,.0f}",
            "[green]✓[/]" if sound and r.rate >= TARGET else "[red]✗[/]",
            f"{len(r.latencies) / max(r.writes, 1):.1f}",
            duration(r.cpu_seconds * 1e9 / max(len(r.latencies), 1)),
            f"{r.connects:,}",
            f"{r.load:.1f}",
        )
        figures = r.sample.percentiles(0.5, 0.9, 0.99, 1.0)
        latency.add_row(str(r.threads), *(duration(f) for f in figures))
    console.print(table)
    console.print(
        "per write: activations per write (concurrent ones share a write: group commit) · "
        "CPU each: this process's CPU time per activation; its threads share one GIL, so no "
        "run of one process goes faster than 1 / CPU each · new conns: connections the pool "
        "opened during the run · load: the machine's 1-minute load average as the run began"
    )
    console.print(latency)
    console.print(
        "each submit() timed alone, from the call to its return: the write, its commit and "
        "the index following it"
    )
    for r in runs:
        failed = [name for name, ok in r.checks.items() if not ok]
        verdict = "[green]all hold[/]" if not failed else f"[red]failed: {', '.join(failed)}[/]"
        console.print(f"checks after {r.threads} thread(s): {', '.join(r.checks)} → {verdict}")
        for error in sorted(set(r.errors))[:5]:
            console.print(f"[red]error[/] ({r.errors.count(error)} times): {error}", markup=False)
    return status


def _print_counts(console: Console, counts: Counts, seconds: float) -> None:
    n = counts.activations
    held = Sample(counts.held_ns, [True] * len(counts.held_ns))
    console.print(
        f"\n[bold]One activation[/], {n} in a row on one thread ({n / seconds:,.0f}/s while "
        f"counted): {counts.statements / n:.1f} statements in {counts.transactions / n:.1f} "
        f"transactions, {counts.checkouts / n:.1f} pool checkouts (each pinged first: "
        f"pool_pre_ping), {counts.round_trips / n:.1f} round trips; inside the write lock "
        f"{counts.in_write / n:.1f} statements, {counts.round_trips_in_write / n:.1f} round trips"
        " — not counting the COPY of each table a write fills (db.bulk: they go to the driver "
        "directly, past these counters)"
    )
    console.print(
        f"write lock held (UPDATE pim_state → connection back after COMMIT): p50 "
        f"{duration(held.p50)}, p99 {duration(held.p99)} → at most "
        f"{1e9 / max(held.p50, 1):,.0f} writes/s, however many threads or processes"
    )
    table = Table(title="Statements per activation", title_justify="left")
    for column in ("statement", "all", "inside the write lock"):
        table.add_column(column, justify="right" if column != "statement" else "left")
    for shape, number in sorted(counts.by_statement.items(), key=lambda kv: -kv[1]):
        inside = counts.by_statement_in_write.get(shape, 0)
        table.add_row(shape, f"{number / n:.2f}", f"{inside / n:.2f}" if inside else "")
    console.print(table)
