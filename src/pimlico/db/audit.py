"""The audit write path every service uses, and reading, verifying and exporting the log.

A write transaction is::

    ctx = begin_write(session, actor=..., at=clock.now())   # first statement: locks pim_state
    ...change rows...; ctx.record(action=..., target_type=..., target_id=..., before=..., after=...)
    revision = finish_write(ctx)                             # then the caller commits

``record`` chains the event at once but keeps it on the context; ``finish_write`` inserts a
write's events in one statement (``db.bulk``: ``COPY`` on PostgreSQL), then the head.
(Nothing reads a write's own events before it commits, and each one the session flushed on
its way would cost a round trip under the lock.)

``begin_write`` must be the transaction's first statement: its ``UPDATE pim_state`` takes the
one row lock every writer takes, which serialises writers. That is what makes revisions
gap-free and in commit order, and the chain linear; on SQLite it also takes the write lock
before anything is read, so writers queue (``busy_timeout``) instead of deadlocking on a lock
upgrade. Events are never updated or deleted here, and there is no retention limit.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from sqlalchemy import ColumnElement, Table, bindparam, select, update
from sqlalchemy.orm import Session

from pimlico.db.bulk import insert_rows
from pimlico.db.tables import AuditEventRow, Base, PimStateRow
from pimlico.domain.audit import AuditRecord, canonical_json, compute_hash, verify_chain
from pimlico.errors import BrokenLink, FieldError, InvalidInput

EXPORT_FIELDS = (
    "sequence",
    "revision",
    "occurred_at",
    "actor",
    "action",
    "target_type",
    "target_id",
    "before",
    "after",
    "reason",
    "request_id",
    "prev_hash",
    "hash",
)
"""The columns of an export, in order (the CSV header)."""

# The widths of the audit_events columns: checked here so that SQLite (which does not enforce
# them) refuses what PostgreSQL would refuse.
_MAX_LENGTHS = {"actor": 256, "action": 128, "target_type": 32, "target_id": 256, "request_id": 64}

# Every write runs these, inside the lock: built once (a statement is immutable, and
# SQLAlchemy keeps its cache key on it), on the tables rather than the entities (Core
# statements skip the ORM's bulk-update machinery: about half the cost of each).
_STATE = Base.metadata.tables[PimStateRow.__tablename__]
_NEXT_REVISION = (
    update(_STATE)
    .where(_STATE.c.id == 1)
    .values(revision=_STATE.c.revision + 1)
    .returning(_STATE.c.revision, _STATE.c.audit_sequence, _STATE.c.audit_hash)
)
_WRITE_HEAD = (
    update(_STATE)
    .where(_STATE.c.id == 1)
    .values(audit_sequence=bindparam("head_sequence"), audit_hash=bindparam("head_hash"))
)
_EVENTS = Base.metadata.tables[AuditEventRow.__tablename__]


@dataclass
class WriteContext:
    """One write transaction: its revision, who acts, when, and the audit chain's head so far."""

    session: Session
    revision: int
    actor: str | None
    at: datetime
    request_id: str | None
    audit_sequence: int = field(repr=False, default=0)
    audit_hash: str = field(repr=False, default="")
    _finished: bool = field(repr=False, default=False)
    _events: list[dict[str, Any]] = field(repr=False, default_factory=list)
    _later: dict[Table, list[dict[str, Any]]] = field(repr=False, default_factory=dict)
    info: dict[str, Any] = field(repr=False, default_factory=dict)
    """What the modules writing in this write keep about it until it ends."""
    stored: dict[tuple[str, str], Any] = field(repr=False, default_factory=dict)
    """Entities this write stores, ``(type, id)`` → the entity exactly as it will commit, so
    that the decision index can follow the write without reading them back. Only for rows
    nothing changes again in the same write (those added by ``insert_later``)."""

    def insert_later(self, table: Table, values: dict[str, Any]) -> None:
        """Insert a row of ``table`` when the write finishes, with the other rows of that
        table added so, in one statement (``executemany``) — far cheaper than the ORM's unit
        of work, for a caller that adds many rows nobody reads back before the commit. Not
        inside a savepoint, whose rollback would not take the row back."""
        if self._finished:
            raise RuntimeError("insert_later() after finish_write()")
        if self.session.in_nested_transaction():
            raise RuntimeError("insert_later() inside a savepoint: its rollback would keep the row")
        self._later.setdefault(table, []).append(values)

    def record(
        self,
        *,
        action: str,
        target_type: str,
        target_id: str,
        before: Mapping[str, object] | None,
        after: Mapping[str, object] | None,
        reason: str | None = None,
    ) -> None:
        """Append one audit event to this transaction, chained to the one before it."""
        if self._finished:
            raise RuntimeError("record() after finish_write(): the chain head is already written")
        _check_lengths(action=action, target_type=target_type, target_id=target_id)
        before_json = None if before is None else canonical_json(dict(before))
        after_json = None if after is None else canonical_json(dict(after))
        sequence = self.audit_sequence + 1
        digest = compute_hash(
            self.audit_hash,
            sequence=sequence,
            revision=self.revision,
            occurred_at=self.at,
            actor=self.actor,
            action=action,
            target_type=target_type,
            target_id=target_id,
            before=before_json,
            after=after_json,
            reason=reason,
            request_id=self.request_id,
        )
        self._forget_undone()
        self._events.append(
            {
                "sequence": sequence,
                "revision": self.revision,
                "occurred_at": self.at,
                "actor": self.actor,
                "action": action,
                "target_type": target_type,
                "target_id": target_id,
                "before": before_json,
                "after": after_json,
                "reason": reason,
                "request_id": self.request_id,
                "prev_hash": self.audit_hash,
                "hash": digest,
            }
        )
        self.audit_sequence = sequence
        self.audit_hash = digest

    def changes(self) -> list[tuple[str, str]]:
        """``(target_type, target_id)`` of the events recorded so far, in order, each once:
        what this write changes, as ``changes_since`` will report it once committed."""
        self._forget_undone()
        return list(dict.fromkeys((e["target_type"], e["target_id"]) for e in self._events))

    def _forget_undone(self) -> None:
        # A caller that rolls back a savepoint sets the chain head back with it (the worker
        # does): the events recorded past the head went with the savepoint.
        while self._events and self._events[-1]["sequence"] > self.audit_sequence:
            self._events.pop()


