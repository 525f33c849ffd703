"""The worker: claims due jobs from the outbox, runs them in batches, records the outcomes.

Claiming is one statement, ``WITH … due AS MATERIALIZED (SELECT … LIMIT batch) UPDATE … FROM
due RETURNING``, that marks up to ``batch`` jobs ``running`` with a lease (``claimed_until``)
and commits at once. The first due are taken: pending jobs due by now and running jobs whose
lease ran out, each set found by an ordered scan of ``ix_jobs_status`` that stops after
``batch`` rows (one ``WHERE`` with an ``OR`` of both made both databases sort every due job on
every claim, quadratic in a burst). On PostgreSQL the selects take ``FOR UPDATE SKIP LOCKED``,
so several workers claim disjoint jobs; on SQLite the statement holds the database's write
lock (one worker is the supported setup there). A job whose lease ran out — its worker died —
is claimable again, and its attempt counts.

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

A kind whose jobs fall due by the thousand (an assignment's end, a published event's fan-out)
registers a batch handler (``Batched``): the consecutive jobs of its kind in a group (the
claim puts the jobs due at one instant in kind order) are given to one call, which works
set-based — one read, one insert — for all of them. If that call raises, the group is undone
and replayed one job per savepoint like any other, so one bad job never blocks the others and
each job's effects still commit exactly once, with its ``done``.

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

``run_forever`` sleeps until the next job falls due or until it is woken: by ``wake()``,
which ``outbox`` calls after a commit in this process that enqueued jobs, and on PostgreSQL by
the notification such a commit sends from any process (a listener thread with its own
connection). It sleeps at most ``cap`` (5 s): on SQLite, which cannot notify, that is how jobs
enqueued by other processes are seen; on PostgreSQL it only bounds the sleep should the
listener's connection be lost.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ARRAY, Update, and_, any_, bindparam, select, union_all, update
from sqlalchemy.orm import Session

from pimlico.db.audit import WriteContext
from pimlico.db.tables import Base, JobRow
from pimlico.jobs.outbox import (
    DONE,
    FAILED,
    PENDING,
    RUNNING,
    listen,
    listen_postgres,
    next_due,
    unlisten,
)
from pimlico.services.runtime import Actor, Pimlico

log = logging.getLogger(__name__)

_ERROR_LENGTH = 4000
_JOBS = Base.metadata.tables[JobRow.__tablename__]


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

BatchHandler = Callable[[Pimlico, WriteContext, Sequence[Job]], None]
"""Runs many jobs of one kind at once inside the write ``ctx``, all or nothing (it raises if
one fails: each job then runs again alone)."""


@dataclass(frozen=True, slots=True)
class Batched:
    """The handler of a kind whose jobs fall due by the thousand, run set-based: registered
    with the ``Handler``s, and one of them (called with one job, it runs a batch of one)."""

    run: BatchHandler

    def __call__(self, rt: Pimlico, w: WriteContext, job: Job) -> None:
        self.run(rt, w, [job])


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
        self._claiming: Update | None = None

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
        done = threading.Event()
        listener = threading.Thread(
            target=self._listen_postgres, args=(done,), name=f"{self.name}-listen", daemon=True
        )
        listener.start()
        try:
            while not stop.is_set():
                self._wake.clear()
                self.run_once(self.rt.clock.now())
                self._wake.wait(self._sleep(self.rt.clock.now()))
        finally:
            done.set()
            with self.rt.sessions() as s:
                unlisten(s, self._wake)
            listener.join()

    def _listen_postgres(self, done: threading.Event) -> None:
        try:
            listen_postgres(self.rt.engine, self._wake, done)
        except Exception:
            log.exception(
                "worker %s stopped listening for new jobs; polling every %s", self.name, self.cap
            )

    def _sleep(self, now: datetime) -> float:
        with self.rt.reading() as s:
            due = next_due(s, self.handlers)
        wait = self.cap if due is None else min(self.cap, max(due - now, timedelta(0)))
        return wait.total_seconds()

    def _claim(self, now: datetime) -> list[Job]:
        with self.rt.sessions() as s, s.begin():
            if self._claiming is None:
                self._claiming = self._claim_statement(postgres=_is_postgres(s))
            rows = s.execute(
                self._claiming, {"now": now, "until": now + self.lease, "batch": self.batch}
            ).all()
        jobs = [Job(r.id, r.kind, r.payload, r.due_at, r.attempts) for r in rows]
        # By kind within one instant, so a batch kind's jobs come in long runs.
        return sorted(jobs, key=lambda job: (job.due_at, job.kind))

    def _claim_statement(self, *, postgres: bool) -> Update:
        """Claim the ``batch`` first due jobs: pending ones due by ``now`` and running ones
        whose lease ran out by ``now``, each found by its own ordered scan of
        ``ix_jobs_status`` (as one ``OR``, both databases sorted every due job on every
        claim: time quadratic in the jobs falling due at once)."""
        kinds = _JOBS.c.kind.in_(list(self.handlers))
        arms = []
        for name, condition in (
            ("pending", and_(_JOBS.c.status == PENDING, _JOBS.c.due_at <= bindparam("now"))),
            ("lapsed", and_(_JOBS.c.status == RUNNING, _JOBS.c.claimed_until <= bindparam("now"))),
        ):
            arm = (
                select(_JOBS.c.id, _JOBS.c.due_at)
                .where(kinds, condition)
                .order_by(_JOBS.c.due_at)
                .limit(bindparam("batch"))
            )
            if postgres:
                arm = arm.with_for_update(skip_locked=True)
            arms.append(arm.cte(name).prefix_with("MATERIALIZED"))
        both = union_all(*(select(arm.c.id, arm.c.due_at) for arm in arms)).subquery()
        # Materialized and joined, so the select runs once: as ``IN (subquery)``,
        # PostgreSQL may plan a semi-join that re-runs it per row and claims far more
        # than ``batch`` jobs, in time quadratic in the due jobs.
        chosen = (
            select(both.c.id)
            .order_by(both.c.due_at)
            .limit(bindparam("batch"))
            .cte("due")
            .prefix_with("MATERIALIZED")
        )
        return (
            update(_JOBS)
            .where(_JOBS.c.id == chosen.c.id)
            .values(
                status=RUNNING,
                claimed_by=self.name,
                claimed_until=bindparam("until", type_=_JOBS.c.claimed_until.type),
                attempts=_JOBS.c.attempts + 1,
            )
            .returning(_JOBS.c.id, _JOBS.c.kind, _JOBS.c.payload, _JOBS.c.due_at, _JOBS.c.attempts)
        )

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
        queue = _Queue(todo)
        while queue:
            group: list[Job] = []
            error = self._attempt(w, queue, group)
            if error is None or len(group) == 1:
                outcomes += [(job, error) for job in group]
            else:
                log.info("a group of %s jobs failed (%r); running each alone", len(group), error)
                outcomes += [(job, self._attempt(w, _Queue([job]), [])) for job in group]
        return outcomes

    def _held(self, held: set[str], jobs: Iterator[Job]) -> Iterator[Job]:
        for job in jobs:
            if job.id in held:
                yield job
            else:
                log.info("job %s is no longer this worker's (taken over or done); skipped", job.id)

    def _still_held(self, session: Session, jobs: Sequence[Job]) -> set[str]:
        """The ids of ``jobs`` this worker still holds, locked until the transaction ends
        (so no other worker takes them over before their outcome commits).

        Every job the worker holds is locked — the rest of its claim too, which no one else
        may take either — rather than ``jobs`` by an ``IN`` list of their ids: on PostgreSQL,
        rendering and parsing a list of 500 ids cost more than the select."""
        attempts = {job.id: job.attempt for job in jobs}
        rows = session.execute(
            select(_JOBS.c.id, _JOBS.c.attempts)
            .where(_JOBS.c.status == RUNNING, _JOBS.c.claimed_by == self.name)
            .with_for_update()
        )
        return {job_id for job_id, attempt in rows if attempts.get(job_id) == attempt}

    def _attempt(self, w: WriteContext, todo: _Queue, ran: list[Job]) -> Exception | None:
        """Run the next ``group`` jobs of ``todo`` in one savepoint — the consecutive jobs of
        a batch kind in one call, any other job on its own — noting in ``ran`` the jobs of
        each call as it starts; the first error, with the savepoint's changes undone."""
        # The chain's head lives on the context, not in the database: a rolled-back
        # savepoint must take it back too, or the next event would link to a vanished one.
        head = (w.audit_sequence, w.audit_hash)
        try:
            with w.session.begin_nested():
                while len(ran) < self.group and (job := todo.next()) is not None:
                    handler = self.handlers[job.kind]
                    if isinstance(handler, Batched):
                        jobs = todo.run_of(job, self.group - len(ran))
                        ran += jobs
                        handler.run(self.rt, w, jobs)
                    else:
                        ran.append(job)
                        handler(self.rt, w, job)
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
        if not ids:
            return
        # On PostgreSQL one array parameter, not an ``IN`` list of 500: SQLAlchemy renders
        # each of those with its cast and psycopg parses the long text on every batch.
        chosen = (
            _JOBS.c.id == any_(bindparam("ids", type_=ARRAY(_JOBS.c.id.type)))
            if _is_postgres(session)
            else _JOBS.c.id.in_(bindparam("ids", expanding=True))
        )
        session.execute(
            update(_JOBS).where(chosen).values(status=DONE, finished_at=at, claimed_until=None),
            {"ids": ids},
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
            update(_JOBS)
            .where(
                _JOBS.c.id == job.id,
                _JOBS.c.status == RUNNING,
                _JOBS.c.claimed_by == self.name,
                _JOBS.c.attempts == job.attempt,
            )
            .values(**values)
        )


class _Queue:
    """The jobs a write has yet to run, taken one at a time; ``run_of`` puts back the job
    it looked at past a run of one kind."""

    def __init__(self, jobs: Iterable[Job]) -> None:
        self._jobs = iter(jobs)
        self._back: Job | None = None

    def __bool__(self) -> bool:
        if self._back is None:
            self._back = next(self._jobs, None)
        return self._back is not None

    def next(self) -> Job | None:
        job, self._back = self._back, None
        return job if job is not None else next(self._jobs, None)

    def run_of(self, first: Job, limit: int) -> list[Job]:
        """``first`` and the jobs of its kind that come right after it, ``limit`` at most."""
        run = [first]
        while len(run) < limit and (job := self.next()) is not None:
            if job.kind != first.kind:
                self._back = job
                break
            run.append(job)
        return run


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
