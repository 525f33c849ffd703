"""The worker: claims due jobs from the outbox, runs each in its own write, records the outcome.

Claiming is one ``UPDATE … WHERE id IN (SELECT … LIMIT n) RETURNING`` that marks the jobs
``running`` with a lease (``claimed_until``) and commits at once. On PostgreSQL the inner
select takes ``FOR UPDATE SKIP LOCKED``, so several workers claim disjoint jobs; on SQLite the
single statement holds the database's write lock (one worker is the supported setup there).
A job whose lease ran out — its worker died — is claimable again, and its attempt counts.

Each job then runs in its own ``rt.writing`` transaction, which first re-checks that this
worker still holds the job (a slow worker whose lease was taken over does nothing), then calls
the handler and marks the job ``done`` — in the same commit as the handler's changes. A
handler that raises rolls all of that back; the job is then retried at
``now + base_delay * 2**(attempts - 1)`` (plus up to 10 % jitter) with ``last_error`` kept,
and is ``failed`` after ``max_attempts``.

Handlers must be idempotent: a handler's changes commit with its job's ``done``, but anything
it does outside the database (a mail, a call to a downstream system) may be repeated when a
worker dies after that and before the commit. Handlers re-check state before acting.

``run_forever`` sleeps until the next job falls due or until ``wake()`` (which ``outbox``
calls after a commit in this process that enqueued jobs) — never on a fixed polling interval —
but at most ``cap`` (5 s), so jobs enqueued by other processes are seen. PostgreSQL
LISTEN/NOTIFY can later replace that cap.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from pimlico.db.audit import WriteContext
from pimlico.db.tables import JobRow
from pimlico.jobs.outbox import DONE, FAILED, PENDING, RUNNING, listen, next_due, unlisten
from pimlico.services.runtime import Actor, Pimlico

log = logging.getLogger(__name__)

_ERROR_LENGTH = 4000


@dataclass(frozen=True, slots=True)
class Job:
    """A claimed job as its handler sees it; ``attempt`` counts from 1."""

    id: str
    kind: str
    payload: Mapping[str, Any]
    due_at: datetime
    attempt: int


Handler = Callable[[Pimlico, WriteContext, Job], None]
"""Runs one job inside the write ``ctx`` (whose changes commit with the job's ``done``)."""


class Worker:
    """Runs the jobs of the kinds in ``handlers``; ``name`` is recorded on each claim."""

    def __init__(
        self,
        rt: Pimlico,
        handlers: Mapping[str, Handler],
        *,
        name: str,
        lease: timedelta = timedelta(seconds=60),
        max_attempts: int = 8,
        base_delay: timedelta = timedelta(seconds=1),
        batch: int = 100,
        cap: timedelta = timedelta(seconds=5),
    ) -> None:
        if base_delay <= timedelta(0) or lease <= timedelta(0) or max_attempts < 1:
            raise ValueError("lease and base_delay must be positive, max_attempts at least 1")
        self.rt = rt
        self.handlers = dict(handlers)
        self.name = name
        self.lease = lease
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.batch = batch
        self.cap = cap
        self.actor = Actor.operator(f"worker:{name}")
        self._wake = threading.Event()
        self._random = random.Random()  # noqa: S311 (jitter, not a secret)

    def wake(self) -> None:
        """Look for due jobs now (also: after setting ``run_forever``'s ``stop``)."""
        self._wake.set()

    def run_once(self, now: datetime) -> int:
        """Run every job due at ``now`` (give it ``rt.clock.now()``); how many were tried."""
        tried = 0
        while claimed := self._claim(now):
            for job in claimed:
                self._run(job, now)
            tried += len(claimed)
        return tried

    def run_forever(self, stop: threading.Event) -> None:
        """Run due jobs until ``stop`` is set, sleeping until the next is due or ``wake()``."""
        with self.rt.sessions() as s:
            listen(s, self._wake)
        try:
            while not stop.is_set():
                self._wake.clear()
                self.run_once(self.rt.clock.now())
                self._wake.wait(self._sleep(self.rt.clock.now()))
        finally:
            with self.rt.sessions() as s:
                unlisten(s, self._wake)

    def _sleep(self, now: datetime) -> float:
        with self.rt.reading() as s:
            due = next_due(s, self.handlers)
        wait = self.cap if due is None else min(self.cap, max(due - now, timedelta(0)))
        return wait.total_seconds()

    def _claim(self, now: datetime) -> list[Job]:
        claimable = and_(
            JobRow.kind.in_(list(self.handlers)),
            or_(
                and_(JobRow.status == PENDING, JobRow.due_at <= now),
                and_(JobRow.status == RUNNING, JobRow.claimed_until <= now),
            ),
        )
        with self.rt.sessions() as s, s.begin():
            due = select(JobRow.id).where(claimable).order_by(JobRow.due_at).limit(self.batch)
            if _is_postgres(s):
                due = due.with_for_update(skip_locked=True)
            rows = s.execute(
                update(JobRow)
                .where(JobRow.id.in_(due.scalar_subquery()), claimable)
                .values(
                    status=RUNNING,
                    claimed_by=self.name,
                    claimed_until=now + self.lease,
                    attempts=JobRow.attempts + 1,
                )
                .returning(JobRow.id, JobRow.kind, JobRow.payload, JobRow.due_at, JobRow.attempts)
                .execution_options(synchronize_session=False)
            ).all()
        jobs = [Job(r.id, r.kind, r.payload, r.due_at, r.attempts) for r in rows]
        return sorted(jobs, key=lambda job: job.due_at)

    def _run(self, job: Job, now: datetime) -> None:
        try:
            with self.rt.writing(self.actor) as w:
                row = w.session.get(JobRow, job.id, with_for_update=True)
                if row is None or not self._holds(row, job):
                    log.info("job %s was taken over by another worker; skipped", job.id)
                    return
                self.handlers[job.kind](self.rt, w, job)
                row.status = DONE
                row.finished_at = w.at
                row.claimed_until = None
        except Exception as error:
            log.exception("job %s (%s) failed, attempt %s", job.id, job.kind, job.attempt)
            self._retry_or_fail(job, now, error)

    def _holds(self, row: JobRow, job: Job) -> bool:
        return (row.status, row.claimed_by, row.attempts) == (RUNNING, self.name, job.attempt)

    def _retry_or_fail(self, job: Job, now: datetime, error: Exception) -> None:
        text = f"{type(error).__name__}: {error}"[:_ERROR_LENGTH]
        with self.rt.sessions() as s, s.begin():
            row = s.get(JobRow, job.id, with_for_update=True)
            if row is None or not self._holds(row, job):
                return
            row.last_error = text
            row.claimed_until = None
            if job.attempt >= self.max_attempts:
                row.status = FAILED
                row.finished_at = now
                return
            delay = self.base_delay * 2 ** (job.attempt - 1)
            row.status = PENDING
            row.claimed_by = None
            row.due_at = now + delay * (1 + self._random.uniform(0, 0.1))


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"
