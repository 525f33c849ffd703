"""Shared test infrastructure: a fresh database per test, on SQLite and on PostgreSQL.

``database_url`` is an empty database; ``migrated_url`` one upgraded to head; ``engine`` and
``session_factory`` are built on the migrated one. Every fixture that takes them runs twice
(ids ``sqlite`` and ``postgres``); the PostgreSQL runs carry the ``postgres`` marker.

PostgreSQL: each test gets its own database, ``pimlico_test_<hex>``, on the server named by
``PIMLICO_TEST_POSTGRES_URL`` (an admin connection URL), dropped after the test. Migrated
databases are cloned from a template migrated once per session (``CREATE DATABASE … TEMPLATE``
takes ~30 ms; creating and migrating takes ~150 ms). An unreachable server skips the
PostgreSQL runs, except under ``CI=true``, where nothing may skip and the run fails instead.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from pimlico.db import migrate
from pimlico.db.engine import make_engine, make_sessionmaker, normalise_url

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@dataclass
class PostgresServer:
    """The admin connection to the test server, and the migrated template (made on demand)."""

    admin_url: str
    engine: Engine | None = None
    error: str | None = None
    _template: str | None = field(default=None, repr=False)

    def url_of(self, database: str) -> str:
        url = make_url(self.admin_url).set(database=database)
        return url.render_as_string(hide_password=False)

    def create(self, *, template: str | None = None) -> str:
        name = f"pimlico_test_{secrets.token_hex(6)}"
        suffix = f" TEMPLATE {template}" if template else ""
        self._execute(f"CREATE DATABASE {name}{suffix}")
        return name

    def drop(self, name: str) -> None:
        self._execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def migrated_template(self) -> str:
        if self._template is None:
            name = self.create()
            try:
                migrate.upgrade(self.url_of(name))
            except BaseException:
                self.drop(name)
                raise
            self._template = name
        return self._template

    def close(self) -> None:
        if self._template is not None:
            self.drop(self._template)
        if self.engine is not None:
            self.engine.dispose()

    def _execute(self, statement: str) -> None:
        assert self.engine is not None
        with self.engine.connect() as connection:
            connection.exec_driver_sql(statement)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The PostgreSQL test server, reached once per session; ``error`` says why it is not."""
    admin_url = os.environ.get("PIMLICO_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    server = PostgresServer(admin_url)
    # A short connect timeout: an unreachable host should skip in seconds, not minutes.
    engine = create_engine(
        normalise_url(admin_url), isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5}
    )
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except Exception as exc:  # any failure to connect means: no server for this run
        engine.dispose()
        server.error = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
    else:
        server.engine = engine
    yield server
    server.close()


def _require(server: PostgresServer) -> None:
    if server.error is None:
        return
    where = make_url(server.admin_url).render_as_string(hide_password=True)
    message = f"PostgreSQL not reachable at {where}: {server.error}"
    if _in_ci():
        pytest.fail(f"{message} (CI=true: nothing may skip)")
    pytest.skip(message)


BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """``sqlite`` or ``postgres``: which database this run of the test uses."""
    name: str = request.param
    return name


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a fresh, empty database, dropped after the test."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'pimlico.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    _require(server)
    name = server.create()
    yield server.url_of(name)
    server.drop(name)


@pytest.fixture
def migrated_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a fresh database upgraded to head, dropped after the test."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'pimlico.db'}"
        migrate.upgrade(url)
        yield url
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    _require(server)
    name = server.create(template=server.migrated_template())
    yield server.url_of(name)
    server.drop(name)


@pytest.fixture
def engine(migrated_url: str) -> Iterator[Engine]:
    """An engine on the migrated database, disposed after the test."""
    built = make_engine(migrated_url)
    yield built
    built.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions on the migrated database, as services receive them."""
    return make_sessionmaker(engine)


# The longest test files, as measured (`--durations`), go to the workers first: with
# `--dist loadfile` a long file handed out last keeps one worker busy while the others wait.
_LONGEST_FIRST = (
    "tests/web/",
    "tests/cli/test_serve.py",
    "tests/integration/test_worker_crash.py",
    "tests/connectors/test_provisioning_crash.py",
    "tests/unit/test_decisions_following.py",
    "tests/api/test_authorization_matrix.py",
    "tests/unit/test_decisions_property.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = Path(item.path).relative_to(config.rootpath).as_posix()
        return next(
            (i for i, prefix in enumerate(_LONGEST_FIRST) if path.startswith(prefix)),
            len(_LONGEST_FIRST),
        )

    items.sort(key=rank)  # stable: the order within each rank is kept
