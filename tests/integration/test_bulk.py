"""``db.bulk.insert_rows`` stores exactly what a plain insert stores, on SQLite and PostgreSQL
(where it is a ``COPY``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from pimlico.db.bulk import insert_rows
from pimlico.db.tables import Base, RequestRow

REQUESTS = Base.metadata.tables[RequestRow.__tablename__]
AT = datetime(2026, 3, 1, 9, 0, 0, 123456, tzinfo=UTC)


def request(id_: str, **changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "id": id_,
        "action": "self_activate",
        "kind": "active",
        "principal_type": "user",
        "principal_id": "u-1",
        "target_type": "role",
        "target_id": "r-1",
        "scope": "/apps/mail",
        "expiration": "after_duration",
        "start_at": AT,
        "end_at": AT + timedelta(hours=1),
        "justification": 'ticket 7: it\'s "urgent"\tand\nmulti-line \\ with a backslash',
        "ticket_system": None,
        "ticket_number": None,
        "requested_by": "u-1",
        "requested_at": AT,
        "status": "provisioned",
        "history": [{"status": "granted", "at": AT.isoformat(), "by": "u-1", "reason": None}],
        "mfa_verified_at": None,
        "idempotency_key": None,
        "assignment_id": None,
        "stages": [],
    }
    return row | changes


def stored(session: Session, id_: str) -> dict[str, object]:
    row = session.execute(select(REQUESTS).where(REQUESTS.c.id == id_)).one()
    return dict(row._mapping)


def test_bulk_rows_read_back_as_rows_inserted_one_by_one(
    session_factory: sessionmaker[Session],
) -> None:
    bulk = [request("bulk-1"), request("bulk-2", justification=None, history=[{"a": [1, 2]}])]
    plain = [request("plain-1"), request("plain-2", justification=None, history=[{"a": [1, 2]}])]
    with session_factory() as session, session.begin():
        insert_rows(session, REQUESTS, bulk)
        session.execute(insert(REQUESTS), plain)
    with session_factory() as session:
        for b, p in (("bulk-1", "plain-1"), ("bulk-2", "plain-2")):
            got, expected = stored(session, b), stored(session, p)
            assert got | {"id": p} == expected
        first = stored(session, "bulk-1")
        assert first["start_at"] == AT  # an aware UTC instant, microseconds kept
        assert first["escalated"] == []  # a column no row names: its server default


def test_a_bulk_insert_is_part_of_the_session_s_transaction(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as session:
        with session.begin():
            insert_rows(session, REQUESTS, [request("kept")])
        transaction = session.begin()
        insert_rows(session, REQUESTS, [request("undone")])
        transaction.rollback()
    with session_factory() as session:
        ids = set(session.scalars(select(REQUESTS.c.id)))
    assert ids == {"kept"}


def test_no_rows_is_nothing_to_do(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session, session.begin():
        insert_rows(session, REQUESTS, [])
        assert session.scalars(select(REQUESTS.c.id)).all() == []
