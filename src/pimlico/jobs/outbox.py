"""The transactional outbox: write follow-up jobs in the caller's transaction, find the next
due one, and wake this process's workers when a commit enqueued something.

``enqueue`` adds a row to ``jobs`` through the caller's ``WriteContext``: the change and its
follow-ups commit together or not at all. It never commits, and never runs a job. A job with a
``dedupe_key`` already used is not enqueued again (checked under the writer lock every write
holds, with the unique constraint behind it).

``enqueue_many`` is the set-based form, for the worker's batch handlers that enqueue a
follow-up per job of thousands falling due at once: one ``SELECT`` of the taken keys for the
whole list (a key repeated in the list, or left by ``enqueue`` to the write's end, is kept
once too) and one bulk insert — ``COPY`` on PostgreSQL (17 to 27 µs a row where an
``executemany`` took 33 to 45 µs), the driver's ``executemany`` on SQLite. Rows go to the
driver as they will be stored: no ORM objects (whose unit of work costs more than the insert)
and no SQLAlchemy parameter processing per row (which cost more than SQLite's own insert); on
PostgreSQL they are written as the ``COPY``'s text here, not by psycopg row by row.
``enqueue_encoded`` takes payloads that are JSON text already, so that an event is serialised
once, by pydantic, not built as a dict and dumped again (``jobs.events``);
``enqueue_streamed`` takes them as they are made, for jobs without a ``dedupe_key``, and on
PostgreSQL streams them into the ``COPY``, so that the database stores the first while the
caller makes the next. Bulk-enqueued jobs get time-ordered ids (``time_ordered_ids``).

``enqueue`` leaves its row to the end of the write (``WriteContext.insert_later``), where a
write's jobs are inserted together, in one statement, rather than sent one round trip each.

For the worker's statements about a thousand rows at once: ``one_of`` (ids as one parameter)
and ``as_stored``/``instants`` (instants read as stored, decoded once per distinct value).

Waking: after a commit that enqueued jobs, every worker of this process running on the same
database is woken (``listen``). On PostgreSQL the commit also notifies channel
``pimlico_jobs``, which wakes the workers of other processes (``listen_postgres``); on SQLite,
which has no notifications, workers of other processes see the job within their cap.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Dialect,
    Engine,
    Text,
    TypeDecorator,
    any_,
    bindparam,
    event,
    func,
    select,
    text,
    type_coerce,
)
from sqlalchemy.orm import Session
from sqlalchemy.types import NullType

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
_COLUMNS = ("id", "kind", "payload", "due_at", "created_at", "attempts", "status", "dedupe_key")
"""The columns a bulk insert fills, in the order of its rows."""
_NAMES = ", ".join(_COLUMNS)
_COPY = f"COPY {_JOBS.name} ({_NAMES}) FROM STDIN"
_MARKS = ", ".join("?" * len(_COLUMNS))
_INSERT_SQLITE = f"INSERT INTO {_JOBS.name} ({_NAMES}) VALUES ({_MARKS})"  # noqa: S608 (constants)
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


@dataclass(frozen=True, slots=True)
class EncodedJob:
    """A job to enqueue whose ``payload`` is a JSON object's text already (``enqueue_encoded``)."""

    kind: str
    payload: str
    due_at: datetime
    dedupe_key: str | None = None


def encode_payload(payload: Mapping[str, Any]) -> str:
    """A payload as the JSON text a job stores."""
    return json.dumps(dict(payload), separators=(",", ":"))


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
    return enqueue_encoded(
        ctx, [EncodedJob(j.kind, encode_payload(j.payload), j.due_at, j.dedupe_key) for j in jobs]
    )


