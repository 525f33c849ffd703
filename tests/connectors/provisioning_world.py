"""What the provisioning tests share: a Pimlico store, a real PostgreSQL to provision into, and
a TCP relay in front of it that a test can stop (refusing connections) or stall.

The downstream PostgreSQL is the test server (``PIMLICO_TEST_POSTGRES_URL``); each test makes
its roles with a unique prefix and drops them afterwards (roles are cluster-wide).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import psycopg
import pytest
from psycopg import sql
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from pimlico.clock import FixedClock
from pimlico.jobs.handlers import WORKER_HANDLERS
from pimlico.jobs.provisioning import Dispatcher
from pimlico.jobs.worker import Worker
from pimlico.services import connectors
from pimlico.services.runtime import Pimlico
from pimlico.settings import Settings
from tests.conftest import DEFAULT_POSTGRES_URL
from tests.factories import T0
from tests.integration.world import OPERATOR

KEY = "xq2P3q1pQmWcF0mJ5lD2c9y8tZr7aV4bN6hK3eS1uGo="


def _admin_conninfo() -> str:
    url = make_url(os.environ.get("PIMLICO_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass
class Downstream:
    """The real PostgreSQL server provisioned into, and the roles a test made there."""

    conninfo: str
    prefix: str = field(default_factory=lambda: f"pt{secrets.token_hex(4)}")
    made: list[str] = field(default_factory=list)

    @property
    def host(self) -> str:
        return str(psycopg.conninfo.conninfo_to_dict(self.conninfo).get("host", "127.0.0.1"))

    @property
    def port(self) -> int:
        return int(psycopg.conninfo.conninfo_to_dict(self.conninfo).get("port", 5432) or 5432)

    def dsn(self, port: int | None = None) -> str:
        parts = psycopg.conninfo.conninfo_to_dict(self.conninfo)
        parts.pop("password", None)
        parts["host"] = "127.0.0.1"
        parts["port"] = str(port or self.port)
        return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in parts.items()})

    def execute(self, statement: sql.Composed | sql.SQL, *args: object) -> list[tuple[object, ...]]:
        with psycopg.connect(self.conninfo, autocommit=True) as connection:
            cursor = connection.execute(statement, args or None)
            return cursor.fetchall() if cursor.description else []

    def role(self, name: str, *, login: bool = False) -> str:
        """Make role ``<prefix>-<name>`` (a login role for a person); its name."""
        full = f"{self.prefix}-{name}"
        self.execute(
            sql.SQL("CREATE ROLE {} " + ("LOGIN" if login else "NOLOGIN")).format(
                sql.Identifier(full)
            )
        )
        self.made.append(full)
        return full

    def members(self, obj: str) -> set[str]:
        rows = self.execute(
            sql.SQL(
                "SELECT m.rolname FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid "
                "JOIN pg_roles m ON m.oid = a.member WHERE g.rolname = %s"
            ),
            obj,
        )
        return {str(r[0]) for r in rows}

    def grant(self, obj: str, member: str) -> None:
        self.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(obj), sql.Identifier(member)))

    def revoke(self, obj: str, member: str) -> None:
        self.execute(
            sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(obj), sql.Identifier(member))
        )

    def drop_all(self) -> None:
        for name in reversed(self.made):
            self.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture
def downstream() -> Iterator[Downstream]:
    conninfo = _admin_conninfo()
    try:
        psycopg.connect(conninfo, connect_timeout=5).close()
    except psycopg.OperationalError as error:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"PostgreSQL (downstream) not reachable: {error} (CI=true)")
        pytest.skip(f"PostgreSQL (downstream) not reachable: {error}")
    made = Downstream(conninfo)
    yield made
    made.drop_all()


class Relay:
    """A TCP relay on a loopback port to ``target``: ``stop()`` closes it (connections are
    refused), ``start()`` opens it again on the same port, ``stall()`` accepts connections
    and forwards nothing (a hung server)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.stalled = False
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []

    def start(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            # Shut down first: a bare close() does not wake the thread blocked in accept(),
            # which would go on accepting on the closed socket.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for s in self._open:
            with contextlib.suppress(OSError):
                s.close()
        self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            self._open.append(client)
            if self.stalled:
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            self._open.append(upstream)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def relay(downstream: Downstream) -> Iterator[Relay]:
    running = Relay(("127.0.0.1", downstream.port))
    running.start()
    yield running
    running.stop()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def settings(migrated_url: str) -> Settings:
    return Settings(
        database_url=migrated_url,
        max_nesting_depth=4,
        secret_key=SecretStr(KEY),
        provisioning_max_attempts=4,
        provisioning_base_delay=1.0,
    )


@pytest.fixture
def rt(settings: Settings, clock: FixedClock) -> Iterator[Pimlico]:
    with Pimlico(settings, clock=clock) as runtime:
        yield runtime


@pytest.fixture
def dispatcher(rt: Pimlico) -> Iterator[Dispatcher]:
    made = Dispatcher(rt, name="d1")
    yield made
    made.close()


def settle(rt: Pimlico, clock: FixedClock, dispatcher: Dispatcher) -> None:
    """Run the worker until nothing is due (events delivered to provisioning), then the
    dispatcher's due work."""
    Worker(rt, WORKER_HANDLERS, name="w1").run_once(clock.now())
    dispatcher.run_once(clock.now())


def postgres_connector(
    rt: Pimlico, dsn: str, *, name: str = "db", mode: str = connectors.AUTHORITATIVE
) -> str:
    connectors.add_connector(
        rt,
        actor=OPERATOR,
        name=name,
        kind="postgres",
        config={"dsn": dsn, "identity_template": "{user_name}", "connect_timeout": 2},
        secret="not-needed-with-trust",
        mode=mode,
    )
    return name
