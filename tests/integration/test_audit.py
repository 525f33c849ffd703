"""The audit write path and its verification on real SQLite and PostgreSQL.

Tampering is done the way an intruder with database access would: plain SQL on the table.
"""

from __future__ import annotations

import csv
import io
import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from pimlico.db.audit import (
    EXPORT_FIELDS,
    begin_write,
    changes_since,
    current_revision,
    export,
    finish_write,
    query,
    verify,
)
from pimlico.db.tables import Base, PimStateRow
from pimlico.domain.audit import AuditRecord, canonical_json, verify_chain

AUDIT_EVENTS = Base.metadata.tables["audit_events"]
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)

# Everything but the chain fields: what "the content" of an event is.
CONTENT_COLUMNS = (
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
)


def write(
    session_factory: sessionmaker[Session],
    *,
    actor: str | None = "alice",
    at: datetime = T0,
    targets: tuple[str, ...] = ("g1",),
    request_id: str | None = None,
) -> int:
    """One committed write transaction with one event per target."""
    with session_factory.begin() as session:
        ctx = begin_write(session, actor=actor, at=at, request_id=request_id)
        for target in targets:
            ctx.record(
                action="group.update",
                target_type="group",
                target_id=target,
                before={"name": f"{target}-old"},
                after={"name": target, "at": at},
                reason=f"change {target}",
            )
        return finish_write(ctx)


def five_events(session_factory: sessionmaker[Session]) -> None:
    """Events 1..5 in three writes: revisions 1, 1, 2, 3, 3."""
    write(session_factory, at=T0, targets=("a", "b"))
    write(session_factory, actor="bob", at=T0 + HOUR, targets=("c",))
    write(session_factory, at=T0 + 2 * HOUR, targets=("d", "e"))


def check(session_factory: sessionmaker[Session], *, batch: int = 2) -> tuple[int, str] | None:
    with session_factory() as session:
        broken = verify(session, batch=batch)
    return None if broken is None else (broken.sequence, broken.reason)


def tamper(engine: Engine, *statements: str) -> None:
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))


def swap_columns(engine: Engine, first: int, second: int, columns: tuple[str, ...]) -> None:
    """Exchange ``columns`` between the events ``first`` and ``second``."""
    table = AUDIT_EVENTS
    with engine.begin() as connection:
        rows = {
            row.sequence: row
            for row in connection.execute(
                select(table).where(table.c.sequence.in_([first, second]))
            )
        }
        for here, there in ((first, second), (second, first)):
            values = {name: getattr(rows[there], name) for name in columns}
            connection.execute(update(table).where(table.c.sequence == here).values(values))


def test_writes_make_a_valid_chain(session_factory: sessionmaker[Session]) -> None:
    five_events(session_factory)

    assert check(session_factory) is None
    with session_factory() as session:
        records = query(session)
        state = session.get_one(PimStateRow, 1)
    assert [r.sequence for r in records] == [1, 2, 3, 4, 5]
    assert [r.prev_hash for r in records[1:]] == [r.hash for r in records[:-1]]
    assert (state.audit_sequence, state.audit_hash) == (5, records[-1].hash)


def test_an_empty_chain_is_valid(session_factory: sessionmaker[Session]) -> None:
    assert check(session_factory) is None


def test_each_write_transaction_takes_the_next_revision(
    session_factory: sessionmaker[Session],
) -> None:
    revisions = [write(session_factory, targets=("a", "b")) for _ in range(3)]

    with session_factory() as session:
        assert current_revision(session) == 3
        assert [r.revision for r in query(session)] == [1, 1, 2, 2, 3, 3]
    assert revisions == [1, 2, 3]


def test_a_rolled_back_write_leaves_no_gap_in_revisions_or_sequences(
    session_factory: sessionmaker[Session],
) -> None:
    write(session_factory)
    with session_factory() as session:
        ctx = begin_write(session, actor="alice", at=T0)
        ctx.record(action="x", target_type="group", target_id="g", before=None, after=None)
        finish_write(ctx)
        session.rollback()
    write(session_factory)

    with session_factory() as session:
        assert current_revision(session) == 2
        assert [(r.sequence, r.revision) for r in query(session)] == [(1, 1), (2, 2)]
    assert check(session_factory) is None