def enqueue_encoded(ctx: WriteContext, jobs: Sequence[EncodedJob]) -> list[str | None]:
    """``enqueue_many`` for payloads that are JSON text already (``encode_payload``), stored
    as they are."""
    if any(job.due_at.tzinfo is None for job in jobs):
        raise ValueError("enqueue_many needs aware due_at instants (UTC)")
    keys = {j.dedupe_key for j in jobs if j.dedupe_key is not None}
    taken = _taken(ctx.session, sorted(keys)) | (keys & ctx.info.get(_LATER_KEYS, set()))
    connection = ctx.session.connection()
    stored = _stored_instants(connection)
    created = stored(ctx.at)
    fresh = iter(time_ordered_ids(len(jobs)))
    ids: list[str | None] = []
    rows: list[tuple[Any, ...]] = []
    for job in jobs:
        if job.dedupe_key is not None:
            if job.dedupe_key in taken:
                ids.append(None)
                continue
            taken.add(job.dedupe_key)
        ids.append(next(fresh))
        due = created if job.due_at == ctx.at else stored(job.due_at)
        rows.append((ids[-1], job.kind, job.payload, due, created, 0, PENDING, job.dedupe_key))
    if _insert(connection, rows):
        _wake_after_commit(ctx.session)
    return ids


def enqueue_streamed(ctx: WriteContext, jobs: Iterable[EncodedJob]) -> int:
    """Add ``jobs``, which have no ``dedupe_key``, to the caller's write as they come; how
    many. On PostgreSQL the ``COPY`` is sent as the jobs are made, so the database stores the
    first while the caller makes the next (the worker's batch handlers publish a thousand
    events at a time)."""
    connection = ctx.session.connection()
    stored = _stored_instants(connection)
    created = stored(ctx.at)

    def rows() -> Iterator[tuple[Any, ...]]:
        for job, id_ in zip(jobs, _fresh_ids(), strict=False):
            if job.dedupe_key is not None:
                raise ValueError("enqueue_streamed takes jobs without a dedupe_key")
            if job.due_at.tzinfo is None:
                raise ValueError("enqueue_streamed needs aware due_at instants (UTC)")
            due = created if job.due_at == ctx.at else stored(job.due_at)
            yield (id_, job.kind, job.payload, due, created, 0, PENDING, None)

    count = _insert(connection, rows())
    if count:
        _wake_after_commit(ctx.session)
    return count


def _fresh_ids() -> Iterator[str]:
    while True:
        yield from time_ordered_ids(256)


def time_ordered_ids(count: int) -> list[str]:
    """``count`` fresh ids for jobs: UUIDs of version 7 (RFC 9562), the instant (to the
    millisecond, by the wall clock) then 74 random bits.

    Ids in the order they are made keep a bulk insert's entries of the primary key together,
    at the end of its index: random ones (version 4, ``new_id``) scattered a thousand jobs over
    as many of its pages, each then written at the commit — on SQLite, half the time of
    running a thousand jobs that each publish an event went to writing those pages."""
    stamp = f"{time.time_ns() // 1_000_000:012x}"
    hexes = os.urandom(10 * count).hex()
    return [
        f"{stamp[:8]}-{stamp[8:]}-7{r[:3]}-{_VARIANT[r[3]]}{r[4:7]}-{r[7:19]}"
        for r in (hexes[20 * i : 20 * i + 20] for i in range(count))
    ]


_VARIANT = {digit: "89ab"[int(digit, 16) % 4] for digit in "0123456789abcdef"}
"""A random hex digit as the digit that starts an RFC 9562 UUID's variant field (``10xx``)."""


def _stored_instants(connection: Connection) -> Callable[[datetime], Any]:
    """How the connection's driver is given an instant of ``jobs`` (SQLAlchemy's own bind
    processing of the column, applied here once per distinct instant, not once per row)."""
    dialect = connection.dialect
    process = _JOBS.c.due_at.type.dialect_impl(dialect).bind_processor(dialect)
    return (lambda at: at) if process is None else process


def _insert(connection: Connection, rows: Iterable[tuple[Any, ...]]) -> int:
    """Insert ``rows`` (in ``_COLUMNS`` order, values as the driver takes them) in one go, as
    they come; how many."""
    if connection.dialect.name != "postgresql":
        listed = list(rows)
        if listed:
            connection.exec_driver_sql(_INSERT_SQLITE, listed)
        return len(listed)
    first = next(iter_rows := iter(rows), None)
    if first is None:
        return 0
    driver = connection.connection.driver_connection
    assert driver is not None
    count = 0
    line = _copy_lines()
    with driver.cursor() as cursor, cursor.copy(_COPY) as copy:
        lines: list[str] = []
        for row in chain([first], iter_rows):
            lines.append(line(row))
            count += 1
            if len(lines) == _LINES_PER_WRITE:
                copy.write("".join(lines))
                lines = []
        if lines:
            copy.write("".join(lines))
    return count


