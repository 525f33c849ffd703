"""``pimlico serve`` as it runs: real processes on free ports, HTTP through httpx, real time.

Each server is ``pimlico serve --port 0`` (it binds a free port and prints its URL) on a
migrated store; a test waits for the URL and for ``/readyz`` (generously: a cold start loads
the web stack), talks HTTP, and stops it with SIGTERM, which must end it with exit code 0.
What the servers are asked about is set up through the services of a runtime of the test's
own on the same database — a third process, as far as the servers can tell.
"""

from __future__ import annotations

import gc
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import select

from pimlico.api import warm
from pimlico.clock import as_utc
from pimlico.db.tables import JobRow
from pimlico.domain.catalogue import SECURITY_READER
from pimlico.domain.events import AssignmentActivated
from pimlico.domain.model import AssignmentKind, PrincipalRef, PrincipalType, Target, TargetType
from pimlico.jobs import events
from pimlico.services import accounts, assignments, directory, role_settings
from pimlico.services.assignment_events import START_JOB
from pimlico.services.runtime import Pimlico
from pimlico.settings import Settings
from tests.integration.world import OPERATOR, role

PIMLICO = Path(sys.executable).parent / "pimlico"
SECRET_KEY = Fernet.generate_key().decode()
PASSWORD = "correct horse battery staple"
READY_WITHIN = 180.0
"""Seconds a server has to print its URL and answer ``/readyz`` (a generous bound, not a
measurement: a loaded machine takes seconds just to import the web stack)."""
_URL = re.compile(r"serving on (http://\S+) ")