def begin_write(
    session: Session, *, actor: str | None, at: datetime, request_id: str | None = None
) -> WriteContext:
    """Start a write: take the next revision and lock the store's state row until commit.

    Must be the first statement of the transaction (see the module docstring). ``at`` is the
    instant every event of this write carries; it must be timezone-aware.
    """
    if at.tzinfo is None:
        raise ValueError("begin_write needs an aware datetime (UTC)")
    _check_lengths(actor=actor, request_id=request_id)
    row = session.execute(_NEXT_REVISION).one_or_none()
    if row is None:
        raise RuntimeError("pim_state has no row: is the database migrated?")
    revision, audit_sequence, audit_hash = row
    return WriteContext(
        session=session,
        revision=revision,
        actor=actor,
        at=at.astimezone(UTC),
        request_id=request_id,
        audit_sequence=audit_sequence,
        audit_hash=audit_hash,
    )


def finish_write(ctx: WriteContext) -> int:
    """Write the chain head back to ``pim_state`` and flush; returns the write's revision.

    The caller commits (or rolls back, which undoes the revision and the events alike).
    """
    if ctx._finished:
        raise RuntimeError("finish_write() called twice for one write")
    ctx.session.flush()
    for table, rows in ctx._later.items():
        insert_rows(ctx.session, table, rows)
    ctx._forget_undone()
    insert_rows(ctx.session, _EVENTS, ctx._events)
    ctx.session.execute(
        _WRITE_HEAD, {"head_sequence": ctx.audit_sequence, "head_hash": ctx.audit_hash}
    )
    ctx._finished = True
    return ctx.revision


def current_revision(session: Session) -> int:
    """The store's revision: the number of the last committed write (0 when none)."""
    return session.execute(select(PimStateRow.revision).where(PimStateRow.id == 1)).scalar_one()


def changes_since(session: Session, revision: int) -> list[tuple[int, str, str]]:
    """``(revision, target_type, target_id)`` changed after ``revision``, in order, each once.

    This is the change feed the decision index follows to stay fresh.
    """
    rows = session.execute(
        select(AuditEventRow.revision, AuditEventRow.target_type, AuditEventRow.target_id)
        .where(AuditEventRow.revision > revision)
        .order_by(AuditEventRow.sequence)
    )
    return list(dict.fromkeys((row[0], row[1], row[2]) for row in rows))


def verify(session: Session, *, batch: int = 5000) -> BrokenLink | None:
    """Check the whole chain against ``pim_state``'s head; the first broken event, or ``None``.

    Streams the chain in batches of ``batch`` events, so memory does not grow with the log.
    Writes that commit while this runs are not checked (the head is read first); events found
    beyond the head are reported, since nothing but tampering puts them there.
    """
    head = session.execute(
        select(PimStateRow.audit_sequence, PimStateRow.audit_hash).where(PimStateRow.id == 1)
    ).one_or_none()
    if head is None:
        return BrokenLink(0, "pim_state has no row: the chain head is missing")
    head_sequence, head_hash = head
    broken = verify_chain(
        _stream(session, batch=batch, up_to=head_sequence),
        expected_head=(head_sequence, head_hash),
    )
    if broken is not None:
        return broken
    # One statement, so it sees the events and the head of the same committed state.
    beyond = session.execute(
        select(AuditEventRow.sequence)
        .where(
            AuditEventRow.sequence
            > select(PimStateRow.audit_sequence).where(PimStateRow.id == 1).scalar_subquery()
        )
        .order_by(AuditEventRow.sequence)
        .limit(1)
    ).scalar_one_or_none()
    if beyond is not None:
        return BrokenLink(beyond, f"event {beyond} is beyond the recorded head (inserted)")
    return None


