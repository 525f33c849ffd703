"""The worker: takes due jobs from the outbox, runs them in batches, records the outcomes.

Every batch runs in one ``rt.writing`` transaction, not one per job: every write takes the
store's single write lock (``pim_state``), and a transaction per job cannot keep up with
thousands of jobs falling due at once. Jobs reach a write in one of two ways (their SQL is in
``jobs.claims``).

**Taken in the write** — the kinds with a batch handler (``Batched``), those that fall due by
the thousand (an assignment's end, a published event's fan-out). The write reads up to
``batch`` of them, the first due, locked until it ends; runs them; marks those that succeeded
``done`` (their attempt counted) in one ``UPDATE`` and the others for a retry; and commits: a
job's changes commit with its ``done``, and only with it. Nothing is claimed in a transaction
of its own, so no lease is written, re-checked and cleared: a worker that dies mid-write
leaves its jobs as they were, pending, for the next write of any worker (the attempt is not
counted: batch handlers are the store's own set-based code, not calls to the outside world).
Jobs taken but not reached before ``hold`` ran out stay pending, untouched. A write that finds
nothing due is rolled back, so it takes no revision.

**Claimed with a lease** — every other kind. One statement marks up to ``batch`` jobs
``running`` with a lease (``claimed_until``) and commits at once, counting an attempt: a
handler that kills its worker (or never returns) still uses up its attempts. On PostgreSQL
several workers claim disjoint jobs; on SQLite the statement holds the database's write lock
(one worker is the supported setup there). A job whose lease ran out — its worker died — is
claimable again, and its attempt counts. The write that runs claimed jobs first re-checks,
under row locks, that this worker still holds each (one whose lease was taken over is
skipped, and no other worker can take one over until the outcome commits), runs them
``group`` at a time in a savepoint and marks them ``done`` in one ``UPDATE``. ``run_once``
alternates writes of taken jobs and claims (see ``Worker``) until neither finds anything due.

A batch handler is given the consecutive jobs of its kind (the jobs due at one instant come in
kind order), all in one call that works set-based — one read, one insert — in one savepoint.
If the call raises (or the savepoint's flush fails), the savepoint is rolled back, with the
audit chain's head the write holds in memory, and the jobs are split in two halves, each run
again in its own savepoint, and so on: a bad job ends up alone, failing on its own, after
about ``2 log2(n)`` savepoints rather than ``n``, while each other job's effects still commit
exactly once, with its ``done``. A plain handler's jobs share a savepoint ``group`` at a time;
when one fails, its group is undone and its jobs run again one savepoint each. (On PostgreSQL
a savepoint is a subtransaction, and past 64 in one transaction its cache overflows and every
statement slows down: with one audit event per job, a savepoint per job ran 4 to 5 times
slower than groups of 50.) A job that failed is, in the same transaction, put back to
``pending`` at ``now + base_delay * 2**(attempts - 1)`` (plus up to 10 % jitter) with
``last_error`` kept, or ``failed`` after ``max_attempts``.

A transaction holds the lock for about ``hold`` at most (and at least one call, however long
it takes); the jobs it did not reach run in the next one. If a batch's transaction fails as a
whole (an error no savepoint contained, a failed commit), nothing of it was kept, and the jobs
it ran run again one transaction each, which isolates the culprit; a job whose own transaction
fails so has the failure recorded in a transaction of its own.

``finished_at`` is read from the clock after the last handler of the transaction, just before
its commit; the audit events the handlers write carry the transaction's start (``w.at``).

Handlers must be idempotent: a handler's changes commit with its job's ``done``, but a
handler may be called more than once for one job — again in the same attempt when its call,
its group or its batch was rolled back for another job's failure, in a new attempt when a
worker died before the commit — so anything it does outside the database (a mail, a call to a
downstream system) may be repeated. Handlers re-check state before acting, and must not commit
or roll back the session they are given.

``run_forever`` sleeps until the next job falls due or until it is woken: by ``wake()``,
which ``outbox`` calls after a commit in this process that enqueued jobs, and on PostgreSQL by
the notification such a commit sends from any process (a listener thread with its own
connection). It sleeps at most ``cap`` (5 s): on SQLite, which cannot notify, that is how jobs
enqueued by other processes are seen; on PostgreSQL it only bounds the sleep should the
listener's connection be lost.
"""

