"""The decision benchmark: Pimlico's index build, memory and latency, then the same questions
put to pycasbin and cedarpy on the same data, printed as tables.

This module owns the measurements, the issue's targets and the peers' limits. It feeds the
engine only the generated rows and never reads its private state; what the peers are told
lives in ``bench.peers``, the data in ``bench.datagen``. Timing thresholds live here, never
in tests.

``python -m bench.decisions --probe SCALE SEED`` is ``memory_probe``'s child process: it
builds the index in a fresh interpreter, streamed from the generator, and reports peak RSS.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bench import (
    Sample,
    current_rss,
    duration,
    machine,
    peak_rss,
    physical_memory,
    size,
    timed,
    timer_overhead,
)
from bench.datagen import (
    NOW,
    NOW_TS,
    AssignmentRow,
    MembershipRow,
    PrincipalRow,
    Question,
    RoleRow,
    Sizes,
    Synthetic,
    World,
    directory_of,
    world,
)
from bench.peers import Peer, Snapshot, all_peers, available, snapshot
from pimlico.domain.decisions import Decision, DecisionIndex

NAME = "decisions"
MAX_DEPTH = 8
"""Pimlico's default ``max_nesting_depth``; generated chains are at most 5 links long."""
TARGETS = {"p50": 2_000, "p99": 20_000, "build": 15.0, "memory": 1.5e9}
"""The issue's targets: latencies in ns, build in s, peak memory in bytes."""
RUNGS = (0.01, 0.1)
"""Scales below the main one at which the peers are tried, smallest first."""
PEER_LOAD_LIMIT_S = 300.0
PEER_P50_LIMIT_NS = 10_000_000
PROBE_QUESTIONS = 50
"""Questions a peer answers first at a new size; over the p50 limit it stops there."""
REFERENCE_QUESTIONS = 300
REPEAT_QUESTIONS = 20_000
"""Questions asked twice in a row for the in-cache figure (the first ones of the run)."""
TIMES = "\N{MULTIPLICATION SIGN}"


@dataclass(frozen=True, slots=True)
class PeerRun:
    """One peer at one size: measured, too slow (measured on a probe), or skipped (projected)."""

    peer: str
    scale: float
    status: str  # "ok", "too slow", "skipped"
    reason: str = ""
    load_seconds: float = 0.0
    rss_growth: int | None = None
    sample: Sample | None = None
    pimlico: Sample | None = None
    disagreements: tuple[tuple[Question, bool, bool], ...] = ()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=7, help="data and question seed")
    parser.add_argument("--questions", type=int, default=200_000, help="questions for Pimlico")
    parser.add_argument("--peer-questions", type=int, default=5_000, help="questions per peer")
    parser.add_argument("--no-peers", action="store_true", help="skip casbin and cedar")


# -- Pimlico ------------------------------------------------------------------------------


def feed(
    index: DecisionIndex,
    principals: Iterable[PrincipalRow],
    groups: Iterable[str],
    roles: Iterable[RoleRow],
    memberships: Iterable[MembershipRow],
    assignments: Iterable[AssignmentRow],
) -> None:
    """Everything into ``index`` inside one ``bulk()`` block (closures computed on exit)."""
    with index.bulk():
        for principal_id, enabled in principals:
            index.put_principal(principal_id, enabled=enabled)
        for group_id in groups:
            index.put_group(group_id)
        for role_id, patterns in roles:
            index.put_role(role_id, patterns)
        for mid, group_id, member_id, relation, start, end in memberships:
            index.put_membership(
                mid, group_id=group_id, member_id=member_id, relation=relation, start=start, end=end
            )
        for aid, kind, principal_id, target_type, target_id, scope, start, end in assignments:
            index.put_assignment(
                aid,
                kind=kind,
                principal_id=principal_id,
                target_type=target_type,
                target_id=target_id,
                scope=scope,
                start=start,
                end=end,
            )


def build(w: World, *, native: bool = True) -> tuple[DecisionIndex, float]:
    """The index of ``w``, fed from rows already in memory, and the seconds that took."""
    index = DecisionIndex(max_depth=MAX_DEPTH, native=native)
    started = time.perf_counter()
    feed(index, w.principals, w.data.groups, w.data.roles, w.memberships, w.assignments)
    return index, time.perf_counter() - started


