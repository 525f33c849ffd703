"""The transactional outbox: write follow-up jobs in the caller's transaction, find the next
due one, and wake this process's workers when a commit enqueued something.

``enqueue`` adds a row to ``jobs`` through the caller's ``WriteContext``: the change and its
follow-ups commit together or not at all. It never commits, and never runs a job. A job with a
``dedupe_key`` already used is not enqueued again (checked under the writer lock every write
holds, with the unique constraint behind it).

``enqueue_many`` is the set-based form, for the worker's batch handlers that enqueue a
follow-up per job of thousands falling due at once: one ``SELECT`` of the taken keys for the
whole list (a key repeated in the list is kept once too) and one ``INSERT`` executed for many
rows, through SQLAlchemy Core — no ORM objects, whose unit of work costs more than the insert.
``enqueue`` leaves its row to the end of the write (``WriteContext.insert_later``), where a
write's jobs are inserted together, in one statement, rather than sent one round trip each.

Waking: after a commit that enqueued jobs, every worker of this process running on the same
database is woken (``listen``). On PostgreSQL the commit also notifies channel
``pimlico_jobs``, which wakes the workers of other processes (``listen_postgres``); on SQLite,
which has no notifications, workers of other processes see the job within their cap.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, event, func, insert, select, text
from sqlalchemy.orm import Session

from pimlico.db.audit import WriteContext
from pimlico.db.tables import Base, JobRow
from pimlico.domain.model import new_id

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
"""The statuses of a job."""

_WAKE_FLAG = "pimlico.jobs.wake_after_commit"
CHANNEL = "pimlico_jobs"
"""The PostgreSQL notification channel a commit that enqueued jobs notifies."""
_NOTIFY = text(f"SELECT pg_notify('{CHANNEL}', '')")
_lock = threading.Lock()
_listeners: dict[str, set[threading.Event]] = {}
_JOBS = Base.metadata.tables[JobRow.__tablename__]
_INSERT_JOBS = insert(_JOBS)
_LATER_KEYS = "pimlico.jobs.later_keys"
"""``WriteContext.info``: the dedupe keys of the jobs ``enqueue`` left to the write's end."""
_KEYS_PER_SELECT = 1000
"""Dedupe keys per ``IN`` list: far below SQLite's and PostgreSQL's limits on parameters."""


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to enqueue (``enqueue_many``); the arguments of ``enqueue``."""

    kind: str
    payload: Mapping[str, Any]
    due_at: datetime
    dedupe_key: str | None = None


def enqueue(
    ctx: WriteContext,
    *,
    kind: str,
    payload: Mapping[str, Any],
    due_at: datetime,
    dedupe_key: str | None = None,
    fresh: bool = False,
) -> str | None:
    """Add a job to the caller's write; its id, or ``None`` when ``dedupe_key`` is taken.

    ``fresh``: the caller knows ``dedupe_key`` is new (it names something made in this
    write), so it is not looked up. The job is inserted when the write finishes, with the
    write's other jobs (``WriteContext.insert_later``) — or, inside a savepoint (the worker's
    handlers), added to the session, so that the savepoint's rollback takes it back."""
    if due_at.tzinfo is None:
        raise ValueError("enqueue needs an aware due_at (UTC)")
    s = ctx.session
    later: set[str] = ctx.info.setdefault(_LATER_KEYS, set())
    if dedupe_key is not None and not fresh:
        taken = dedupe_key in later or s.scalar(
            select(JobRow.id).where(JobRow.dedupe_key == dedupe_key)
        )
        if taken:
            return None
    values = {
        "id": new_id(),
        "kind": kind,
        "payload": dict(payload),
        "due_at": due_at,
        "created_at": ctx.at,
        "attempts": 0,
        "status": PENDING,
        "dedupe_key": dedupe_key,
    }
    if s.in_nested_transaction():
        s.add(JobRow(**values))
    else:
        ctx.insert_later(_JOBS, values)
        if dedupe_key is not None:
            later.add(dedupe_key)
    _wake_after_commit(s)
    return str(values["id"])


