"""Schema migrations, driven from code: no ``alembic.ini`` is needed at run time.

The revisions live in ``pimlico/db/migrations`` inside the package, so an installed wheel can
upgrade its own database. This module owns running them; it must not define tables (that is
``pimlico.db.tables``) nor hold data changes other than a revision's literal seed data.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, event

from pimlico.db.engine import make_engine

MIGRATIONS = Path(__file__).resolve().with_name("migrations")
"""The Alembic script directory shipped inside the package."""

_PG_MIGRATION_LOCK = 0x70696D6C
"""Advisory lock key ("piml"; advisory locks are per database): replicas that start together
upgrade one after the other."""


def alembic_config(url: str | None = None) -> Config:
    """An Alembic configuration for Pimlico's migrations and, if given, the database at ``url``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    if url is not None:
        # Passed as an attribute, not an option: options go through ConfigParser, which would
        # read a ``%`` in a password as interpolation.
        config.attributes["url"] = url
    return config


def heads() -> list[str]:
    """The head revisions of the migration scripts (one, unless someone forgot to merge)."""
    return list(ScriptDirectory.from_config(alembic_config()).get_heads())


def current(url: str) -> str | None:
    """The revision the database at ``url`` is at; ``None`` if it was never migrated."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to ``revision``, in one transaction (see ``migrating``)."""
    with migrating(url) as connection:
        config = alembic_config(url)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


@contextmanager
def migrating(url: str) -> Iterator[Connection]:
    """A connection in one transaction, made safe for changing the schema; commits at the end.

    On PostgreSQL an advisory lock makes concurrent upgrades (replicas starting together) run
    one after the other; the later one finds nothing left to do. On SQLite, foreign keys are
    not enforced while tables are rebuilt and are checked before the commit (see
    ``_migration_engine``). ``env.py`` uses this too, so the ``alembic`` command behaves alike.
    """
    engine = _migration_engine(url)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
            yield connection
            if connection.dialect.name == "sqlite":
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"migration left rows breaking foreign keys: {broken}")
    finally:
        engine.dispose()


def _migration_engine(url: str) -> Engine:
    """An engine for migrating: on SQLite, with foreign keys off while tables are rebuilt.

    SQLite changes a table by copying it and dropping the old one (Alembic's batch mode);
    with foreign keys enforced, dropping a referenced table deletes or rejects the rows that
    point at it. SQLite's documented procedure turns enforcement off during the change and
    checks the keys afterwards, as ``migrating`` does.
    """
    engine = make_engine(url)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _foreign_keys_off(dbapi_connection: Any, connection_record: Any) -> None:
            dbapi_connection.execute("PRAGMA foreign_keys=OFF")

    return engine