from __future__ import annotations

import gc
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy.orm import Session

from pimlico.db.audit import WriteContext
from pimlico.jobs import claims
from pimlico.jobs.claims import Job as Job  # (handlers import it from here)
from pimlico.jobs.outbox import (
    FAILED,
    PENDING,
    listen,
    listen_postgres,
    next_due,
    unlisten,
)
from pimlico.services.runtime import Actor, Pimlico

log = logging.getLogger(__name__)

_ERROR_LENGTH = 4000


Handler = Callable[[Pimlico, WriteContext, Job], None]
"""Runs one job inside the write ``ctx`` (whose changes commit with the job's ``done``)."""

BatchHandler = Callable[[Pimlico, WriteContext, Sequence[Job]], None]
"""Runs many jobs of one kind at once inside the write ``ctx``, all or nothing (it raises if
one fails: the jobs then run again in halves, down to the failing one alone)."""


@dataclass(frozen=True, slots=True)
class Batched:
    """The handler of a kind whose jobs fall due by the thousand, run set-based: registered
    with the ``Handler``s, and one of them (called with one job, it runs a batch of one).
    A worker takes its jobs inside the write that runs them (see the module docstring)."""

    run: BatchHandler

    def __call__(self, rt: Pimlico, w: WriteContext, job: Job) -> None:
        self.run(rt, w, [job])


class _NothingDue(Exception):
    """Raised inside a write that found no job to take, to roll it back."""


Outcomes = list[tuple[Job, Exception | None]]