def enqueue_many(ctx: WriteContext, jobs: Sequence[NewJob]) -> list[str | None]:
    """Add ``jobs`` to the caller's write in one statement; their ids, in order, ``None`` for
    each whose ``dedupe_key`` is taken (in the store, or earlier in ``jobs``)."""
    if any(job.due_at.tzinfo is None for job in jobs):
        raise ValueError("enqueue_many needs aware due_at instants (UTC)")
    keys = sorted({j.dedupe_key for j in jobs if j.dedupe_key is not None})
    taken = _taken(ctx.session, keys) | (ctx.info.get(_LATER_KEYS, set()) & set(keys))
    ids: list[str | None] = []
    rows = []
    for job in jobs:
        if job.dedupe_key is not None:
            if job.dedupe_key in taken:
                ids.append(None)
                continue
            taken.add(job.dedupe_key)
        ids.append(new_id())
        rows.append(
            {
                "id": ids[-1],
                "kind": job.kind,
                "payload": dict(job.payload),
                "due_at": job.due_at,
                "created_at": ctx.at,
                "attempts": 0,
                "status": PENDING,
                "dedupe_key": job.dedupe_key,
            }
        )
    if rows:
        ctx.session.execute(_INSERT_JOBS, rows)
        _wake_after_commit(ctx.session)
    return ids


def _taken(session: Session, keys: list[str]) -> set[str]:
    """Which of ``keys`` jobs already carry (the session's pending jobs flushed first)."""
    found: set[str | None] = set()
    for start in range(0, len(keys), _KEYS_PER_SELECT):
        chunk = keys[start : start + _KEYS_PER_SELECT]
        found.update(session.scalars(select(JobRow.dedupe_key).where(JobRow.dedupe_key.in_(chunk))))
    return {key for key in found if key is not None}


def _wake_after_commit(session: Session) -> None:
    if not session.info.get(_WAKE_FLAG):
        session.info[_WAKE_FLAG] = True
        event.listen(session, "after_commit", _after_commit, once=True)
        if session.get_bind().dialect.name == "postgresql":
            # Sent just before the commit, in the outer transaction (a savepoint rolled back
            # after the enqueue must not take it along), delivered by PostgreSQL at commit to
            # the workers of every process LISTENing (``listen_postgres``).
            event.listen(session, "before_commit", _notify, once=True)


def next_due(session: Session, kinds: Collection[str] | None = None) -> datetime | None:
    """When the next job (of ``kinds``, default all) becomes claimable: the earliest due
    pending job or the earliest lease of a running one; ``None`` when there is none."""
    pending = select(func.min(JobRow.due_at)).where(JobRow.status == PENDING)
    leases = select(func.min(JobRow.claimed_until)).where(JobRow.status == RUNNING)
    if kinds is not None:
        pending = pending.where(JobRow.kind.in_(list(kinds)))
        leases = leases.where(JobRow.kind.in_(list(kinds)))
    found = [at for at in (session.scalar(pending), session.scalar(leases)) if at is not None]
    return min(found, default=None)


def listen(session: Session, wake: threading.Event) -> None:
    """Set ``wake`` after every commit in this process that enqueues jobs on ``session``'s
    database."""
    with _lock:
        _listeners.setdefault(_database_of(session), set()).add(wake)


def unlisten(session: Session, wake: threading.Event) -> None:
    with _lock:
        _listeners.get(_database_of(session), set()).discard(wake)


def _notify(session: Session) -> None:
    session.execute(_NOTIFY)


def _after_commit(session: Session) -> None:
    session.info.pop(_WAKE_FLAG, None)
    with _lock:
        waiting = list(_listeners.get(_database_of(session), ()))
    for wake in waiting:
        wake.set()


def _database_of(session: Session) -> str:
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    return engine.url.render_as_string(hide_password=False)


def listen_postgres(engine: Engine, wake: threading.Event, stop: threading.Event) -> None:
    """Set ``wake`` on every notification of a commit that enqueued jobs, until ``stop``.

    Runs in its own thread with its own connection (autocommit, ``LISTEN pimlico_jobs``),
    looking at ``stop`` every second. Returns at once for a database that is not PostgreSQL.
    A lost connection ends it (the worker's cap still bounds its sleep).
    """
    if engine.dialect.name != "postgresql":
        return
    import psycopg  # PostgreSQL only

    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"LISTEN {CHANNEL}")
        while not stop.is_set():
            for _ in connection.notifies(timeout=1.0, stop_after=1):
                wake.set()
