"""The activation-over-HTTP benchmark: self-activations through ``POST /api/v1/requests`` on
PostgreSQL, end to end — HTTP, authentication, the request workflow, the commit and the
decision index following it — under concurrent connections.

This module owns its throwaway databases (``bench.activations.Server``: made, then dropped
whatever happens), the world (``bench.activations.build_world``: users each eligible for one
role that asks for no MFA or justification, plus a session token per user), the server
process (``bench.http_server``, one uvicorn process, no worker) and the load: ``wrk``, whose
Lua script gives each request the next user's token, so every request is a different user's
first activation. A run lasts shorter than the users last at the target rate; a request past
them would be refused (``RoleAssignmentExists``) and is counted as not done.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from bench import machine
from bench.activations import DEFAULT_URL, Server, build_world
from bench.http_check import free_port, wait_ready
from pimlico.db import migrate
from pimlico.db.tables import AssignmentRow
from pimlico.services import accounts
from pimlico.services.runtime import Actor, Pimlico
from pimlico.settings import Settings

NAME = "http-activations"
TARGET = 300.0
PATH = "/api/v1/requests"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("http-activations")
    group.add_argument("--http-activations-users", type=int, default=4000)
    group.add_argument("--http-activations-postgres-url", default=DEFAULT_URL)
    group.add_argument(
        "--http-activations-connections", type=int, action="append", help="default 16 and 64"
    )
    group.add_argument("--http-activations-seconds", type=float, default=4.0)


def run(args: argparse.Namespace) -> int:
    console = Console()
    console.rule(f"self-activation over HTTP, PostgreSQL · {time.strftime('%Y-%m-%d')}")
    console.print(f"machine: {machine()}")
    wrk = shutil.which("wrk")
    if wrk is None:
        console.print("[red]wrk is not installed[/]: apt-get install -y wrk (Debian)")
        return 1
    connections = args.http_activations_connections or [16, 64]
    count = args.http_activations_users
    server = Server(args.http_activations_postgres_url)
    rows = []
    try:
        seed = server.create()
        seed_url = server.url_of(seed)
        migrate.upgrade(seed_url)
        started = time.perf_counter()
        world = build_world(seed_url, count)
        tokens = _tokens(seed_url, world.users)
        console.print(
            f"world: {count:,} eligible users with a session token each, built in "
            f"{time.perf_counter() - started:.0f} s"
        )
        body = (
            f'{{"action":"self_activate","target":{{"type":"role",'
            f'"object_id":"{world.target.object_id}","scope":"/"}}}}'
        )
        for n in connections:
            name = server.create(template=seed)
            try:
                rows.append(_one_run(wrk, server.url_of(name), tokens, body, n, args))
            finally:
                server.drop(name)
    finally:
        server.close()
    table = Table(title="POST /api/v1/requests (self_activate), one uvicorn process")
    for column in (
        "connections",
        "requests",
        "activated",
        "refused",
        "activations/s",
        "p50",
        "p99",
        "target",
    ):
        table.add_column(column, justify="right")
    met = False
    for n, requests, activated, stored, rate, p50, p99 in rows:
        ok = rate >= TARGET and stored >= activated
        met = met or ok
        table.add_row(
            str(n),
            f"{requests:,}",
            f"{activated:,} (stored {stored:,})",
            f"{requests - activated:,}",
            f"{rate:,.0f}",
            p50,
            p99,
            f"≥ {TARGET:.0f} {'✓' if ok else '✗'}",
        )
    console.print(table)
    console.print(
        f"wrk, 1 thread, keep-alive, {args.http_activations_seconds:g} s per run on a fresh "
        "copy of the world; activated: 201 answers within the run; stored: activations in the "
        "store afterwards (at least as many: requests in flight when wrk stops still finish); "
        f"target ≥ {TARGET:.0f}/s → {'met' if met else 'not met'}"
    )
    return 0


def _tokens(url: str, users: tuple[str, ...]) -> list[str]:
    """A session token per user, made through the use case (as a sign-in would)."""
    with Pimlico(Settings(database_url=url)) as rt:
        return [
            accounts.issue_token(rt, actor=Actor.principal(user_id), name="bench").bearer
            for user_id in users
        ]


def _one_run(
    wrk: str, url: str, tokens: list[str], body: str, connections: int, args: argparse.Namespace
) -> tuple[int, int, int, int, float, str, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.http_server", url, str(port)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base)
        # Warm up: FastAPI builds a route's handling state on its first request (about 0.2 s
        # of CPU on this stack), which belongs to no steady state. An anonymous request is
        # refused (401) after routing, without touching the world.
        for _ in range(3):
            httpx.post(base + PATH, content=body, timeout=30)
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / "activate.lua"
            listed = ",\n".join(f'"{t}"' for t in tokens)
            script.write_text(
                f"tokens = {{\n{listed}\n}}\n"
                "counter = 0\n"
                f"body = [[{body}]]\n"
                "request = function()\n"
                "  counter = counter + 1\n"
                "  local token = tokens[((counter - 1) % #tokens) + 1]\n"
                f'  return wrk.format("POST", "{PATH}", '
                '{["Authorization"] = "Bearer " .. token, '
                '["Content-Type"] = "application/json"}, body)\n'
                "end\n"
            )
            seconds = round(args.http_activations_seconds)
            output = subprocess.run(
                [
                    wrk,
                    "-t1",
                    f"-c{connections}",
                    f"-d{seconds}s",
                    "--latency",
                    "-s",
                    str(script),
                    base,
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
    finally:
        process.terminate()
        process.wait(timeout=30)
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    refused_match = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    refused = int(refused_match.group(1)) if refused_match else 0
    percentiles = dict(re.findall(r"^\s+(\d+)%\s+([\d.]+\w+)", output, re.MULTILINE))
    with Pimlico(Settings(database_url=url)) as rt, rt.reading() as s:
        stored = (
            s.scalar(
                select(func.count()).where(
                    AssignmentRow.kind == "active", AssignmentRow.activated_from.is_not(None)
                )
            )
            or 0
        )
    activated = requests - refused
    return (
        connections,
        requests,
        activated,
        stored,
        activated / seconds,
        percentiles["50"],
        percentiles["99"],
    )
