"""The worker: claims due jobs from the outbox, runs them in batches, records the outcomes.

Claiming is one statement, ``WITH due AS MATERIALIZED (SELECT … LIMIT batch) UPDATE … FROM due
RETURNING``, that marks up to ``batch`` jobs ``running`` with a lease (``claimed_until``) and
commits at once. On PostgreSQL the select takes ``FOR UPDATE SKIP LOCKED``, so several workers
claim disjoint jobs; on SQLite the statement holds the database's write lock (one worker is the
supported setup there). A job whose lease ran out — its worker died — is claimable again, and
its attempt counts.

A claimed batch then runs in one ``rt.writing`` transaction, not one per job: every write
takes the store's single write lock (``pim_state``), and a transaction per job cannot keep up
with thousands of jobs falling due at once. The transaction first re-checks, under row locks,
that this worker still holds each job (one whose lease was taken over is skipped, and no other
worker can take one over until the outcome commits). It runs the handlers ``group`` at a time
in a savepoint, then marks the jobs whose handlers returned ``done`` in one ``UPDATE``: a job's
changes commit with its ``done``, and only with it. When a handler raises (or the savepoint's
flush fails), that savepoint is rolled back, with the audit chain's head the write holds in
memory, and its jobs run again one savepoint each, so the failure undoes only its own job. A
job that failed is, in the same transaction, put back to ``pending`` at
``now + base_delay * 2**(attempts - 1)`` (plus up to 10 % jitter) with ``last_error`` kept, or
``failed`` after ``max_attempts``.

Why groups and not a savepoint per job: each savepoint costs round trips and a flush, and on
PostgreSQL a subtransaction; past 64 in one transaction its subtransaction cache overflows and
every statement slows down. With one audit event per job, a savepoint per job ran 4 to 5 times
slower than groups of 50 (ten subtransactions a batch), on SQLite and on PostgreSQL. A
transaction holds the lock for about ``hold`` at most (and at least one job, however long its
handler takes); the claimed jobs it did not reach run in the next one.

If a batch's transaction fails as a whole (an error no savepoint contained, a failed commit),
nothing of it was kept, and its jobs — still claimed by this worker — run again one
transaction each, which isolates the culprit.

``finished_at`` is read from the clock after the last handler of the transaction, just before
its commit; the audit events the handlers write carry the transaction's start (``w.at``), as
every event of one write does.

Handlers must be idempotent: a handler's changes commit with its job's ``done``, but a
handler may be called more than once for one job — again in the same attempt when its group or
its batch was rolled back for another job's failure, in a new attempt when a worker died before
the commit — so anything it does outside the database (a mail, a call to a downstream system)
may be repeated. Handlers re-check state before acting, and must not commit or roll back the
session they are given.

``run_forever`` sleeps until the next job falls due or until ``wake()`` (which ``outbox``
calls after a commit in this process that enqueued jobs) — never on a fixed polling interval —
but at most ``cap`` (5 s), so jobs enqueued by other processes are seen. PostgreSQL
LISTEN/NOTIFY can later replace that cap.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import chain, islice
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
    """Runs the jobs of the kinds in ``handlers``; ``name`` is recorded on each claim.

    ``batch`` bounds how many jobs one claim takes (and so one write transaction runs),
    ``group`` how many share a savepoint, and ``hold`` how long one transaction keeps the
    store's write lock.
    """

    def __init__(
        self,
        rt: Pimlico,
        handlers: Mapping[str, Handler],
        *,
        name: str,
        lease: timedelta = timedelta(seconds=60),
        max_attempts: int = 8,
        base_delay: timedelta = timedelta(seconds=1),
        batch: int = 500,
        group: int = 50,
        hold: timedelta = timedelta(milliseconds=250),
        cap: timedelta = timedelta(seconds=5),
    ) -> None:
        if (
            base_delay <= timedelta(0)
            or lease <= timedelta(0)
            or min(max_attempts, batch, group) < 1
        ):
            raise ValueError(
                "lease and base_delay must be positive, max_attempts, batch and group at least 1"
            )
        self.rt = rt
        self.handlers = dict(handlers)
        self.name = name
        self.lease = lease
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.batch = batch
        self.group = group
        self.hold = hold.total_seconds()
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
            self._run_claimed(claimed)
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
            # Materialized and joined, so the select runs once: as ``IN (subquery)``,
            # PostgreSQL may plan a semi-join that re-runs it per row and claims far more
            # than ``batch`` jobs, in time quadratic in the due jobs.
            chosen = due.cte("due").prefix_with("MATERIALIZED")
            rows = s.execute(
                update(JobRow)
                .where(JobRow.id == chosen.c.id)
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

    def _run_claimed(self, jobs: Sequence[Job]) -> None:
        """Run claimed jobs in as few transactions as ``hold`` allows; if one fails as a
        whole, run what it was given one transaction per job."""
        rest = jobs
        try:
            while rest:
                rest = self._run_batch(rest)
        except Exception:
            log.exception("a batch failed as a whole; running its %s jobs one by one", len(rest))
            for job in rest:
                self._run_alone(job)

    def _run_batch(self, jobs: Sequence[Job]) -> Sequence[Job]:
        """Run ``jobs`` in one write until ``hold`` is spent (at least one job); the jobs it
        did not reach."""
        reached: list[Job] = []
        with self.rt.writing(self.actor) as w:
            held = self._still_held(w.session, jobs)
            todo = self._held(held, _until(time.monotonic() + self.hold, jobs, reached))
            outcomes = self._run_groups(w, todo)
            finished = self.rt.clock.now()
            self._mark_done(
                w.session, [job.id for job, error in outcomes if error is None], finished
            )
            for job, error in outcomes:
                if error is not None:
                    log.error(
                        "job %s (%s) failed, attempt %s",
                        job.id,
                        job.kind,
                        job.attempt,
                        exc_info=error,
                    )
                    self._retry_or_fail(w.session, job, finished, error)
        return jobs[len(reached) :]

    def _run_groups(
        self, w: WriteContext, todo: Iterator[Job]
    ) -> list[tuple[Job, Exception | None]]:
        """Each job with the error its handler raised (``None`` if it returned): ``group``
        jobs per savepoint; when one fails, the group is undone and its jobs run again, one
        savepoint each."""
        outcomes: list[tuple[Job, Exception | None]] = []
        while (first := next(todo, None)) is not None:
            group: list[Job] = []
            error = self._attempt(w, chain([first], islice(todo, self.group - 1)), group)
            if error is None or len(group) == 1:
                outcomes += [(job, error) for job in group]
            else:
                log.info("a group of %s jobs failed (%r); running each alone", len(group), error)
                outcomes += [(job, self._attempt(w, [job], [])) for job in group]
        return outcomes

    def _held(self, held: set[str], jobs: Iterator[Job]) -> Iterator[Job]:
        for job in jobs:
            if job.id in held:
                yield job
            else:
                log.info("job %s is no longer this worker's (taken over or done); skipped", job.id)

    def _still_held(self, session: Session, jobs: Sequence[Job]) -> set[str]:
        """The ids of ``jobs`` this worker still holds, locked until the transaction ends
        (so no other worker takes them over before their outcome commits)."""
        attempts = {job.id: job.attempt for job in jobs}
        rows = session.execute(
            select(JobRow.id, JobRow.attempts)
            .where(
                JobRow.id.in_(list(attempts)),
                JobRow.status == RUNNING,
                JobRow.claimed_by == self.name,
            )
            .with_for_update()
        )
        return {row.id for row in rows if attempts[row.id] == row.attempts}

    def _attempt(self, w: WriteContext, jobs: Iterable[Job], ran: list[Job]) -> Exception | None:
        """Run handlers in one savepoint, noting each job in ``ran`` as it starts; the first
        error, with the savepoint's changes undone."""
        # The chain's head lives on the context, not in the database: a rolled-back
        # savepoint must take it back too, or the next event would link to a vanished one.
        head = (w.audit_sequence, w.audit_hash)
        try:
            with w.session.begin_nested():
                for job in jobs:
                    ran.append(job)
                    self.handlers[job.kind](self.rt, w, job)
        except Exception as error:
            w.audit_sequence, w.audit_hash = head
            return error
        return None

    def _run_alone(self, job: Job) -> None:
        try:
            self._run_batch([job])
        except Exception as error:
            log.exception("job %s (%s) failed outside its handler", job.id, job.kind)
            with self.rt.sessions() as s, s.begin():
                self._retry_or_fail(s, job, self.rt.clock.now(), error)

    def _mark_done(self, session: Session, ids: list[str], at: datetime) -> None:
        """One ``UPDATE`` for the jobs whose handlers returned (re-checked and locked by
        ``_still_held`` in this transaction)."""
        if ids:
            session.execute(
                update(JobRow)
                .where(JobRow.id.in_(ids))
                .values(status=DONE, finished_at=at, claimed_until=None)
                .execution_options(synchronize_session=False)
            )

    def _retry_or_fail(self, session: Session, job: Job, now: datetime, error: Exception) -> None:
        """Schedule the job's next attempt, or fail it after the last; a job this worker no
        longer holds is left alone (the ``WHERE`` is the re-check)."""
        values: dict[str, Any] = {
            "last_error": f"{type(error).__name__}: {error}"[:_ERROR_LENGTH],
            "claimed_until": None,
        }
        if job.attempt >= self.max_attempts:
            values |= {"status": FAILED, "finished_at": now}
        else:
            delay = self.base_delay * 2 ** (job.attempt - 1)
            jitter = 1 + self._random.uniform(0, 0.1)
            values |= {"status": PENDING, "claimed_by": None, "due_at": now + delay * jitter}
        session.execute(
            update(JobRow)
            .where(
                JobRow.id == job.id,
                JobRow.status == RUNNING,
                JobRow.claimed_by == self.name,
                JobRow.attempts == job.attempt,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )


def _until(deadline: float, jobs: Iterable[Job], reached: list[Job]) -> Iterator[Job]:
    """``jobs`` one by one until ``deadline`` (``time.monotonic``) has passed — the first
    whatever the time — each noted in ``reached`` as it is handed out."""
    for job in jobs:
        if reached and time.monotonic() > deadline:
            return
        reached.append(job)
        yield job


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"
