"""A worker process killed (SIGKILL) while jobs are due loses and doubles nothing: after a new
worker starts (and, for jobs claimed with a lease, the dead one's leases run out), every job
has run exactly once.

Real processes and real time (the only tests of the worker that sleep): ``pimlico worker``
with the test-only ``test.mark`` kind (``crash_handlers``) and a 2 s lease, and the batch kind
``test.marks`` (``crash_batch_handlers``), whose jobs are taken in the write that runs them.
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


def start_worker(
    url: str, handlers: str = "crash_handlers", signal_file: Path | None = None
) -> subprocess.Popen[bytes]:
    pimlico = Path(sys.executable).parent / "pimlico"
    env = {**os.environ, "PIMLICO_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    if signal_file is not None:
        env["PIMLICO_TEST_CRASH_SIGNAL"] = str(signal_file)
    return subprocess.Popen(
        [
            str(pimlico),
            "worker",
            "--handlers",
            f"tests.integration.{handlers}:HANDLERS",
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


def test_a_worker_killed_inside_the_write_of_taken_jobs_leaves_them_to_the_next(
    migrated_url: str, tmp_path: Path
) -> None:
    inside = tmp_path / "inside"
    with Pimlico(Settings(database_url=migrated_url)) as rt:
        with rt.sessions() as s, s.begin():
            s.execute(text(CREATE))
        with rt.writing(OPERATOR) as w:
            ids = outbox.enqueue_many(
                w, [outbox.NewJob("test.marks", {}, datetime.now(UTC))] * JOBS
            )

        first = start_worker(migrated_url, "crash_batch_handlers", inside)
        try:
            wait_for(inside.exists, timeout=20)
        finally:
            first.send_signal(signal.SIGKILL)
            first.communicate()
        assert marks(rt) == [], "the killed write committed"
        with rt.reading() as s:
            left = s.execute(select(JobRow.status, JobRow.attempts)).all()
        assert set(left) == {("pending", 0)}, "the killed write left a trace"

        second = start_worker(migrated_url, "crash_batch_handlers", tmp_path / "again")
        try:
            wait_for(lambda: _done(rt) == JOBS, timeout=20)
        finally:  # (how a worker stops is the other test's business)
            second.send_signal(signal.SIGKILL)
            second.communicate()

        assert sorted(marks(rt)) == sorted(i for i in ids if i is not None)
        with rt.reading() as s:
            rows = s.execute(select(JobRow.status, JobRow.attempts)).all()
        assert set(rows) == {("done", 1)}


def test_sigterm_stops_the_worker_cleanly_after_its_write(migrated_url: str) -> None:
    """SIGTERM (what systemd and container runtimes send) ends ``pimlico worker`` as Ctrl-C
    does: what it ran is committed and it exits 0, rather than dying mid-write."""
    with Pimlico(Settings(database_url=migrated_url)) as rt:
        with rt.sessions() as s, s.begin():
            s.execute(text(CREATE))
        with rt.writing(OPERATOR) as w:
            outbox.enqueue(w, kind="test.mark", payload={}, due_at=datetime.now(UTC))

        worker = start_worker(migrated_url)
        try:
            wait_for(lambda: _done(rt) == 1, timeout=20)
        finally:
            worker.send_signal(signal.SIGTERM)
            _, err = worker.communicate(timeout=10)
        assert worker.returncode == 0, err.decode()
        assert b"Traceback" not in err


def _done(rt: Pimlico) -> int:
    with rt.reading() as s:
        return s.scalar(select(func.count()).where(JobRow.status == "done")) or 0
