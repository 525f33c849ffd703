"""A worker process killed (SIGKILL) while jobs are due loses and doubles nothing: after a new
worker starts and the dead one's leases run out, every job has run exactly once.

Real processes and real time (the only test of the worker that sleeps): ``pimlico worker``
with the test-only ``test.mark`` kind (``crash_handlers``) and a 2 s lease.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select, text

from pimlico.db.tables import JobRow
from pimlico.jobs import outbox
from pimlico.services.runtime import Pimlico
from pimlico.settings import Settings
from tests.integration.crash_handlers import CREATE
from tests.integration.world import OPERATOR

ROOT = Path(__file__).resolve().parents[2]
JOBS = 12


def start_worker(url: str) -> subprocess.Popen[bytes]:
    pimlico = Path(sys.executable).parent / "pimlico"
    env = {**os.environ, "PIMLICO_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [
            str(pimlico),
            "worker",
            "--handlers",
            "tests.integration.crash_handlers:HANDLERS",
            "--lease-seconds",
            "2",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def marks(rt: Pimlico) -> list[str]:
    with rt.reading() as s:
        return list(s.scalars(text("SELECT job_id FROM crash_marks")))


def wait_for(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_killed_worker_s_jobs_all_run_exactly_once_after_restart(migrated_url: str) -> None:
    with Pimlico(Settings(database_url=migrated_url)) as rt:
        with rt.sessions() as s, s.begin():
            s.execute(text(CREATE))
        with rt.writing(OPERATOR) as w:
            ids = {
                outbox.enqueue(w, kind="test.mark", payload={}, due_at=datetime.now(UTC))
                for _ in range(JOBS)
            }

        first = start_worker(migrated_url)
        try:
            wait_for(lambda: len(marks(rt)) >= 2, timeout=20)
        finally:
            first.send_signal(signal.SIGKILL)
            first.communicate()
        assert len(marks(rt)) < JOBS, "the worker finished before it was killed"

        second = start_worker(migrated_url)
        try:
            wait_for(lambda: len(marks(rt)) >= JOBS, timeout=20)
            wait_for(lambda: _done(rt) == JOBS, timeout=5)
        finally:
            second.send_signal(signal.SIGINT)
            _, err = second.communicate(timeout=10)
        assert second.returncode == 0, err.decode()

        assert None not in ids
        assert sorted(marks(rt)) == sorted(i for i in ids if i is not None)
        with rt.reading() as s:
            rows = s.execute(select(JobRow.status, JobRow.attempts)).all()
        assert {status for status, _ in rows} == {"done"}
        assert any(attempts == 2 for _, attempts in rows), "no job was reclaimed"


def _done(rt: Pimlico) -> int:
    with rt.reading() as s:
        return s.scalar(select(func.count()).where(JobRow.status == "done")) or 0