def test_concurrent_writers_get_gap_free_revisions_and_one_linear_chain(
    session_factory: sessionmaker[Session],
) -> None:
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            for _ in range(5):
                write(session_factory, actor=name, targets=(name, f"{name}-2"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    with session_factory() as session:
        records = query(session)
        assert current_revision(session) == 30
    assert sorted({r.revision for r in records}) == list(range(1, 31))
    assert [r.sequence for r in records] == list(range(1, 61))
    assert check(session_factory, batch=7) is None


def test_changes_since_lists_each_changed_target_once_per_revision_in_order(
    session_factory: sessionmaker[Session],
) -> None:
    write(session_factory, targets=("a",))
    write(session_factory, targets=("b", "b", "c"))
    write(session_factory, targets=("a",))

    with session_factory() as session:
        assert changes_since(session, 1) == [
            (2, "group", "b"),
            (2, "group", "c"),
            (3, "group", "a"),
        ]
        assert changes_since(session, 3) == []


def test_before_and_after_are_stored_as_canonical_json(
    session_factory: sessionmaker[Session],
) -> None:
    write(session_factory, targets=("g1",))

    with session_factory() as session:
        (record,) = query(session)
    assert record.before == '{"name":"g1-old"}'
    assert record.after == canonical_json({"at": T0, "name": "g1"})
    assert record.occurred_at == T0


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("reason", "'nothing to see here'"),
        ("after", '\'{"name":"evil"}\''),
        ("actor", "'mallory'"),
        ("target_id", "'other'"),
        ("hash", "'" + "f" * 64 + "'"),
    ],
)
def test_verify_names_an_edited_event(
    session_factory: sessionmaker[Session], engine: Engine, column: str, value: str
) -> None:
    five_events(session_factory)

    tamper(engine, f"UPDATE audit_events SET {column} = {value} WHERE sequence = 3")

    assert check(session_factory) == (3, "content does not match its hash (edited)")


def test_verify_names_an_event_whose_time_was_moved(
    session_factory: sessionmaker[Session], engine: Engine
) -> None:
    five_events(session_factory)

    with engine.begin() as connection:
        connection.execute(
            update(AUDIT_EVENTS).where(AUDIT_EVENTS.c.sequence == 4).values(occurred_at=T0 - HOUR)
        )

    assert check(session_factory) == (4, "content does not match its hash (edited)")


def test_verify_names_a_deleted_middle_event(
    session_factory: sessionmaker[Session], engine: Engine
) -> None:
    five_events(session_factory)

    tamper(engine, "DELETE FROM audit_events WHERE sequence = 3")

    assert check(session_factory) == (3, "sequence 3 is missing (deleted)")


def test_verify_names_a_deleted_first_event(
    session_factory: sessionmaker[Session], engine: Engine
) -> None:
    five_events(session_factory)

    tamper(engine, "DELETE FROM audit_events WHERE sequence = 1")

    assert check(session_factory) == (1, "sequence 1 is missing (deleted)")


def test_verify_names_a_deleted_last_event_from_the_recorded_head(
    session_factory: sessionmaker[Session], engine: Engine
) -> None:
    five_events(session_factory)

    tamper(engine, "DELETE FROM audit_events WHERE sequence = 5")

    assert check(session_factory) == (
        5,
        "sequence 5 is missing (deleted): the chain ends before its head",
    )


def test_verify_notices_a_head_moved_back_over_a_deleted_event_without_its_hash(
    session_factory: sessionmaker[Session], engine: Engine
) -> None:
    five_events(session_factory)

    tamper(
        engine,
        "DELETE FROM audit_events WHERE sequence = 5",
        "UPDATE pim_state SET audit_sequence = 4",
    )

    assert check(session_factory) == (
        4,
        "the last event does not match the recorded head hash (replaced)",
    )


def test_verify_names_two_events_that_traded_places(
    session_factory: sessionmaker[Session], engine: Engine
) -> None:
    """Their sequence numbers swapped: each row, chain fields and all, sits in the other's place."""
    five_events(session_factory)

    tamper(
        engine,
        "UPDATE audit_events SET sequence = -1 WHERE sequence = 2",
        "UPDATE audit_events SET sequence = 2 WHERE sequence = 3",
        "UPDATE audit_events SET sequence = 3 WHERE sequence = -1",
    )

    assert check(session_factory) == (
        2,
        "out of order: the content of event 3 belongs here (swapped)",
    )


def test_verify_names_two_events_whose_contents_were_swapped_under_their_hashes(
    session_factory: sessionmaker[Session], engine: Engine
) -> None:
    five_events(session_factory)

    swap_columns(engine, 3, 4, CONTENT_COLUMNS)

    assert check(session_factory) == (
        3,
        "out of order: the content of event 4 belongs here (swapped)",
    )


def test_verify_names_the_first_of_two_distant_events_that_traded_places(
    session_factory: sessionmaker[Session], engine: Engine
) -> None:
    five_events(session_factory)

    swap_columns(engine, 2, 5, (*CONTENT_COLUMNS, "prev_hash", "hash"))

    broken = check(session_factory)
    assert broken is not None
    assert broken[0] == 2
    assert "does not link to the event before it" in broken[1]


def test_verify_names_an_event_inserted_beyond_the_head(
    session_factory: sessionmaker[Session], engine: Engine
) -> None:
    five_events(session_factory)

    tamper(
        engine,
        "INSERT INTO audit_events (sequence, revision, occurred_at, action, target_type,"
        " target_id, prev_hash, hash) SELECT 6, 3, occurred_at, 'x', 'group', 'g', hash, hash"
        " FROM audit_events WHERE sequence = 5",
    )

    assert check(session_factory) == (6, "event 6 is beyond the recorded head (inserted)")


