"""The revocation benchmark: end instant → revoked downstream, when N assignments end in the
same second, in PostgreSQL roles and in an LDAP group (slapd); and the time of one reconcile
pass over N managed memberships with drift injected by hand.

This module owns the options, the sequence of runs and the report; the runs themselves are
``bench.revocation_runs``, the downstream systems ``bench.revocation_downstream``, the world
(N users each active in one role until the same instant D, in a throwaway store)
``bench.worker_world``'s, built once per N and copied for each downstream. On each copy a
connector and a mapping of the role to one downstream object are made, and everything is
granted downstream and checked there before D.

The measured run is a real ``Worker`` and a real ``Dispatcher`` (reconcile only at start), in
threads of this process as ``pimlico worker`` runs them, on a clock at the wall clock's pace
shifted to before D. Once the dispatcher's start-up reconcile pass is over, the clock is
shifted to ``--revocation-lead`` seconds before D and both are woken; from then on nothing is
helped. Per assignment, two lags: *recorded* — the provisioning row's ``updated_at`` (the
store write that recorded the revocation) minus D; *seen* — the first poll of the downstream
system itself (every ``--revocation-poll`` seconds) in which the identity was no longer a
member, minus D (an upper bound: the poll's end). *All gone*: the poll that saw the object
empty.

Reconcile: on the copy granted as above (when the membership count is also a lag size, the
same copy, before its lag run; as of D - 1 h, no dispatcher running), 1 % of the members are
removed by hand downstream and as many accounts Pimlico knows nothing of are added; then
``jobs.reconcile.reconcile`` is timed end to end (listing, the decision index's holders,
resolving, the corrections, the audit write), three times, the drift injected again before
each; the downstream object is checked after each.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
from datetime import UTC, datetime

from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from bench import duration, machine
from bench.revocation_downstream import KINDS, downstream, why_missing
from bench.revocation_runs import (
    DRIFT,
    RECONCILE_RUNS,
    Lag,
    Reconciled,
    grant_all,
    lag,
    reconcile_runs,
)
from bench.worker_world import DEFAULT_POSTGRES_URL, build_world, database, why_unreachable
from pimlico.settings import Settings

NAME = "revocation"
KEY = "xq2P3q1pQmWcF0mJ5lD2c9y8tZr7aV4bN6hK3eS1uGo="
"""Seals the connectors' secrets in the throwaway stores (a benchmark's key, no secret)."""


def target_s(full_size: int) -> float:
    """The issue's target for a size (before ``--scale``): p99 ≤ 1 s up to 1,000, ≤ 5 s above."""
    return 1.0 if full_size <= 1000 else 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("revocation")
    group.add_argument(
        "--revocation-size",
        type=int,
        action="append",
        help="default 1000 and 10000 (times --scale)",
    )
    group.add_argument("--revocation-memberships", type=int, default=10_000, help="(times --scale)")
    group.add_argument(
        "--revocation-postgres-url",
        default=os.environ.get("PIMLICO_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="admin URL of the PostgreSQL server: the stores and the downstream roles",
    )
    group.add_argument("--revocation-store", choices=("PostgreSQL", "SQLite"), default="PostgreSQL")
    group.add_argument("--revocation-lead", type=float, default=2.0)
    group.add_argument("--revocation-poll", type=float, default=0.05)
    group.add_argument("--revocation-timeout", type=float, default=120.0)


def run(args: argparse.Namespace) -> int:
    console = Console(width=max(Console().width, 150))
    console.rule(f"[bold]Revocation lag and reconcile[/] · {datetime.now(UTC):%Y-%m-%d}")
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    console.print(
        f"machine: {machine()}\nload average (1/5/15 min) before the run: {load}\n"
        f"command: uv run --group bench python -m bench {' '.join(sys.argv[1:])}"
    )
    url, store = args.revocation_postgres_url, args.revocation_store
    unreachable = why_unreachable(url)
    if unreachable:
        console.print(
            f"[red]PostgreSQL unreachable[/] (stores and downstream roles): {unreachable}"
        )
        return 1
    kinds = []
    for kind in KINDS:
        missing = why_missing(kind)
        if missing:
            console.print(f"[yellow]{kind} skipped[/]: {missing}")
        else:
            kinds.append(kind)
    full_sizes = args.revocation_size or [1000, 10_000]
    sizes = {max(1, round(n * args.scale)): n for n in full_sizes}
    memberships = max(1, round(args.revocation_memberships * args.scale))
    lags: list[Lag] = []
    recs: list[Reconciled] = []
    for n in sorted({*sizes, memberships}):
        with database(store, url) as seed:
            world = build_world(store, seed, n)
            console.print(f"world of {n:,} assignments ending at D built in {world.seconds:.0f} s")
            users = [f"shift-{i}" for i in range(n)]
            drift = max(1, round(n * DRIFT))
            for kind in kinds:
                with (
                    database(store, url, like=seed) as copy,
                    downstream(kind, admin_url=url, users=users, extras=drift) as down,
                ):
                    settings = Settings(
                        database_url=copy, secret_key=SecretStr(KEY), reconcile_interval=0
                    )
                    expected = {down.identity(u) for u in users}
                    problem = grant_all(settings, world, down, kind, expected)
                    if n == memberships:
                        recs.append(reconcile_runs(settings, world, down, kind, expected, drift))
                        recs[-1].problems += [problem] if problem else []
                    if n in sizes:
                        lags.append(lag(settings, world, down, kind, expected, sizes[n], args))
                        lags[-1].problems += [problem] if problem else []
    _report(console, lags, recs, args, store)
    return 1 if any(x.problems for x in lags) or any(x.problems for x in recs) else 0


def _nearest(values: list[float], q: float) -> float | None:
    """The nearest-rank ``q`` percentile of ``values``, in seconds."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _pct(values: list[float], q: float) -> str:
    found = _nearest(values, q)
    return "-" if found is None else duration(found * 1e9)


def _report(
    console: Console, lags: list[Lag], recs: list[Reconciled], args: argparse.Namespace, store: str
) -> None:
    missed: list[str] = []
    table = Table(title="Revocation lag: end instant D → revoked downstream", title_justify="left")
    for column in ("downstream", "assignments", "recorded p50", "p99", "max"):
        table.add_column(column, justify="right")
    for column in ("seen p50", "p99", "max", "all gone", "poll", "target p99", ""):
        table.add_column(column, justify="right")
    for r in lags:
        target = target_s(r.full_size)
        seen_p99 = _nearest(r.seen, 0.99)
        ok = not r.problems and seen_p99 is not None and seen_p99 <= target
        missed += [] if ok else [f"{r.downstream} at {r.size:,}"]
        table.add_row(
            r.downstream,
            f"{r.size:,}",
            *(_pct(r.recorded, q) for q in (0.5, 0.99, 1.0)),
            *(_pct(r.seen, q) for q in (0.5, 0.99, 1.0)),
            "-" if r.all_gone is None else duration(r.all_gone * 1e9),
            duration(r.poll * 1e9),
            f"≤ {target:g} s",
            "[green]✓[/]" if ok else "[red]✗[/]",
        )
    console.print(table)
    console.print(
        f"store: {store}; a real Worker and Dispatcher (threads of one process), woken "
        f"{args.revocation_lead:g} s before D after the dispatcher's start-up reconcile; "
        "recorded: the provisioning row's updated_at - D; seen: first poll of the downstream "
        f"system (every {args.revocation_poll:g} s, its end) without the identity - D; poll: "
        "the median time one poll took; target (the issue's, at full size): p99 of seen ≤ 1 s "
        "up to 1,000 assignments, ≤ 5 s above"
    )
    verdict = "[green]met[/]" if lags and not missed else "[red]not met[/]"
    detail = f" ({', '.join(missed)})" if missed else ""
    console.print(f"target revocation lag: {verdict}{detail}")
    table = Table(
        title=f"Reconcile: one pass over the managed memberships, {RECONCILE_RUNS} runs",
        title_justify="left",
    )
    for column in ("downstream", "memberships", "drift", "runs", "median", "granted", "revoked"):
        table.add_column(column, justify="right")
    for c in recs:
        table.add_row(
            c.downstream,
            f"{c.memberships:,}",
            f"+{c.drift:,} / -{c.drift:,}",
            ", ".join(duration(s * 1e9) for s in c.seconds),
            duration(statistics.median(c.seconds) * 1e9) if c.seconds else "-",
            ", ".join(map(str, c.granted)),
            ", ".join(map(str, c.revoked)),
        )
    console.print(table)
    console.print(
        f"drift: before each run {DRIFT:.0%} of the members removed by hand downstream and as "
        "many accounts Pimlico does not know added; timed: jobs.reconcile.reconcile end to end "
        "(authoritative, corrections applied and audited), decision index already built"
    )
    problems = [(x.downstream, p) for x in lags for p in x.problems]
    problems += [(x.downstream, p) for x in recs for p in x.problems]
    for kind, problem in problems:
        console.print(f"[red]{kind}[/]: {problem}")