@dataclass
class Server:
    """A running ``pimlico serve`` and the files its output goes to."""

    process: subprocess.Popen[bytes]
    out: Path
    err: Path
    url: str = ""

    def output(self) -> tuple[str, str]:
        return self.out.read_text(), self.err.read_text()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_WITHIN
        while not self.url:
            self._alive(deadline)
            found = _URL.search(self.out.read_text())
            if found:
                self.url = found.group(1)
            else:
                time.sleep(0.1)
        while True:
            self._alive(deadline)
            try:
                if httpx.get(f"{self.url}/readyz", timeout=10).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def signed_in(self, user_name: str) -> httpx.Client:
        with self.client() as anonymous:
            answer = anonymous.post(
                "/api/v1/auth/sign-in", json={"user_name": user_name, "password": PASSWORD}
            )
        assert answer.status_code == 201, answer.text
        return self.client(answer.json()["token"])

    def stop(self) -> int:
        """SIGTERM; the exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=120)

    def _alive(self, deadline: float) -> None:
        code = self.process.poll()
        assert code is None, f"pimlico serve exited {code}: {self.output()}"
        assert time.monotonic() < deadline, f"pimlico serve not ready: {self.output()}"


@contextmanager
def serving(url: str, tmp_path: Path, *options: str) -> Iterator[Server]:
    """``pimlico serve --port 0 OPTIONS`` on the store at ``url``, ready; killed at the end
    if the test did not stop it."""
    name = f"serve-{len(list(tmp_path.glob('serve-*.out')))}"
    out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
    env = {**os.environ, "PIMLICO_DATABASE_URL": url, "PIMLICO_SECRET_KEY": SECRET_KEY}
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [str(PIMLICO), "serve", "--port", "0", *options],
            env=env,
            cwd=tmp_path,
            stdout=stdout,
            stderr=stderr,
        )
    server = Server(process, out, err)
    try:
        server.wait_ready()
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def rt(migrated_url: str) -> Iterator[Pimlico]:
    """The test's own runtime on the servers' store, on the real clock."""
    with Pimlico(Settings(database_url=migrated_url, secret_key=SecretStr(SECRET_KEY))) as runtime:
        yield runtime


def person(rt: Pimlico, name: str) -> PrincipalRef:
    """A user who signs in with ``PASSWORD`` and holds nothing."""
    made = directory.create_user(rt, actor=OPERATOR, user_name=name).value
    accounts.set_password(rt, actor=OPERATOR, user_id=made.id, password=PASSWORD)
    return PrincipalRef(PrincipalType.USER, made.id)


def jobs(rt: Pimlico, kind: str | None = None, *, due_by: datetime | None = None) -> dict[str, str]:
    """Job id → status (of ``kind`` only, and due by ``due_by`` only, if given)."""
    with rt.reading() as s:
        query = select(JobRow.id, JobRow.status, JobRow.due_at)
        if kind is not None:
            query = query.where(JobRow.kind == kind)
        return {
            job_id: status
            for job_id, status, due_at in s.execute(query)
            if due_by is None or as_utc(due_at) <= due_by
        }


def wait_for(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def check(
    client: httpx.Client, principal_id: str, permission: str, revision: int | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"principal_id": principal_id, "permission": permission}
    if revision is not None:
        body["at_least_revision"] = revision
    answer = client.post("/api/v1/decisions/check", json=body)
    assert answer.status_code == 200, answer.text
    decision: dict[str, Any] = answer.json()
    return decision


def test_serve_signs_in_runs_due_jobs_in_its_worker_and_stops_on_sigterm(
    rt: Pimlico, migrated_url: str, tmp_path: Path
) -> None:
    alex = person(rt, "alex")
    with serving(migrated_url, tmp_path) as server:
        out, _ = server.output()
        assert server.url.startswith("http://127.0.0.1:")
        assert "worker" in out
        assert "embedded" in out
        with server.signed_in("alex") as http:
            assert http.get("/api/v1/me").json()["principal_id"] == alex.id

            # An assignment that starts in a moment: its start is a job, due then, enqueued by
            # another process (the server's worker learns of it by notification or polling).
            start = datetime.now(UTC) + timedelta(seconds=2)
            made = assignments.assign(
                rt,
                actor=OPERATOR,
                kind=AssignmentKind.ACTIVE,
                principal=alex,
                target=Target.role(SECURITY_READER.id),
                start=start,
                duration=timedelta(hours=1),
                justification="on call tonight",
            ).value
            assert list(jobs(rt, START_JOB).values()) == ["pending"]

            wait_for(lambda: list(jobs(rt, START_JOB).values()) == ["done"], timeout=120)
            with rt.reading() as s:
                activated = [e for e in events.published(s) if isinstance(e, AssignmentActivated)]
            assert [e.assignment.assignment_id for e in activated] == [made.id]
            assert [e.at for e in activated] == [start]
            assert check(http, alex.id, "security.read")["allowed"] is True

        code = server.stop()
        out, err = server.output()
    assert code == 0, err
    assert out.rstrip().endswith("stopped")
    assert "Traceback" not in err


def test_serve_with_no_worker_leaves_due_jobs_to_a_worker(
    rt: Pimlico, migrated_url: str, tmp_path: Path
) -> None:
    alex = person(rt, "alex")
    # In force at once: its events are published as jobs due now, which an embedded worker
    # runs on its first pass, as soon as it starts.
    assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ACTIVE,
        principal=alex,
        target=Target.role(SECURITY_READER.id),
        duration=timedelta(hours=1),
        justification="on call tonight",
    )
    due = jobs(rt, due_by=datetime.now(UTC))
    assert due
    assert set(due.values()) == {"pending"}

    with serving(migrated_url, tmp_path, "--no-worker") as server:
        assert "no worker here" in server.output()[0]
        with server.signed_in("alex") as http:
            assert check(http, alex.id, "security.read")["allowed"] is True
        # Longer than an embedded worker would sleep (5 s at most) before looking again.
        time.sleep(6)
        assert jobs(rt, due_by=datetime.now(UTC)) == due
        assert server.stop() == 0

    # ...and they were runnable: a worker runs them all.
    env = {**os.environ, "PIMLICO_DATABASE_URL": migrated_url, "PIMLICO_SECRET_KEY": SECRET_KEY}
    ran = subprocess.run(
        [str(PIMLICO), "worker", "--once"], env=env, cwd=tmp_path, capture_output=True, timeout=300
    )
    assert ran.returncode == 0, ran.stderr.decode()
    ran_now = jobs(rt)
    assert {ran_now[job_id] for job_id in due} == {"done"}


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_two_servers_on_one_postgres_honour_each_other_s_writes_at_the_revision_given(
    rt: Pimlico, migrated_url: str, tmp_path: Path
) -> None:
    """An activation through one server, then its early end, are answered by a ``check``
    through the other at once, when the check passes the write's ``Pimlico-Revision``."""
    accounts.bootstrap_admin(rt, user_name="root", password=PASSWORD)  # (before any password)
    alex = person(rt, "alex")
    purge = role(rt, "Mail Search and Purge", "mail.purge")
    role_settings.update_policy(
        rt,
        actor=OPERATOR,
        target_type=TargetType.ROLE,
        object_id=purge,
        changes={"activation": {"require_mfa": False}},
    )
    assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ELIGIBLE,
        principal=alex,
        target=Target.role(purge),
        duration=timedelta(days=30),
        justification="mail security team",
    )

    with ExitStack() as stack:
        one = stack.enter_context(serving(migrated_url, tmp_path))
        other = stack.enter_context(serving(migrated_url, tmp_path))
        alex_one = stack.enter_context(one.signed_in("alex"))
        root_one = stack.enter_context(one.signed_in("root"))
        alex_other = stack.enter_context(other.signed_in("alex"))
        assert check(alex_other, alex.id, "mail.purge")["allowed"] is False

        activated = alex_one.post(
            "/api/v1/requests",
            json={
                "action": "self_activate",
                "target": {"type": "role", "object_id": purge},
                "schedule": {"expiration": {"type": "after_duration", "duration": "PT1H"}},
                "justification": "phishing wave INC-4711",
            },
        )
        assert activated.status_code == 201, activated.text
        revision = int(activated.headers["Pimlico-Revision"])
        decision = check(alex_other, alex.id, "mail.purge", revision)
        assert decision["allowed"] is True
        assert decision["revision"] >= revision

        ended = root_one.post(
            "/api/v1/requests",
            json={
                "action": "admin_remove",
                "assignment_id": activated.json()["assignment_id"],
                "justification": "the phishing wave is over",
            },
        )
        assert ended.status_code == 201, ended.text
        revision = int(ended.headers["Pimlico-Revision"])
        decision = check(alex_other, alex.id, "mail.purge", revision)
        assert decision["allowed"] is False
        assert decision["revision"] >= revision

        for server in (one, other):
            assert server.stop() == 0, server.output()[1]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_port_in_use_is_refused_in_one_line(migrated_url: str, tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        env = {**os.environ, "PIMLICO_DATABASE_URL": migrated_url}
        refused = subprocess.run(
            [str(PIMLICO), "serve", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            timeout=300,
        )
    assert refused.returncode == 2
    assert refused.stderr.decode().startswith(f"error: CannotListen: 127.0.0.1:{port}: ")
    assert b"Traceback" not in refused.stderr


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_warming_up_hides_what_exists_from_the_collector(
    migrated_url: str,
) -> None:
    """``serve`` warms its process up (``warm``) before its first request: what exists then
    is no longer walked by a full collection, which would otherwise pause every request for
    as long as walking it takes (seconds, with a large decision index)."""
    with Pimlico(Settings(database_url=migrated_url)) as rt:
        made_before = {"a container": ["the collector tracks"]}
        assert gc.is_tracked(made_before)
        try:
            warm(rt)
            assert gc.get_freeze_count() > 0
            assert not any(o is made_before for o in gc.get_objects())
            made_after: dict[str, list[str]] = {"a container": []}
            assert any(o is made_after for o in gc.get_objects())
        finally:
            gc.unfreeze()