_LINES_PER_WRITE = 64
"""Rows sent to the ``COPY`` at a time: the database stores them while the next are made."""


def _copy_lines() -> Callable[[tuple[Any, ...]], str]:
    """A maker of a row's line of ``COPY`` text, each instant formatted once (a burst's jobs
    share theirs). Made here, not by psycopg's ``write_row``, which took 7 to 10 µs a row to
    find and call the dumper of each value, where this takes one or two."""
    instants: dict[datetime, str] = {}

    def when(at: datetime) -> str:
        text = instants.get(at)
        if text is None:
            if at.tzinfo is not None:
                raise ValueError("a job's instant reaches the COPY as stored: naive UTC")
            text = instants[at] = at.isoformat(" ")
        return text

    def line(row: tuple[Any, ...]) -> str:
        id_, kind, payload, due, created, attempts, status, key = row
        key_text = _NULL if key is None else _escaped(key)
        return (
            f"{_escaped(id_)}\t{_escaped(kind)}\t{_escaped(payload)}\t{when(due)}\t"
            f"{when(created)}\t{int(attempts)}\t{_escaped(status)}\t{key_text}\n"
        )

    return line


_NULL = "\\N"


def _escaped(text: str) -> str:
    """``text`` as a value of ``COPY``'s text format: backslash, tab, newline and carriage
    return escaped (the only characters that format gives a meaning to in a value)."""
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    if "\t" in text or "\n" in text or "\r" in text:
        text = text.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


class _Ids(TypeDecorator[list[str]]):
    """A list of ids as one text parameter: comma-separated on PostgreSQL
    (``string_to_array``), a JSON array on SQLite (``json_each``)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: list[str] | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if dialect.name != "postgresql":
            return json.dumps(value)
        text = ",".join(value)
        if text.count(",") != len(value) - 1:
            raise ValueError("an id holds a comma")
        return text


def one_of(column: ColumnElement[str], name: str, *, dialect: str) -> ColumnElement[bool]:
    """``column`` is one of the ids given, as a list, in the parameter ``name`` — for the
    worker's statements about a thousand jobs or assignments at once. As an ``IN`` list,
    SQLAlchemy rendered each id (with a cast, on PostgreSQL) on every statement; as an array,
    psycopg quoted each, and that took a third of the time of reading a thousand rows."""
    ids = bindparam(name, type_=_Ids())
    if dialect == "postgresql":
        return column == any_(func.string_to_array(ids, ","))
    return column.in_(select(func.json_each(ids).table_valued("value").c.value))


def as_stored(column: ColumnElement[datetime]) -> ColumnElement[Any]:
    """The instant ``column`` as the driver reads it, for ``instants`` to decode."""
    return type_coerce(column, NullType()).label(column.key)


def instants(dialect: Dialect) -> Callable[[Any], datetime | None]:
    """A decoder of the instants one statement read ``as_stored``: SQLAlchemy's own processing
    of the column, applied once per distinct stored value. The jobs and assignments of a
    burst share their instants, and processing each value (1.5 µs, three a job) took 5 % of
    the worker's time per job."""
    process = _JOBS.c.due_at.type.dialect_impl(dialect).result_processor(dialect, None)
    decoded: dict[Any, datetime | None] = {}

    def decode(stored: Any) -> datetime | None:
        if stored in decoded:
            return decoded[stored]
        at = decoded[stored] = stored if process is None else process(stored)
        return at

    return decode


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


def listen_postgres(
    engine: Engine,
    wake: threading.Event,
    stop: threading.Event,
    *,
    channel: str = CHANNEL,
    every: float = 1.0,
) -> None:
    """Set ``wake`` on every notification on ``channel`` (by default, of a commit that
    enqueued jobs), until ``stop``.

    Runs in its own thread with its own connection (autocommit, ``LISTEN``), looking at
    ``stop`` every ``every`` seconds. Returns at once for a database that is not PostgreSQL.
    A lost connection ends it (the worker's cap still bounds its sleep).
    """
    if engine.dialect.name != "postgresql":
        return
    import psycopg  # PostgreSQL only

    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"LISTEN {channel}")
        while not stop.is_set():
            for _ in connection.notifies(timeout=every, stop_after=1):
                wake.set()