class Worker:
    """Runs the jobs of the kinds in ``handlers``; ``name`` is recorded on each job it runs.

    ``batch`` bounds how many jobs one take or claim reads (and so one write transaction
    runs), ``group`` how many jobs of plain handlers share a savepoint, and ``hold`` how long
    one transaction keeps the store's write lock. While the batch kinds' jobs come in full
    takes (a burst), the other kinds are claimed every ``claim_every``, not after every take:
    a claim scans the due jobs of every kind to find its own (``ix_jobs_status`` does not hold
    the kind), and after every take of a burst of ten thousand, the claims cost as much as
    the takes. (With ten thousand ends due at once, takes of 2,000 finished later than takes
    of 1,000, and takes of 500 no sooner.)
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
        batch: int = 1000,
        group: int = 50,
        hold: timedelta = timedelta(milliseconds=250),
        cap: timedelta = timedelta(seconds=5),
        claim_every: timedelta = timedelta(seconds=1),
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
        self.claim_every = claim_every.total_seconds()
        self.actor = Actor.operator(f"worker:{name}")
        self._wake = threading.Event()
        self._random = random.Random()  # noqa: S311 (jitter, not a secret)
        self._batched = sorted(k for k, h in self.handlers.items() if isinstance(h, Batched))
        self._leased = sorted(k for k in self.handlers if k not in self._batched)
        # Built once, for the store's database: a statement keeps its compiled form.
        dialect = rt.engine.dialect.name
        postgres = dialect == "postgresql"
        self._taking = claims.take(self._batched, postgres=postgres)
        self._taking_one = claims.take_one(self._batched, postgres=postgres)
        self._claiming = claims.claim(self._leased, name=name, postgres=postgres)
        self._finishing = claims.finish(name=name, dialect=dialect)
        self._marking_done = claims.mark_done(dialect=dialect)
        self._holding = claims.still_held(name)

    def wake(self) -> None:
        """Look for due jobs now (also: after setting ``run_forever``'s ``stop``)."""
        self._wake.set()

    def run_once(self, now: datetime) -> int:
        """Run every job due at ``now`` (give it ``rt.clock.now()``); how many were tried."""
        tried, claimed_at = 0, time.monotonic()
        while True:
            taken, more = self._take_and_run(now) if self._batched else (0, False)
            claimed: list[Job] = []
            if self._leased and (not more or time.monotonic() - claimed_at >= self.claim_every):
                claimed, claimed_at = self._claim(now), time.monotonic()
                if claimed:
                    self._run_claimed(claimed)
            tried += taken + len(claimed)
            if not taken and not claimed:
                return tried

    def run_forever(self, stop: threading.Event) -> None:
        """Run due jobs until ``stop`` is set, sleeping until the next is due or ``wake()``.

        Meant to be a process's one worker (``pimlico worker``): while it runs, what was alive
        when it started is frozen out of the garbage collector's full collections."""
        with self.rt.sessions() as s:
            listen(s, self._wake)
        done = threading.Event()
        listener = threading.Thread(
            target=self._listen_postgres, args=(done,), name=f"{self.name}-listen", daemon=True
        )
        listener.start()
        # What is alive when the worker starts lives as long as it runs: kept out of the
        # garbage collector's full collections, which otherwise walked it all, 50 to 60 ms
        # each, twice or three times in a burst of ten thousand jobs.
        gc.freeze()
        try:
            while not stop.is_set():
                self._wake.clear()
                self.run_once(self.rt.clock.now())
                self._wake.wait(self._sleep())
        finally:
            gc.unfreeze()
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

    def _sleep(self) -> float:
        """Seconds until the next job of this worker's kinds falls due, ``cap`` at most."""
        with self.rt.reading() as s:
            due = next_due(s, self.handlers)
        # Measured from after the read: measured from before, a worker woke as late after
        # the due instant as the read had taken (60 ms, at the start of a burst).
        now = self.rt.clock.now()
        wait = self.cap if due is None else min(self.cap, max(due - now, timedelta(0)))
        return wait.total_seconds()

    # -- jobs taken in the write that runs them (batch kinds) ---------------------------

    def _take_and_run(self, now: datetime) -> tuple[int, bool]:
        """Take up to ``batch`` due jobs of the batch kinds in one write and run them until
        ``hold`` is spent; how many it ran, and whether more may be due (it took ``batch``,
        or did not reach them all). If the write fails as a whole, its jobs run again one
        write each."""
        jobs: list[Job] = []
        reached: list[Job] = []
        try:
            with self.rt.writing(self.actor) as w:
                jobs = self._take(w.session, now)
                if not jobs:
                    raise _NothingDue
                todo = _until(time.monotonic() + self.hold, jobs, reached)
                self._settle(w.session, self._run_batches(w, todo))
        except _NothingDue:
            return 0, False
        except Exception:
            if not reached:
                raise
            log.exception("a write of %s jobs failed as a whole; running each alone", len(reached))
            for job in reached:
                self._take_alone(job, now)
        return len(reached), len(jobs) == self.batch or len(reached) < len(jobs)

    def _take_alone(self, job: Job, now: datetime) -> None:
        try:
            with self.rt.writing(self.actor) as w:
                if not self._take(w.session, now, only=job):
                    raise _NothingDue  # done, or taken over, since
                self._settle(w.session, self._run_batches(w, iter([job])))
        except _NothingDue:
            pass
        except Exception as error:
            log.exception("job %s (%s) failed outside its handler", job.id, job.kind)
            with self.rt.sessions() as s, s.begin():
                self._retry_or_fail(s, job, self.rt.clock.now(), error, taken=True)

    def _take(self, session: Session, now: datetime, *, only: Job | None = None) -> list[Job]:
        """The first ``batch`` due jobs of the batch kinds (or just ``only``, if it is still
        due and not run since it was taken), locked until the write ends, in due order and
        kind order."""
        if only is None:
            rows = session.execute(self._taking, {"now": now, "batch": self.batch}).all()
        else:
            values = {"now": now, "id": only.id, "attempts": only.attempt - 1}
            rows = session.execute(self._taking_one, values).all()
        return claims.jobs(rows, self.rt.engine.dialect, counted=False)

    def _run_batches(self, w: WriteContext, todo: Iterator[Job]) -> Outcomes:
        """Each job with the error it failed with (``None`` if it did not): the consecutive
        jobs of a kind in one call, split in halves while a call fails."""
        outcomes: Outcomes = []
        queue = _Queue(todo)
        while (first := queue.next()) is not None:
            handler = self.handlers[first.kind]
            assert isinstance(handler, Batched)
            outcomes += self._halving(w, handler, queue.run_of(first, self.batch))
        return outcomes

    def _halving(self, w: WriteContext, handler: Batched, jobs: list[Job]) -> Outcomes:
        error = self._savepoint(w, lambda: handler.run(self.rt, w, jobs))
        if error is None or len(jobs) == 1:
            return [(job, error) for job in jobs]
        log.info(
            "a call of %s %s jobs failed (%r); running it in halves", len(jobs), jobs[0].kind, error
        )
        half = len(jobs) // 2
        return self._halving(w, handler, jobs[:half]) + self._halving(w, handler, jobs[half:])

    def _settle(self, session: Session, outcomes: Outcomes) -> None:
        """Mark the taken jobs that succeeded done, the others for a retry."""
        finished = self.rt.clock.now()
        done = [job.id for job, error in outcomes if error is None]
        if done:
            session.execute(self._finishing, {"ids": done, "at": finished})
        for job, error in outcomes:
            if error is not None:
                _log_failure(job, error)
                self._retry_or_fail(session, job, finished, error, taken=True)

    # -- jobs claimed with a lease (the other kinds) -------------------------------------

    def _claim(self, now: datetime) -> list[Job]:
        with self.rt.sessions() as s, s.begin():
            rows = s.execute(
                self._claiming, {"now": now, "until": now + self.lease, "batch": self.batch}
            ).all()
        jobs = claims.jobs(rows, self.rt.engine.dialect, counted=True)
        # By kind within one instant, as a take's jobs are.
        return sorted(jobs, key=lambda job: (job.due_at, job.kind))

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
                    _log_failure(job, error)
                    self._retry_or_fail(w.session, job, finished, error)
        return jobs[len(reached) :]

    def _run_groups(self, w: WriteContext, todo: Iterator[Job]) -> Outcomes:
        """Each job with the error its handler raised (``None`` if it returned): ``group``
        jobs per savepoint; when one fails, the group is undone and its jobs run again, one
        savepoint each."""
        outcomes: Outcomes = []
        queue = _Queue(todo)
        while queue:
            group: list[Job] = []
            error = self._savepoint(w, partial(self._run_group, w, queue, group))
            if error is None or len(group) == 1:
                outcomes += [(job, error) for job in group]
                continue
            log.info("a group of %s jobs failed (%r); running each alone", len(group), error)
            for job in group:
                alone = partial(self._run_group, w, _Queue([job]), [])
                outcomes.append((job, self._savepoint(w, alone)))
        return outcomes

    def _run_group(self, w: WriteContext, todo: _Queue, ran: list[Job]) -> None:
        """Run the next ``group`` jobs of ``todo``, noting in ``ran`` each as it starts (so
        ``hold`` is looked at before each job, not once per group)."""
        while len(ran) < self.group and (job := todo.next()) is not None:
            ran.append(job)
            self.handlers[job.kind](self.rt, w, job)

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
        rows = session.execute(self._holding)
        return {job_id for job_id, attempt in rows if attempts.get(job_id) == attempt}

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
            session.execute(self._marking_done, {"ids": ids, "at": at})

    # -- both ------------------------------------------------------------------------------

    def _savepoint(self, w: WriteContext, run: Callable[[], None]) -> Exception | None:
        """Run ``run`` in a savepoint; the error it raised, with the savepoint's changes
        undone, or ``None``."""
        # The chain's head lives on the context, not in the database: a rolled-back
        # savepoint must take it back too, or the next event would link to a vanished one.
        head = (w.audit_sequence, w.audit_hash)
        try:
            with w.session.begin_nested():
                run()
        except Exception as error:
            w.audit_sequence, w.audit_hash = head
            return error
        return None

    def _retry_or_fail(
        self, session: Session, job: Job, now: datetime, error: Exception, *, taken: bool = False
    ) -> None:
        """Schedule the job's next attempt, or fail it after the last, counting its attempt.
        A job no longer as this worker ran it (the ``WHERE`` is the re-check: claimed by it,
        or, ``taken``, not run since) is left alone."""
        values: dict[str, Any] = {
            "last_error": f"{type(error).__name__}: {error}"[:_ERROR_LENGTH],
            "claimed_until": None,
            "attempts": job.attempt,
        }
        if job.attempt >= self.max_attempts:
            values |= {"status": FAILED, "finished_at": now, "claimed_by": self.name}
        else:
            delay = self.base_delay * 2 ** (job.attempt - 1)
            jitter = 1 + self._random.uniform(0, 0.1)
            values |= {"status": PENDING, "claimed_by": None, "due_at": now + delay * jitter}
        session.execute(claims.retry(job.id, job.attempt, taken=taken, name=self.name, **values))


def _log_failure(job: Job, error: Exception) -> None:
    log.error("job %s (%s) failed, attempt %s", job.id, job.kind, job.attempt, exc_info=error)


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