def query(
    session: Session,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    actor: str | None = None,
    action: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    limit: int | None = None,
    after_sequence: int | None = None,
    before_sequence: int | None = None,
    newest_first: bool = False,
) -> list[AuditRecord]:
    """Events in sequence order (or newest first) that match every filter given.

    ``since`` is inclusive and ``until`` exclusive (``since <= occurred_at < until``), like
    every window in Pimlico. ``after_sequence`` is the cursor: pass the last sequence seen
    (``before_sequence``, newest first).
    """
    conditions = _filters(
        since=since,
        until=until,
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
    )
    if after_sequence is not None:
        conditions.append(AuditEventRow.sequence > after_sequence)
    if before_sequence is not None:
        conditions.append(AuditEventRow.sequence < before_sequence)
    return _select(session, conditions, limit=limit, descending=newest_first)


def export(
    session: Session,
    out: TextIO,
    *,
    format: Literal["jsonl", "csv"],
    since: datetime | None = None,
    until: datetime | None = None,
    actor: str | None = None,
    batch: int = 1000,
) -> int:
    """Write the matching events to ``out``, ``batch`` at a time; returns how many.

    ``jsonl``: one canonical JSON object per line, ``before``/``after`` as objects.
    ``csv``: a header row (``EXPORT_FIELDS``), then one row per event, ``before``/``after``
    as JSON text, a missing value as an empty cell (JSON lines is the lossless format).
    Every field is exported, hashes included, so an export can be re-verified with
    ``pimlico.domain.audit.verify_chain``. Values are written as they are stored, not
    escaped for spreadsheets: a spreadsheet opening the CSV should not evaluate cells.
    """
    if format not in ("jsonl", "csv"):
        raise ValueError(f"unknown export format {format!r}: use 'jsonl' or 'csv'")
    writer = csv.writer(out, lineterminator="\n") if format == "csv" else None
    if writer is not None:
        writer.writerow(EXPORT_FIELDS)
    count = 0
    after_sequence: int | None = None
    while True:
        records = query(
            session,
            since=since,
            until=until,
            actor=actor,
            limit=batch,
            after_sequence=after_sequence,
        )
        for record in records:
            if writer is None:
                out.write(canonical_json(record.as_dict()) + "\n")
            else:
                writer.writerow(csv_row(record))
        count += len(records)
        if len(records) < batch:
            return count
        after_sequence = records[-1].sequence


def csv_row(record: AuditRecord) -> list[object]:
    """``record``'s cells in a CSV export, in ``EXPORT_FIELDS`` order (see ``export``)."""
    values = record.as_dict()
    values["before"] = record.before
    values["after"] = record.after
    return ["" if values[name] is None else values[name] for name in EXPORT_FIELDS]


def _stream(session: Session, *, batch: int, up_to: int) -> Iterator[AuditRecord]:
    """The chain up to sequence ``up_to``, in order, fetched ``batch`` events at a time."""
    after = 0
    while True:
        records = _select(
            session,
            [AuditEventRow.sequence > after, AuditEventRow.sequence <= up_to],
            limit=batch,
        )
        yield from records
        if len(records) < batch:
            return
        after = records[-1].sequence


def _filters(
    *,
    since: datetime | None,
    until: datetime | None,
    actor: str | None,
    action: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if since is not None:
        conditions.append(AuditEventRow.occurred_at >= since)
    if until is not None:
        conditions.append(AuditEventRow.occurred_at < until)
    if actor is not None:
        conditions.append(AuditEventRow.actor == actor)
    if action is not None:
        conditions.append(AuditEventRow.action == action)
    if target_type is not None:
        conditions.append(AuditEventRow.target_type == target_type)
    if target_id is not None:
        conditions.append(AuditEventRow.target_id == target_id)
    return conditions


_RECORD_COLUMNS = tuple(getattr(AuditEventRow, name) for name in EXPORT_FIELDS)


def _select(
    session: Session,
    conditions: list[ColumnElement[bool]],
    *,
    limit: int | None,
    descending: bool = False,
) -> list[AuditRecord]:
    """Matching events in sequence order, as records (columns, not ORM objects: no identity
    map to fill when a million events stream through)."""
    order = AuditEventRow.sequence.desc() if descending else AuditEventRow.sequence
    statement = select(*_RECORD_COLUMNS).where(*conditions).order_by(order)
    if limit is not None:
        statement = statement.limit(limit)
    return [AuditRecord(**row._mapping) for row in session.execute(statement)]


def _check_lengths(**values: str | None) -> None:
    for name, value in values.items():
        if value is not None and len(value) > _MAX_LENGTHS[name]:
            raise InvalidInput(
                f"{name} is too long",
                [FieldError(name, "Length", f"at most {_MAX_LENGTHS[name]} characters")],
            )