def pimlico_sample(index: DecisionIndex, questions: Sequence[Question], overhead: int) -> Sample:
    """Each question timed alone, after one untimed pass over all of them."""
    decide = index.decide
    for principal_id, permission, scope, at in questions:
        decide(principal_id, permission, scope, at)
    return timed(decide, questions, _allowed, overhead)


def repeat_sample(index: DecisionIndex, questions: Sequence[Question], overhead: int) -> Sample:
    """Each question asked twice in a row, the second time timed. Its principal's data is then
    in the CPU caches: the decision's own work, without the memory misses that a question
    about a principal not asked about lately pays (most of ``pimlico_sample`` at full size)."""
    twice = [q for q in questions for _ in range(2)]
    sample = timed(index.decide, twice, _allowed, overhead)
    return Sample(sample.latencies[1::2], sample.answers[1::2])


def pure_sample(w: World, overhead: int) -> tuple[Sample, float]:
    """The same questions asked of the pure-Python engine (what an installation without a C
    compiler gets), on an index of its own built from the same rows; and its build time."""
    index, seconds = build(w, native=False)
    sample = pimlico_sample(index, w.questions, overhead)
    del index
    gc.collect()
    return sample, seconds


def throughput(index: DecisionIndex, questions: Sequence[Question]) -> float:
    """Decisions per second in a tight loop (no timer around each call)."""
    decide = index.decide
    started = time.perf_counter()
    for principal_id, permission, scope, at in questions:
        decide(principal_id, permission, scope, at)
    return len(questions) / (time.perf_counter() - started)


def _allowed(decision: Decision) -> bool:
    return decision.allowed


