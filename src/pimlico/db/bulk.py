"""Inserting many rows of one table at once: ``COPY`` on PostgreSQL, ``executemany`` on SQLite.

A write that adds hundreds or thousands of rows — a batch of activations, the audit events of
ten thousand expiries — spends most of its time in the insert when each row is a statement of
its own: psycopg pipelines an ``executemany`` but the server still parses, plans and executes
each row, and SQLAlchemy processes each row's parameters. ``COPY … FROM STDIN`` streams the
rows into the table in one statement, in the same transaction. Values are converted as
SQLAlchemy binds them (the column types' bind processors: aware UTC instants stored naive;
JSON serialised, ``None`` as JSON ``null``), then written by psycopg.

A row gives every column it fills; a column no row names gets its server default (Python-side
defaults are not applied here, so give those explicitly).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import JSON, Column, Dialect, Table, insert
from sqlalchemy.orm import Session

_Processor = Callable[[Any], Any] | None


def insert_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (column key → value) into ``table`` in the session's transaction."""
    if not rows:
        return
    connection = session.connection()
    dialect = connection.dialect
    if dialect.name != "postgresql":
        connection.execute(insert(table), list(rows))
        return
    names = list(dict.fromkeys(key for row in rows for key in row))
    columns: list[Column[Any]] = [table.c[name] for name in names]
    processors = [_processor(column, dialect) for column in columns]
    listed = ", ".join(f'"{column.name}"' for column in columns)
    statement = f'COPY "{table.name}" ({listed}) FROM STDIN'
    driver = connection.connection.driver_connection
    assert driver is not None  # a live connection, in a transaction
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            values = (row.get(name) for name in names)
            copy.write_row(
                [v if p is None else p(v) for v, p in zip(values, processors, strict=True)]
            )


def _processor(column: Column[Any], dialect: Dialect) -> _Processor:
    """What turns a value of ``column`` into what psycopg writes: the type's bind processor,
    or for JSON (which the psycopg dialect leaves to the driver) the dialect's serialiser."""
    if isinstance(column.type, JSON):
        serialise: Callable[[Any], str] = getattr(dialect, "_json_serializer", None) or json.dumps
        return serialise
    return column.type.bind_processor(dialect)
