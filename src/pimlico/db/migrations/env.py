"""Alembic's environment for Pimlico: how migrations reach the database.

Called by ``pimlico.db.migrate`` (which passes an open connection, so the whole upgrade is one
transaction under its lock) and by the ``alembic`` command line for developers (which passes
nothing: the URL then comes from ``alembic.ini``'s ``sqlalchemy.url`` or ``PIMLICO_DATABASE_URL``).
"""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.engine import Connection, make_url

from pimlico.db.engine import normalise_url
from pimlico.db.migrate import migrating
from pimlico.db.tables import Base, UTCDateTime

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if url:
        return str(url)
    # Only the developer's ``alembic`` command gets here: it is an entry point, so it may
    # read the settings from the environment.
    from pimlico.settings import Settings

    return Settings().database_url


def _render_item(type_: str, obj: object, autogen_context: AutogenContext) -> str | Literal[False]:
    # A revision must not import the code it migrates (that code changes; the revision must
    # not): our UTC column type is stored as a plain naive timestamp, so render it as one.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime()"
    return False


def _configure_options(dialect_name: str) -> dict[str, Any]:
    return {
        "target_metadata": target_metadata,
        # SQLite alters most tables only by copying them; batch mode does that for us.
        "render_as_batch": dialect_name == "sqlite",
        "compare_type": True,
        "render_item": _render_item,
    }


def _run(connection: Connection) -> None:
    context.configure(connection=connection, **_configure_options(connection.dialect.name))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if isinstance(connection, Connection):
        _run(connection)
        return
    with migrating(_url()) as new_connection:
        _run(new_connection)


def run_migrations_offline() -> None:
    url = normalise_url(_url())
    context.configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **_configure_options(make_url(url).get_backend_name()),
    )
    with context.begin_transaction():
        context.run_migrations()


if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
