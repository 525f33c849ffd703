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
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
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
        "--http-seconds", type=float, default=10.0, help="length of each measured run"
    )


@dataclass(frozen=True, slots=True)
class Load:
    endpoint: str
    connections: int
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int


def run(args: argparse.Namespace) -> int:
    console = Console()
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
            for n in connections:
                for endpoint, path in (("bare", CONSTANT_PATH), ("check", CHECK_PATH)):
                    _wrk(wrk, base + path, bearer, body, n, 2.0, tmp)  # warm-up
                    loads.append(
                        _parse(
                            endpoint,
                            n,
                            _wrk(wrk, base + path, bearer, body, n, args.http_seconds, tmp),
                        )
                    )
        finally:
            server.terminate()
            server.wait(timeout=10)
    return _report(console, loads, args.http_seconds)


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
    wrk: str, url: str, bearer: str, body: str, connections: int, seconds: float, tmp: str
) -> str:
    script = Path(tmp) / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = [[{body}]]\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {bearer}"\n'
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
    return Load(
        endpoint,
        connections,
        rate,
        _ms(percentiles["50"]),
        _ms(percentiles["99"]),
        int(errors.group(1)) if errors else 0,
    )


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _report(console: Console, loads: list[Load], seconds: float) -> int:
    table = Table(title="POST check vs POST bare constant, same server process")
    for column in ("endpoint", "connections", "requests/s", "p50", "p99", "non-2xx", "vs bare"):
        table.add_column(column, justify="right")
    bare = {load.connections: load.rate for load in loads if load.endpoint == "bare"}
    met = True
    for load in loads:
        ratio = load.rate / bare[load.connections]
        verdict = ""
        if load.endpoint == "check":
            ok = ratio >= TARGET_RATIO and load.p99_ms <= TARGET_P99_MS and load.errors == 0
            met = met and ok
            verdict = f"{ratio:.0%} {'✓' if ok else '✗'}"
        table.add_row(
            load.endpoint,
            str(load.connections),
            f"{load.rate:,.0f}",
            f"{load.p50_ms:.2f} ms",
            f"{load.p99_ms:.2f} ms",
            str(load.errors),
            verdict,
        )
    console.print(table)
    console.print(
        f"wrk, 1 thread, keep-alive, {seconds:g} s per run after a 2 s warm-up; one uvicorn "
        f"process (uvloop, httptools), no worker; targets: check ≥ {TARGET_RATIO:.0%} of bare "
        f"requests/s and p99 ≤ {TARGET_P99_MS:g} ms → {'met' if met else 'not met'}"
    )
    return 0
