"""The ``check``-over-HTTP benchmark: requests/s and latency of ``POST /api/v1/decisions/check``
under concurrency, side by side, in the same run and the same server process, with a bare
route of the same stack that returns a constant (``bench.http_server``).

This module owns the store it seeds (a temporary SQLite file: ``check`` answers from the
in-memory index, and its token is read from the store at most every ``token_cache_seconds``),
the server process, and the load: ``wrk`` (one client thread on the other core, keep-alive
connections, its own latency percentiles), because a Python client would be slower than the
server it measures. The question asked is a policy point's: a service account with a token
scoped to ``pim.decisions.read`` asks whether a user holds a permission (allowed, through a
group) at a scope.

Each connection count is measured twice: saturated (every connection asks again the moment
it is answered, so the server never rests and latency is mostly the queue: connections /
throughput) and paced (``--http-paced-ms``: each connection pauses after an answer for a
random time of that mean, a load the server keeps up with, where latency is what a caller
waits). The ratio to the bare route
is judged saturated, p99 paced.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from bench import machine
from bench.http_server import CONSTANT_PATH
from pimlico.db import migrate
from pimlico.domain.catalogue import SECURITY_READER
from pimlico.domain.model import AssignmentKind, PrincipalRef, PrincipalType, Target
from pimlico.services import accounts, assignments, directory, role_settings, roles
from pimlico.services.runtime import Actor, Pimlico
from pimlico.settings import Settings

NAME = "http-check"
TARGET_RATIO = 0.70
TARGET_P99_MS = 10.0
CHECK_PATH = "/api/v1/decisions/check"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("http-check")
    group.add_argument(
        "--http-connections",
        type=int,
        action="append",
        help="concurrent keep-alive connections (repeatable; default 8 and 64)",
    )
    group.add_argument(
        "--http-seconds", type=float, default=5.0, help="length of each measured run"
    )
    group.add_argument(
        "--http-rounds",
        type=int,
        default=4,
        help="measured runs of each endpoint per connection count, bare and check alternating",
    )
    group.add_argument(
        "--http-paced-ms",
        type=int,
        default=20,
        help="paced runs too: each connection's mean pause between requests (0: none)",
    )


@dataclass(frozen=True, slots=True)
class Load:
    endpoint: str
    connections: int
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    cpu_us: float = 0.0
    """The server process's CPU time per request (user and system, from ``/proc``)."""
    paced_ms: int = 0
    """Each connection's pause between requests (0: none, the server saturated)."""


def run(args: argparse.Namespace) -> int:
    console = Console(width=max(Console().width, 130))
    console.rule(f"check over HTTP · {time.strftime('%Y-%m-%d')}")
    console.print(f"machine: {machine()}")
    wrk = shutil.which("wrk")
    if wrk is None:
        console.print("[red]wrk is not installed[/]: apt-get install -y wrk (Debian)")
        return 1
    connections = args.http_connections or [8, 64]
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        bearer, body = _seed(url)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "bench.http_server", url, str(port)],
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_ready(base)
            answer = httpx.post(
                base + CHECK_PATH, content=body, headers=_headers(bearer), timeout=10
            )
            answer.raise_for_status()
            console.print(f"question: {body} → allowed={answer.json()['allowed']}")
            loads = []
            endpoints = [("bare", CONSTANT_PATH), ("check", CHECK_PATH)]
            paces = [0] + ([args.http_paced_ms] if args.http_paced_ms > 0 else [])
            for n in connections:
                for _, path in endpoints:
                    _wrk(wrk, base + path, bearer, body, n, 2.0, tmp)  # warm-up
                # Alternating, and in the opposite order every other round, so that a machine
                # whose speed drifts (a shared VM's does, by tens of per cent within minutes)
                # slows both endpoints alike rather than the one measured later.
                for paced in paces:
                    for round_ in range(args.http_rounds):
                        for endpoint, path in endpoints if round_ % 2 == 0 else endpoints[::-1]:
                            cpu = _cpu_seconds(server.pid)
                            output = _wrk(
                                wrk, base + path, bearer, body, n, args.http_seconds, tmp, paced
                            )
                            load = _parse(endpoint, n, output)
                            used = _cpu_seconds(server.pid) - cpu
                            cpu_us = used / load.requests * 1e6
                            loads.append(replace(load, cpu_us=cpu_us, paced_ms=paced))
        finally:
            server.terminate()
            server.wait(timeout=10)
    return _report(console, loads, args.http_seconds, args.http_rounds)


def _seed(url: str) -> tuple[str, str]:
    """A user who holds a role through a group, and a service account's scoped token."""
    migrate.upgrade(url)
    operator = Actor.operator("bench")
    with Pimlico(Settings(database_url=url)) as rt:
        alex = directory.create_user(rt, actor=operator, user_name="alex").value
        group = directory.create_group(
            rt, actor=operator, name="mail admins", role_assignable=True
        ).value
        directory.add_member(
            rt, actor=operator, group_id=group.id, member=PrincipalRef(PrincipalType.USER, alex.id)
        )
        role = roles.create_role(
            rt, actor=operator, name="Mail purger", permissions=["mail.purge", "mail.read"]
        ).value
        role_settings.update_policy(
            rt,
            actor=operator,
            target_type=Target.role(role.id).type,
            object_id=role.id,
            changes={"assignment": {"allow_permanent_active": True}},
        )
        assignments.assign(
            rt,
            actor=operator,
            kind=AssignmentKind.ACTIVE,
            principal=PrincipalRef(PrincipalType.GROUP, group.id),
            target=Target.role(role.id, "/apps/mail"),
            justification="bench",
        )
        app = directory.create_service_account(rt, actor=operator, name="mail-console").value
        issued = accounts.issue_token(
            rt,
            actor=operator,
            name="policy point",
            scopes=["pim.decisions.read"],
            lifetime=timedelta(days=1),
            service_account_id=app.id,
        )
        # The service account may ask about others: Security Reader at / for 30 days.
        assignments.assign(
            rt,
            actor=operator,
            kind=AssignmentKind.ACTIVE,
            principal=PrincipalRef(PrincipalType.SERVICE_ACCOUNT, app.id),
            target=Target.role(SECURITY_READER.id),
            duration=timedelta(days=30),
            justification="bench",
        )
    body = f'{{"principal_id":"{alex.id}","permission":"mail.purge","scope":"/apps/mail/finance"}}'
    return issued.bearer, body