def memory_probe(scale: float, seed: int) -> dict[str, float]:
    """Build the index in a fresh interpreter, streamed from the generator (no rows kept)."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.decisions", "--probe", str(scale), str(seed)],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        check=True,
    )
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def _probe(scale: float, seed: int) -> None:
    baseline = peak_rss()
    data = Synthetic(Sizes.at(scale), seed)
    index = DecisionIndex(max_depth=MAX_DEPTH)
    started = time.perf_counter()
    rows = data.principal_rows(), data.role_rows(), data.membership_rows(), data.assignment_rows()
    feed(index, rows[0], data.groups, rows[1], rows[2], rows[3])
    seconds = time.perf_counter() - started
    print(json.dumps({"baseline": baseline, "peak": peak_rss(), "seconds": seconds}))


def reference_check(w: World, index: DecisionIndex, count: int) -> tuple[int, int]:
    """Disagreements with the naive evaluator of ``tests/reference.py``, out of ``count``."""
    from tests.reference import reference_decide

    directory = directory_of(w)
    asked = w.questions[:count]
    wrong = sum(
        reference_decide(directory, *q, MAX_DEPTH) != index.decide(*q).allowed for q in asked
    )
    return wrong, len(asked)


# -- peers --------------------------------------------------------------------------------


def peer_runs(
    main: World, main_index: DecisionIndex, args: argparse.Namespace, overhead: int
) -> tuple[list[PeerRun], tuple[int, int, float]]:
    """Each peer at growing sizes up to the main one, until it is, or would be, too slow."""
    rungs = [r for r in RUNGS if r < args.scale] + [args.scale]
    last_ok: dict[str, PeerRun] = {}
    stopped: set[str] = set()
    runs: list[PeerRun] = []
    reference: tuple[int, int, float] | None = None
    for rung in rungs:
        if rung == args.scale:
            w, index = main, main_index
        else:
            w = world(rung, seed=args.seed, question_count=args.peer_questions)
            index, _ = build(w)
        if reference is None:
            reference = (*reference_check(w, index, REFERENCE_QUESTIONS), rung)
        asked = w.questions[: args.peer_questions]
        pimlico = pimlico_sample(index, asked, overhead)
        snap = snapshot(
            w.principals, w.data.groups, w.data.roles, w.memberships, w.assignments, NOW_TS
        )
        scopes = sorted({q[2] for q in asked})
        for peer in all_peers():
            if peer.name in stopped:
                continue
            previous = last_ok.get(peer.name)
            reason = "" if previous is None else _projected_over(previous, rung)
            if reason:
                runs.append(PeerRun(peer.name, rung, "skipped", reason))
                stopped.add(peer.name)
                continue
            run = _measure(peer, snap, scopes, asked, pimlico, rung, overhead)
            runs.append(run)
            if run.status == "ok":
                last_ok[peer.name] = run
            else:
                stopped.add(peer.name)
            del peer
            gc.collect()
    assert reference is not None
    return runs, reference


def _measure(
    peer: Peer,
    snap: Snapshot,
    scopes: list[str],
    asked: list[Question],
    pimlico: Sample,
    rung: float,
    overhead: int,
) -> PeerRun:
    before = current_rss()
    started = time.perf_counter()
    peer.load(snap, scopes)
    load = time.perf_counter() - started
    after = current_rss()
    growth = None if before is None or after is None else after - before

    def ask(user: str, permission: str, scope: str, _at: object) -> bool:
        return peer.allowed(user, permission, scope)

    probe = timed(ask, asked[:PROBE_QUESTIONS], bool, overhead)
    if probe.p50 > PEER_P50_LIMIT_NS:
        reason = (
            f"measured p50 {duration(probe.p50)} on {len(probe.answers)} questions "
            f"(limit {duration(PEER_P50_LIMIT_NS)})"
        )
        wrong = _disagreements(asked, pimlico, probe)
        return PeerRun(peer.name, rung, "too slow", reason, load, growth, probe, None, wrong)
    sample = timed(ask, asked, bool, overhead)
    wrong = _disagreements(asked, pimlico, sample)
    return PeerRun(peer.name, rung, "ok", "", load, growth, sample, pimlico, wrong)


def _disagreements(
    asked: list[Question], pimlico: Sample, peer: Sample
) -> tuple[tuple[Question, bool, bool], ...]:
    """(question, Pimlico's answer, the peer's) wherever they differ."""
    return tuple(
        (q, ours, theirs)
        for q, ours, theirs in zip(asked, pimlico.answers, peer.answers, strict=False)
        if ours != theirs
    )


def _projected_over(previous: PeerRun, rung: float) -> str:
    """Why the next size would exceed a limit (load time or half the RAM), or ``""``."""
    factor = rung / previous.scale
    load = previous.load_seconds * factor
    memory = (previous.rss_growth or 0) * factor
    limit = physical_memory() // 2
    if load <= PEER_LOAD_LIMIT_S and memory <= limit:
        return ""
    return (
        f"projected linearly from scale {previous.scale:g}: load {load:.0f} s "
        f"(limit {PEER_LOAD_LIMIT_S:.0f} s), memory {size(memory)} (limit {size(limit)})"
    )


# -- report -------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    console = Console(width=max(Console().width, 110))
    command = " ".join(["python -m bench", *sys.argv[1:]])
    console.rule(
        f"[bold]Decision benchmark[/] · {datetime.now(UTC):%Y-%m-%d} · scale {args.scale:g}"
    )
    console.print(f"machine: {machine()}\ncommand: uv run --group bench {command}")
    memory = memory_probe(args.scale, args.seed)  # first, while this process is small
    main = world(args.scale, seed=args.seed, question_count=args.questions)
    _print_data(console, main)
    index, build_seconds = build(main)
    overhead = timer_overhead()
    sample = pimlico_sample(index, main.questions, overhead)
    repeat = repeat_sample(index, main.questions[:REPEAT_QUESTIONS], overhead)
    rate = throughput(index, main.questions)
    pure = pure_sample(main, overhead) if index.native else None
    _print_pimlico(console, build_seconds, memory, sample, repeat, pure, overhead, rate)
    missing = None if args.no_peers else available()
    if args.no_peers or missing:
        console.print(f"[yellow]peers skipped[/]: {missing or '--no-peers'}")
        return 0
    runs, reference = peer_runs(main, index, args, overhead)
    _print_peers(console, runs, reference, args.scale)
    console.print(f"\nwhole run: {time.perf_counter() - started:.0f} s")
    return 0


def _print_data(console: Console, w: World) -> None:
    s = w.data.sizes
    levels = " / ".join(f"{hi - lo:,}" for lo, hi in w.data.levels)
    active = sum(1 for a in w.assignments if a[1] == "active")
    in_force = sum(1 for a in w.assignments if a[6] <= NOW_TS < a[7])
    members = sum(1 for m in w.memberships if m[3] == "member")
    table = Table(title="Generated directory (seeded)", show_header=False, title_justify="left")
    table.add_row("users", f"{s.users:,} ({sum(not e for _, e in w.principals):,} disabled)")
    table.add_row("groups", f"{s.groups:,} at nesting levels 1-5: {levels} (a DAG, depth ≤ 5)")
    table.add_row("roles", f"{s.roles:,} with 1-8 permission patterns each")
    table.add_row("memberships", f"{members:,} member, {len(w.memberships) - members:,} owner")
    table.add_row(
        "assignments",
        f"{len(w.assignments):,}: {active:,} active, {len(w.assignments) - active:,} eligible; "
        f"{in_force:,} in force at the question instant",
    )
    table.add_row("generated in", f"{w.generate_seconds:.1f} s (not part of the build)")
    table.add_row(
        "questions",
        f"{len(w.questions):,} at {NOW:%Y-%m-%d %H:%M} UTC, made in {w.question_seconds:.1f} s",
    )
    console.print(table)


def _verdict(value: float, target: float) -> str:
    return "[green]✓[/]" if value <= target else "[red]✗ over[/]"


def _print_pimlico(
    console: Console,
    build_seconds: float,
    memory: dict[str, float],
    sample: Sample,
    repeat: Sample,
    pure: tuple[Sample, float] | None,
    overhead: int,
    rate: float,
) -> None:
    p50, p99 = sample.p50, sample.p99
    console.print(
        "engine: the C path (pimlico.domain._decide)"
        if pure is not None
        else "engine: [yellow]pure Python[/] (pimlico.domain._decide was not built: no C compiler)"
    )
    table = Table(title="Pimlico decision index", title_justify="left")
    for column in ("measure", "value", "target", ""):
        table.add_column(column)
    build_row = ("index build: feed all rows inside bulk(), closures on exit", build_seconds)
    table.add_row(build_row[0], f"{build_seconds:.1f} s", "≤ 15 s", _verdict(*build_row[1:], 15))
    table.add_row(
        "peak RSS, fresh process, rows streamed from the generator",
        size(memory["peak"]),
        "≤ 1.5 GB",
        _verdict(memory["peak"], TARGETS["memory"]),
    )
    table.add_row(
        "  of which interpreter baseline before building",
        size(memory["baseline"]),
        "",
        f"index ≈ {size(memory['peak'] - memory['baseline'])}",
    )
    table.add_row("  that process's build, generation included", f"{memory['seconds']:.1f} s")
    table.add_row("decision p50", duration(p50), "≤ 2 µs", _verdict(p50, TARGETS["p50"]))
    table.add_row("decision p99", duration(p99), "≤ 20 µs", _verdict(p99, TARGETS["p99"]))
    console.print(table)
    latency = Table(title="Pimlico single-decision latency", title_justify="left")
    for column in ("questions", "n", "p50", "p90", "p99", "p99.9", "max"):
        latency.add_column(column, justify="right")
    for label, which in (("all", None), ("allowed", True), ("denied", False)):
        n = sum(1 for a in sample.answers if which in (None, a))
        figures = sample.percentiles(0.5, 0.9, 0.99, 0.999, 1.0, allowed=which)
        latency.add_row(label, f"{n:,}", *(duration(f) for f in figures))
    figures = repeat.percentiles(0.5, 0.9, 0.99, 0.999, 1.0)
    latency.add_row("asked again", f"{len(repeat.answers):,}", *(duration(f) for f in figures))
    if pure is not None:
        figures = pure[0].percentiles(0.5, 0.9, 0.99, 0.999, 1.0)
        latency.add_row("pure Python", f"{len(pure[0].answers):,}", *(duration(f) for f in figures))
    console.print(latency)
    console.print(
        f"'asked again': the first {len(repeat.answers):,} questions, each asked twice in a row "
        "and timed the second time, when its principal's data is in the CPU caches (not a "
        "target: the gap to 'all' is what memory misses cost)"
        + (
            f"; 'pure Python': the same questions asked of the pure-Python engine (what an "
            f"installation without a C compiler gets) on an index of its own, built from the "
            f"same rows in {pure[1]:.1f} s: p50 {pure[0].p50 / max(p50, 1):.1f} times the C path's"
            if pure is not None
            else ""
        )
    )
    console.print(
        f"each decide() call timed alone with perf_counter_ns after a warm-up pass; the timer's "
        f"own overhead, {overhead} ns, measured in this run and subtracted from every sample\n"
        f"allowed share {sample.allowed_share:.1%} · throughput {rate:,.0f} decisions/s "
        f"(tight loop, one core) · mean {duration(sum(sample.latencies) / len(sample.latencies))}"
    )


def _print_peers(
    console: Console, runs: list[PeerRun], reference: tuple[int, int, float], scale: float
) -> None:
    console.print(
        f"\n[bold]Peers[/]: same data, same questions, same instant. Peers have no time windows: "
        f"they are given the memberships and assignments in force at {NOW:%Y-%m-%d %H:%M} UTC "
        "(disabled users' left out)."
    )
    wrong, asked, at = reference
    console.print(
        f"reference evaluator (tests/reference.py) vs Pimlico at scale {at:g}: "
        f"{wrong} disagreements in {asked} questions"
    )
    console.print(_peer_table(runs))
    for r in runs:
        if r.status != "ok":
            console.print(
                f"[yellow]{r.peer} at scale {r.scale:g}: {r.status}[/]: {escape(r.reason)}"
            )
        for q, pimlico_says, peer_says in r.disagreements[:5]:
            console.print(
                f"[red]disagreement[/] {r.peer} {escape(str(q[:3]))}: pimlico {pimlico_says}, "
                f"{r.peer} {peer_says}"
            )
    names = sorted({r.peer for r in runs})
    for name in names:
        best = _largest_ok(runs, name)
        if best is None:
            console.print(f"[red]{name}: could not be compared at any size[/]")
            continue
        assert best.sample is not None
        assert best.pimlico is not None
        where = f"scale {best.scale:g}" + (
            ", the run's size" if best.scale == scale else ", the largest it handles"
        )
        for label, ours, theirs in (
            ("p50", best.pimlico.p50, best.sample.p50),
            ("p99", best.pimlico.p99, best.sample.p99),
        ):
            ratio = theirs / max(ours, 1)
            word = "faster" if ratio >= 1 else "slower"
            console.print(
                f"pimlico {label} {duration(ours)} vs {name} {label} {duration(theirs)} → "
                f"{ratio if ratio >= 1 else 1 / ratio:,.0f}{TIMES} {word}  ({where}, same "
                f"{len(best.sample.answers):,} questions)"
            )
    compared = [_largest_ok(runs, name) for name in names]
    faster = all(r is not None and _p50_ratio(r) > 1 for r in compared)
    console.print(
        "target 'faster than both peers' (p50, at the largest size each handles): "
        + _verdict(0 if faster else 1, 0)
    )
    for peer in all_peers():
        console.print(f"\n[bold]{peer.name}[/] adapter:")
        for note in peer.notes:
            console.print(f"  · {escape(note)}")


def _peer_table(runs: list[PeerRun]) -> Table:
    table = Table(title_justify="left")
    for column in ("engine", "scale", "status", "load", "RSS +", "p50", "p99", "agree"):
        table.add_column(column, justify="right")
    for r in runs:
        s = r.sample if r.status != "skipped" else None
        table.add_row(
            r.peer,
            f"{r.scale:g}",
            r.status,
            f"{r.load_seconds:.1f} s" if r.status != "skipped" else "",
            size(r.rss_growth) if r.rss_growth is not None and r.status != "skipped" else "",
            duration(s.p50) if s else "",
            duration(s.p99) if s else "",
            f"{len(s.answers) - len(r.disagreements):,}/{len(s.answers):,}" if s else "",
        )
    pimlico = {r.scale: r.pimlico for r in reversed(runs) if r.pimlico is not None}
    for rung, p in sorted(pimlico.items()):
        allowed = f"allowed {p.allowed_share:.0%}"
        table.add_row(
            "pimlico", f"{rung:g}", "ok", "", "", duration(p.p50), duration(p.p99), allowed
        )
    return table


def _largest_ok(runs: list[PeerRun], peer: str) -> PeerRun | None:
    ok = [r for r in runs if r.peer == peer and r.status == "ok"]
    return ok[-1] if ok else None


def _p50_ratio(r: PeerRun) -> float:
    assert r.sample is not None
    assert r.pimlico is not None
    return r.sample.p50 / max(r.pimlico.p50, 1)


if __name__ == "__main__" and sys.argv[1:2] == ["--probe"]:
    _probe(float(sys.argv[2]), int(sys.argv[3]))
