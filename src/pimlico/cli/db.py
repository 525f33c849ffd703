"""``pimlico db``: migrate the store and say which schema revision it is at."""

from __future__ import annotations

import typer

from pimlico.cli._common import command, database_errors, say, settings
from pimlico.db import migrate

app = typer.Typer(help="The database: migrations.", no_args_is_help=True)


@command(app, "upgrade")
def upgrade() -> None:
    """Upgrade the database (PIMLICO_DATABASE_URL) to the newest schema."""
    url = settings().database_url
    with database_errors():
        before = migrate.current(url)
        migrate.upgrade(url)
        after = migrate.current(url)
    if before == after:
        say(f"database already at {after}")
    else:
        say(f"database upgraded from {before or 'empty'} to {after}")


@command(app, "current")
def current() -> None:
    """Print the schema revision the database is at."""
    with database_errors():
        at = migrate.current(settings().database_url)
    heads = migrate.heads()
    if at is None:
        say("database not migrated: run `pimlico db upgrade`")
    elif at in heads:
        say(f"{at} (head)")
    else:
        say(f"{at} (head is {', '.join(heads)}: run `pimlico db upgrade`)")
