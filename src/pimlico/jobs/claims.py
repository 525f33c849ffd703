"""How a worker finds its due jobs, reads them, and records what became of them.

Owns the SQL the worker runs on ``jobs`` — which jobs are due and in which order, how a take,
a claim, a ``done`` and a retry are written — and the ``Job`` as read. It must not run
handlers or open transactions (``jobs.worker`` does).

Due jobs are pending jobs due by ``now`` and running jobs whose lease ran out by ``now``, each
set found by its own ordered scan of ``ix_jobs_status`` that stops after ``batch`` rows (one
``WHERE`` with an ``OR`` of both made both databases sort every due job on every claim, in
time quadratic in a burst). On PostgreSQL the scans lock what they find, ``FOR UPDATE SKIP
LOCKED``, so that several workers find disjoint jobs. A job is read with its payload as its
stored JSON text and its due instant as stored (``outbox.instants`` decodes it).

- ``take``: the jobs of the batch kinds, read inside the write that runs them.
- ``claim``: the other kinds, ``WITH … due AS MATERIALIZED (SELECT … LIMIT batch) UPDATE …
  FROM due RETURNING``, marked ``running`` with a lease (``claimed_until``), counting an
  attempt, in a transaction of their own.
- ``finish`` (taken jobs) and ``mark_done`` (claimed ones): the jobs whose handlers returned,
  in one ``UPDATE`` with their ids as one parameter (``outbox.one_of``).

A job's payload reaches its handler as read (``JSONPayload``); a batch handler that reads
them all decodes them together (``decode_all``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    Dialect,
    Select,
    Text,
    Update,
    and_,
    bindparam,
    cast,
    or_,
    select,
    union_all,
    update,
)

from pimlico.db.tables import Base, JobRow
from pimlico.jobs.outbox import DONE, PENDING, RUNNING, as_stored, instants, one_of

JOBS = Base.metadata.tables[JobRow.__tablename__]
READ = (
    JOBS.c.id,
    JOBS.c.kind,
    cast(JOBS.c.payload, Text).label("payload"),
    as_stored(JOBS.c.due_at),
    JOBS.c.attempts,
)
"""What a take or a claim reads of each job."""


class JSONPayload(Mapping[str, Any]):
    """A job's payload as the worker read it: its stored JSON text (``text``), decoded on
    first use. Ten thousand published events fall due at once when a shift ends, and their
    fan-out, with no consumers, never reads them; with consumers, it passes the text on."""

    __slots__ = ("_value", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._value: dict[str, Any] | None = None

    def _decoded(self) -> dict[str, Any]:
        if self._value is None:
            self._value = json.loads(self.text)
        return self._value

    def __getitem__(self, key: str) -> Any:
        value = self._value  # (inline: a handler reads a few keys of each of 1,000 jobs)
        if value is None:
            value = self._value = json.loads(self.text)
        return value[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())

    def __repr__(self) -> str:
        return f"JSONPayload({self.text!r})"


def decode_all(payloads: Iterable[Mapping[str, Any]]) -> None:
    """Decode the payloads of ``payloads`` read as text and not decoded yet, in one
    ``json.loads`` of them all (a batch handler about to read every one): a call per payload
    took six times as long as the parsing itself. If that fails, each is left to be decoded
    (and to fail) on its own."""
    lazy = [p for p in payloads if isinstance(p, JSONPayload) and p._value is None]
    if not lazy:
        return
    try:
        values = json.loads(f"[{','.join(p.text for p in lazy)}]")
    except ValueError:
        return
    if len(values) != len(lazy):  # (not for a stored payload: each is one JSON value)
        return
    for payload, value in zip(lazy, values, strict=True):
        if isinstance(value, dict):
            payload._value = value


@dataclass(frozen=True, slots=True)
class Job:
    """A job as its handler sees it; ``attempt`` counts from 1."""

    id: str
    kind: str
    payload: Mapping[str, Any]
    due_at: datetime
    attempt: int


def jobs(rows: Iterable[Sequence[Any]], dialect: Dialect, *, counted: bool) -> list[Job]:
    """The jobs of ``rows`` read as ``READ`` by a take (``counted``: ``False``, the attempt
    is counted when the job is done) or a claim (``True``, the claim counted it)."""
    at, extra = instants(dialect), 0 if counted else 1
    found = []
    for id_, kind, payload, due, attempts in rows:
        due_at = at(due)
        assert due_at is not None  # (a job always has its due instant)
        found.append(Job(id_, kind, JSONPayload(payload), due_at, attempts + extra))
    return found


_ARMS = (
    ("pending", and_(JOBS.c.status == PENDING, JOBS.c.due_at <= bindparam("now"))),
    ("lapsed", and_(JOBS.c.status == RUNNING, JOBS.c.claimed_until <= bindparam("now"))),
)


def take(kinds: list[str], *, postgres: bool) -> Select[Any]:
    """The first ``batch`` due jobs of ``kinds`` at ``now``, in due order then kind order (so
    a batch kind's jobs come in long runs), locked until the transaction ends."""
    arms = [_first_due(kinds, condition, postgres, arm) for arm, condition in _ARMS]
    both = union_all(*(select(*arm.c) for arm in arms)).subquery()
    return select(*both.c).order_by(both.c.due_at, both.c.kind).limit(bindparam("batch"))


def take_one(kinds: list[str], *, postgres: bool) -> Select[Any]:
    """The job ``id`` if it is still due at ``now`` and has run ``attempts`` times (not since
    it was taken), locked until the transaction ends."""
    pending, lapsed = (condition for _, condition in _ARMS)
    job = select(*READ).where(
        JOBS.c.id == bindparam("id"),
        JOBS.c.attempts == bindparam("attempts"),
        JOBS.c.kind.in_(kinds),
        or_(pending, lapsed),
    )
    return job.with_for_update() if postgres else job


def claim(kinds: list[str], *, name: str, postgres: bool) -> Update:
    """Claim the first ``batch`` due jobs of ``kinds`` at ``now`` for the worker ``name``,
    leased ``until``; reads them (in no order)."""
    arms = [_first_due(kinds, condition, postgres, arm) for arm, condition in _ARMS]
    both = union_all(*(select(arm.c.id, arm.c.due_at) for arm in arms)).subquery()
    # Materialized and joined, so the select runs once: as ``IN (subquery)``, PostgreSQL
    # may plan a semi-join that re-runs it per row and claims far more than ``batch`` jobs,
    # in time quadratic in the due jobs.
    chosen = (
        select(both.c.id)
        .order_by(both.c.due_at)
        .limit(bindparam("batch"))
        .cte("due")
        .prefix_with("MATERIALIZED")
    )
    return (
        update(JOBS)
        .where(JOBS.c.id == chosen.c.id)
        .values(
            status=RUNNING,
            claimed_by=name,
            claimed_until=bindparam("until", type_=JOBS.c.claimed_until.type),
            attempts=JOBS.c.attempts + 1,
        )
        .returning(*READ)
    )


def finish(*, name: str, dialect: str) -> Update:
    """Taken jobs ``ids`` done ``at``, by the worker ``name``, their attempt counted."""
    return (
        update(JOBS)
        .where(one_of(JOBS.c.id, "ids", dialect=dialect))
        .values(
            status=DONE,
            finished_at=bindparam("at", type_=JOBS.c.finished_at.type),
            claimed_by=name,
            claimed_until=None,
            attempts=JOBS.c.attempts + 1,
        )
    )


def mark_done(*, dialect: str) -> Update:
    """Claimed jobs ``ids`` done ``at`` (their attempt was counted by the claim)."""
    return (
        update(JOBS)
        .where(one_of(JOBS.c.id, "ids", dialect=dialect))
        .values(
            status=DONE,
            finished_at=bindparam("at", type_=JOBS.c.finished_at.type),
            claimed_until=None,
        )
    )


def still_held(name: str) -> Select[Any]:
    """Every job the worker ``name`` holds, with its attempts, locked until the transaction
    ends — the rest of its claim too, which no one else may take either — rather than some
    by an ``IN`` list of their ids: on PostgreSQL, rendering and parsing a list of 500 ids
    cost more than the select."""
    return (
        select(JOBS.c.id, JOBS.c.attempts)
        .where(JOBS.c.status == RUNNING, JOBS.c.claimed_by == name)
        .with_for_update()
    )


def retry(job_id: str, attempt: int, *, taken: bool, name: str, **values: Any) -> Update:
    """Set ``values`` on the job ``job_id`` if it is still as the worker ``name`` ran it for
    its attempt ``attempt``: claimed by it, or, ``taken``, not run since (the ``WHERE`` is the
    re-check)."""
    held: list[ColumnElement[bool]] = (
        [JOBS.c.status.in_([PENDING, RUNNING]), JOBS.c.attempts == attempt - 1]
        if taken
        else [JOBS.c.status == RUNNING, JOBS.c.claimed_by == name, JOBS.c.attempts == attempt]
    )
    return update(JOBS).where(JOBS.c.id == job_id, *held).values(**values)


def _first_due(kinds: list[str], condition: ColumnElement[bool], postgres: bool, name: str) -> CTE:
    """The first ``batch`` jobs of ``kinds`` meeting ``condition``, by due time, as a
    materialized CTE (locked, skipping locked ones, on PostgreSQL)."""
    arm = (
        select(*READ)
        .where(JOBS.c.kind.in_(kinds), condition)
        .order_by(JOBS.c.due_at)
        .limit(bindparam("batch"))
    )
    if postgres:
        arm = arm.with_for_update(skip_locked=True)
    return arm.cte(name).prefix_with("MATERIALIZED")