def _headers(bearer: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_ready(base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the server did not become ready in 60 s")


def _wrk(
    wrk: str,
    url: str,
    bearer: str,
    body: str,
    connections: int,
    seconds: float,
    tmp: str,
    paced_ms: int = 0,
) -> str:
    script = Path(tmp) / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = [[{body}]]\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {bearer}"\n'
        # wrk's hook: each connection waits after an answer before asking again, a random
        # pause (exponential, of mean ``paced_ms``: independent callers, whose requests
        # arrive as a Poisson stream; fixed pauses would keep the connections in step and
        # send every request in bursts of all of them).
        + (
            f"function delay() return -{paced_ms} * math.log(1 - math.random()) end\n"
            if paced_ms
            else ""
        )
    )
    done = subprocess.run(
        [
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{round(seconds)}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


def _parse(endpoint: str, connections: int, output: str) -> Load:
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    percentiles = dict(re.findall(r"^\s+(\d+)%\s+([\d.]+\w+)", output, re.MULTILINE))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    requests = re.search(r"(\d+) requests in", output)
    return Load(
        endpoint,
        connections,
        rate,
        _ms(percentiles["50"]),
        _ms(percentiles["99"]),
        int(errors.group(1)) if errors else 0,
        int(requests.group(1)),  # type: ignore[union-attr]
    )


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _report(console: Console, loads: list[Load], seconds: float, rounds: int) -> int:
    saturated = [x for x in loads if not x.paced_ms]
    paced = [x for x in loads if x.paced_ms]
    title = "POST check vs POST bare constant, same server process"
    met = _table(console, saturated, title, ratio=True, p99=not paced)
    if paced:
        title = (
            f"The same, paced: each connection pauses {paced[0].paced_ms} ms on average "
            "(exponential) after an answer"
        )
        met = _table(console, paced, title, ratio=False, p99=True) and met
    console.print(
        f"wrk, 1 thread, keep-alive; {rounds} runs of {seconds:g} s per endpoint, connection "
        "count and pace, bare and check alternating (after a 2 s warm-up each); requests/s: "
        "the mean of the runs; one uvicorn process (uvloop, httptools), no worker. Saturated, "
        "every connection asks again at once, so latency there is mostly queueing (connections "
        "/ throughput); paced runs show what a caller waits at a load the server keeps up "
        f"with. Targets: check ≥ {TARGET_RATIO:.0%} of bare requests/s (saturated) and p99 ≤ "
        f"{TARGET_P99_MS:g} ms ({'paced' if paced else 'saturated'}), at every connection "
        f"count → {'met' if met else 'not met'}"
    )
    return 0


def _table(console: Console, loads: list[Load], title: str, *, ratio: bool, p99: bool) -> bool:
    """Print ``loads`` (of one pace) as a table; whether ``check`` meets the targets asked
    of them (``ratio``: ≥ 70 % of bare; ``p99``: ≤ 10 ms), at every connection count."""
    table = Table(title=title)
    for column in (
        "endpoint",
        "connections",
        "requests/s",
        "p50",
        "p99 (median of rounds; worst)",
        "non-2xx",
        "server CPU/request",
        "vs bare (mean; rounds)",
    ):
        table.add_column(column, justify="right")
    met = True
    for n in dict.fromkeys(load.connections for load in loads):
        runs = {
            endpoint: [x for x in loads if x.connections == n and x.endpoint == endpoint]
            for endpoint in ("bare", "check")
        }
        bare_rate = statistics.mean(x.rate for x in runs["bare"])
        for endpoint, measured in runs.items():
            rate = statistics.mean(x.rate for x in measured)
            p99_ms = statistics.median(x.p99_ms for x in measured)
            errors = sum(x.errors for x in measured)
            verdict = p99_verdict = ""
            if endpoint == "check":
                share = rate / bare_rate
                paired = [c.rate / b.rate for b, c in zip(runs["bare"], measured, strict=True)]
                ratio_ok, p99_ok = share >= TARGET_RATIO, p99_ms <= TARGET_P99_MS
                met = met and errors == 0 and (ratio_ok or not ratio) and (p99_ok or not p99)
                mark = (" ✓" if ratio_ok else " ✗") if ratio else ""
                verdict = f"{share:.0%}{mark}; {min(paired):.0%}-{max(paired):.0%}"
                p99_verdict = (" ✓" if p99_ok else " ✗") if p99 else ""
            table.add_row(
                endpoint,
                str(n),
                f"{rate:,.0f}",
                f"{statistics.median(x.p50_ms for x in measured):.2f} ms",
                f"{p99_ms:.2f}; {max(x.p99_ms for x in measured):.2f} ms{p99_verdict}",
                str(errors),
                f"{statistics.mean(x.cpu_us for x in measured):.0f} µs",
                verdict,
            )
    console.print(table)
    return met