def test_verify_reports_the_first_break_when_there_are_several(
    session_factory: sessionmaker[Session], engine: Engine
) -> None:
    five_events(session_factory)

    tamper(
        engine,
        "DELETE FROM audit_events WHERE sequence = 5",
        "UPDATE audit_events SET reason = 'x' WHERE sequence = 4",
        "UPDATE audit_events SET reason = 'y' WHERE sequence = 2",
    )

    assert check(session_factory) == (2, "content does not match its hash (edited)")


def test_query_filters_and_pages_by_sequence(session_factory: sessionmaker[Session]) -> None:
    five_events(session_factory)

    with session_factory() as session:
        by_bob = query(session, actor="bob")
        late = query(session, since=T0 + HOUR)
        window = query(session, since=T0, until=T0 + HOUR)
        target = query(session, target_type="group", target_id="d")
        page = query(session, after_sequence=2, limit=2)
        none = query(session, action="nothing")

    assert [r.sequence for r in by_bob] == [3]
    assert [r.sequence for r in late] == [3, 4, 5]
    assert [r.sequence for r in window] == [1, 2]
    assert [r.sequence for r in target] == [4]
    assert [r.sequence for r in page] == [3, 4]
    assert none == []


def _export_fixture(session_factory: sessionmaker[Session]) -> None:
    """Alice and Bob alternate by the hour; each write records two events."""
    for hour, actor in enumerate(("alice", "bob", "alice", "bob", "alice")):
        write(
            session_factory,
            actor=actor,
            at=T0 + hour * HOUR,
            targets=(f"t{hour}a", f"t{hour}b"),
            request_id=f"req-{hour}",
        )


def test_a_jsonl_export_holds_exactly_the_events_in_the_window_by_the_actor(
    session_factory: sessionmaker[Session],
) -> None:
    _export_fixture(session_factory)
    out = io.StringIO()

    with session_factory() as session:
        count = export(
            session,
            out,
            format="jsonl",
            since=T0 + HOUR,
            until=T0 + 4 * HOUR,
            actor="alice",
            batch=1,
        )

    lines = out.getvalue().splitlines()
    events = [json.loads(line) for line in lines]
    assert count == len(lines) == 2
    assert [e["target_id"] for e in events] == ["t2a", "t2b"]
    assert events[0] == {
        "sequence": 5,
        "revision": 3,
        "occurred_at": "2026-03-01T11:00:00.000000Z",
        "actor": "alice",
        "action": "group.update",
        "target_type": "group",
        "target_id": "t2a",
        "before": {"name": "t2a-old"},
        "after": {"name": "t2a", "at": "2026-03-01T11:00:00.000000Z"},
        "reason": "change t2a",
        "request_id": "req-2",
        "prev_hash": events[0]["prev_hash"],
        "hash": events[0]["hash"],
    }
    assert lines == [canonical_json(e) for e in events]


def test_a_csv_export_holds_exactly_the_events_in_the_window_by_the_actor(
    session_factory: sessionmaker[Session],
) -> None:
    _export_fixture(session_factory)
    out = io.StringIO()

    with session_factory() as session:
        count = export(session, out, format="csv", since=T0 + 3 * HOUR, actor="bob", batch=1)

    header, *rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert header == list(EXPORT_FIELDS)
    assert count == len(rows) == 2
    first = dict(zip(header, rows[0], strict=True))
    assert [row[header.index("target_id")] for row in rows] == ["t3a", "t3b"]
    assert first["occurred_at"] == "2026-03-01T12:00:00.000000Z"
    assert first["actor"] == "bob"
    assert first["before"] == '{"name":"t3a-old"}'
    assert json.loads(first["after"]) == {"name": "t3a", "at": "2026-03-01T12:00:00.000000Z"}


def test_an_export_without_filters_holds_every_event_and_reverifies_offline(
    session_factory: sessionmaker[Session],
) -> None:
    _export_fixture(session_factory)
    out = io.StringIO()

    with session_factory() as session:
        count = export(session, out, format="jsonl", batch=3)

    events = [json.loads(line) for line in out.getvalue().splitlines()]
    records = [
        AuditRecord(
            **{
                **e,
                "occurred_at": datetime.fromisoformat(e["occurred_at"]),
                "before": None if e["before"] is None else canonical_json(e["before"]),
                "after": None if e["after"] is None else canonical_json(e["after"]),
            }
        )
        for e in events
    ]
    assert count == 10
    assert verify_chain(records, expected_head=(10, records[-1].hash)) is None


def test_an_export_in_an_unknown_format_is_refused(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as session, pytest.raises(ValueError, match="unknown export format"):
        export(session, io.StringIO(), format="xml")  # type: ignore[arg-type]
