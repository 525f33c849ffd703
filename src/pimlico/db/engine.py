"""Engines and sessions for SQLite and PostgreSQL, configured alike for Pimlico's writes.

Owns connection-level settings only (pragmas, drivers, pooling). It must not hold state or
business rules; services receive a ``sessionmaker`` built here.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.orm import Session, sessionmaker

_SQLITE_PRAGMAS = (
    # WAL: readers never block the writer and the writer never blocks readers.
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    # A writer waits up to 30 s for the write lock instead of failing at once.
    "PRAGMA busy_timeout=30000",
    # Durable at each checkpoint; with WAL a crash can lose the last commits, never corrupt.
    "PRAGMA synchronous=NORMAL",
    # Checkpoint when the WAL holds 10,000 pages (about 40 MB), not 1,000: a page written by
    # many commits between two checkpoints is copied into the database once. When ten
    # thousand jobs fall due at once, each write of a thousand of them dirties some 700 pages,
    # and checkpoints every other commit took a third of the time of the commits.
    "PRAGMA wal_autocheckpoint=10000",
)


def normalise_url(url: str) -> str:
    """``url`` with the driver Pimlico uses: ``postgresql://`` becomes ``postgresql+psycopg://``."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, *, connections: int | None = None) -> Engine:
    """An engine for ``url`` (SQLite or PostgreSQL via psycopg 3).

    ``connections`` caps its pool at that many connections, with no overflow: for a caller
    that never uses more at once (the decision index's follower uses one, under its lock).
    Without it, SQLAlchemy's default pool: 5 kept, 10 more on demand.
    """
    parsed = make_url(normalise_url(url))
    pool: dict[str, Any] = {}
    if connections is not None:
        pool = {"pool_size": connections, "max_overflow": 0}
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, connect_args={"check_same_thread": False}, **pool)
        _take_over_sqlite_transactions(engine)
        return engine
    return create_engine(parsed, pool_pre_ping=True, **pool)


def _take_over_sqlite_transactions(engine: Engine) -> None:
    """Make SQLite transactions begin exactly when SQLAlchemy begins them.

    By default pysqlite delays ``BEGIN`` until the first write, so a transaction's reads are
    not isolated from its writes and savepoints misbehave. With pysqlite's own handling turned
    off (``isolation_level = None``) and our ``BEGIN`` emitted on SQLAlchemy's begin, the
    first statement of a transaction is the first statement SQLite sees in it: a write
    transaction that starts with ``UPDATE pim_state`` takes the write lock before reading
    anything, so it waits (``busy_timeout``) rather than failing with a lock upgrade error.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            for pragma in _SQLITE_PRAGMAS:
                cursor.execute(pragma)
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions on ``engine``; objects stay readable after commit (no reload per attribute)."""
    return sessionmaker(bind=engine, expire_on_commit=False)
