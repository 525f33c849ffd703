"""The worker benchmark's databases and world: a fresh migrated database or a copy of one
(SQLite file, PostgreSQL database), and the real scenario's world — users, a role and N active
assignments ending at the same instant D, with the jobs of their own events run at S = D - 8 h.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from pimlico.clock import FixedClock
from pimlico.db import migrate
from pimlico.domain.catalogue import Perm
from pimlico.domain.model import (
    Assignment,
    AssignmentKind,
    PrincipalRef,
    PrincipalType,
    Target,
    new_id,
)
from pimlico.jobs import handlers
from pimlico.jobs.worker import Worker
from pimlico.services import directory, roles
from pimlico.services.assignment_store import insert_assignment
from pimlico.services.runtime import Actor, Pimlico
from pimlico.settings import Settings

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
OPERATOR = Actor.operator("bench")
SHIFT = timedelta(hours=8)


@contextmanager
def database(kind: str, admin_url: str, *, like: str | None = None) -> Iterator[str]:
    """A fresh migrated database, or a copy of the database at ``like``: a temporary SQLite
    file, or a PostgreSQL database on the server at ``admin_url``; removed afterwards."""
    if kind == "SQLite":
        with tempfile.TemporaryDirectory(prefix="pimlico-bench-") as folder:
            url = f"sqlite:///{Path(folder) / 'bench.db'}"
            if like is None:
                migrate.upgrade(url)
            else:
                _copy_sqlite(make_url(like).database or "", make_url(url).database or "")
                os.sync()  # the copy's pages on disk before the run, not flushed during it
            yield url
        return
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"pimlico_bench_{secrets.token_hex(6)}"
    template = f" TEMPLATE {make_url(like).database}" if like else ""
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {name}{template}")
            if like:
                # A copy is written to the WAL: checkpointed before the run, not during it.
                connection.exec_driver_sql("CHECKPOINT")
        try:
            url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
            if like is None:
                migrate.upgrade(url)
            yield url
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        admin.dispose()


def _copy_sqlite(source: str, target: str) -> None:
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def why_unreachable(admin_url: str) -> str | None:
    """Why the server at ``admin_url`` cannot be used, or ``None`` when it can."""
    engine = create_engine(admin_url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except OperationalError as error:
        return str(error).strip().splitlines()[0]
    finally:
        engine.dispose()
    return None


@dataclass(frozen=True, slots=True)
class World:
    """The real scenario's world, in the database at ``url``: ``size`` assignments ending at
    ``ends``, built in ``seconds``."""

    url: str
    size: int
    ends: datetime
    seconds: float


def build_world(db: str, url: str, size: int) -> World:
    """Users, a role and ``size`` assignments ending at D = S + 8 h, as of S; the jobs of
    their own events run at S. Vacuumed and analysed on PostgreSQL."""
    began = time.perf_counter()
    start = datetime.now(UTC).replace(microsecond=0)
    with Pimlico(Settings(database_url=url), clock=FixedClock(start)) as rt:
        users = [
            directory.create_user(rt, actor=OPERATOR, user_name=f"shift-{i}").value.id
            for i in range(size)
        ]
        role = roles.create_role(
            rt, actor=OPERATOR, name="Night shift", permissions=[Perm.USERS_READ]
        ).value.id
        with rt.writing(OPERATOR) as w:
            for user in users:
                assignment = Assignment(
                    id=new_id(),
                    kind=AssignmentKind.ACTIVE,
                    principal=PrincipalRef(PrincipalType.USER, user),
                    target=Target.role(role),
                    start=w.at,
                    end=w.at + SHIFT,
                    created_at=w.at,
                    created_by=None,
                    justification="night shift",
                )
                insert_assignment(rt, w, assignment)
        Worker(rt, handlers.HANDLERS, name="world").run_once(start)
    if db == "PostgreSQL":
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")
        engine.dispose()
    return World(url, size, start + SHIFT, time.perf_counter() - began)
