"""The API through httpx (``TestClient``) against ``create_app(settings)``, on SQLite and on
PostgreSQL, with a fixed clock. ``admin`` is the break-glass administrator made by
``bootstrap_admin``; ``sign_in`` gives a client carrying a user's session token."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Protocol

import pytest
import uvicorn
from fastapi.testclient import TestClient

from pimlico.api import create_app
from pimlico.clock import FixedClock
from pimlico.services import accounts
from pimlico.services.runtime import Pimlico
from pimlico.settings import Settings
from tests.factories import T0

ADMIN = "root"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def settings(migrated_url: str) -> Settings:
    return Settings(database_url=migrated_url, max_nesting_depth=4, token_cache_seconds=0)


@pytest.fixture
def rt(settings: Settings, clock: FixedClock) -> Iterator[Pimlico]:
    with Pimlico(settings, clock=clock) as runtime:
        yield runtime


@pytest.fixture
def anonymous(rt: Pimlico, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, runtime=rt), raise_server_exceptions=False) as client:
        yield client


class SignIn(Protocol):
    """``sign_in(user_name, password=PASSWORD)``: a client carrying that user's session."""

    def __call__(self, user_name: str, password: str = ...) -> TestClient: ...


@pytest.fixture
def sign_in(rt: Pimlico, settings: Settings) -> Iterator[SignIn]:
    clients: list[TestClient] = []

    def signed_in(user_name: str, password: str = PASSWORD) -> TestClient:
        issued = accounts.sign_in(rt, user_name=user_name, password=password)
        client = TestClient(create_app(settings, runtime=rt), raise_server_exceptions=False)
        client.headers["Authorization"] = f"Bearer {issued.bearer}"
        clients.append(client)
        return client

    yield signed_in
    for client in clients:
        client.close()


@pytest.fixture
def admin_id(rt: Pimlico) -> str:
    return accounts.bootstrap_admin(rt, user_name=ADMIN, password=PASSWORD)


@pytest.fixture
def admin(admin_id: str, sign_in: SignIn) -> TestClient:
    return sign_in(ADMIN, PASSWORD)


@pytest.fixture
def pimlico_url(rt: Pimlico, settings: Settings) -> Iterator[str]:
    """A real Pimlico server (uvicorn) over ``rt``, on a free loopback port, in a thread."""
    listening = socket.create_server(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, runtime=rt), log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    listening.close()
