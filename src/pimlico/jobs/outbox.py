"""The transactional outbox: write follow-up jobs in the caller's transaction, find the next
due one, and wake this process's workers when a commit enqueued something.

``enqueue`` adds a row to ``jobs`` through the caller's ``WriteContext``: the change and its
follow-ups commit together or not at all. It never commits, and never runs a job. A job with a
``dedupe_key`` already used is not enqueued again (checked under the writer lock every write
holds, with the unique constraint behind it).

Waking: after a commit that enqueued jobs, every worker of this process running on the same
database is woken (``listen``); workers in other processes see the job within their cap.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session

from pimlico.db.audit import WriteContext
from pimlico.db.tables import JobRow
from pimlico.domain.model import new_id

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
"""The statuses of a job."""

_WAKE_FLAG = "pimlico.jobs.wake_after_commit"
_lock = threading.Lock()
_listeners: dict[str, set[threading.Event]] = {}


def enqueue(
    ctx: WriteContext,
    *,
    kind: str,
    payload: Mapping[str, Any],
    due_at: datetime,
    dedupe_key: str | None = None,
) -> str | None:
    """Add a job to the caller's write; its id, or ``None`` when ``dedupe_key`` is taken."""
    if due_at.tzinfo is None:
        raise ValueError("enqueue needs an aware due_at (UTC)")
    s = ctx.session
    if dedupe_key is not None:
        taken = s.scalar(select(JobRow.id).where(JobRow.dedupe_key == dedupe_key))
        if taken is not None:
            return None
    job = JobRow(
        id=new_id(),
        kind=kind,
        payload=dict(payload),
        due_at=due_at,
        created_at=ctx.at,
        attempts=0,
        status=PENDING,
        dedupe_key=dedupe_key,
    )
    s.add(job)
    if not s.info.get(_WAKE_FLAG):
        s.info[_WAKE_FLAG] = True
        event.listen(s, "after_commit", _after_commit, once=True)
    return job.id


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
