"""The portal through httpx (``TestClient``) as a browser without JavaScript uses it: pages
fetched, forms posted with the CSRF token the page carried, cookies kept. On SQLite and on
PostgreSQL, with a fixed clock and the demo directory (``pimlico.demo``).

``visit(user_name)`` signs a demo person in through the sign-in form and gives their
``Portal``; ``portal.submit(page, action, data)`` posts a form the way a browser would. The
real-browser tests live in ``tests/web``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Protocol

import pyotp
import pytest
from fastapi.testclient import TestClient
from httpx import Response
from pydantic import SecretStr

from pimlico.api import create_app
from pimlico.clock import FixedClock
from pimlico.demo import Demo, demo_password, load_demo
from pimlico.services import mfa
from pimlico.services.runtime import Actor, Pimlico
from pimlico.settings import Settings
from tests.factories import T0

KEY = "q5wqT0Vf0mB3rXy2kZ8nN4pL7sD1gH6jC9vE2aR5tYU="
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def settings(migrated_url: str) -> Settings:
    return Settings(database_url=migrated_url, secret_key=SecretStr(KEY), token_cache_seconds=0)


@pytest.fixture
def rt(settings: Settings, clock: FixedClock) -> Iterator[Pimlico]:
    with Pimlico(settings, clock=clock) as runtime:
        yield runtime


@pytest.fixture
def demo(rt: Pimlico) -> Demo:
    return load_demo(rt)


class Portal:
    """One browser (its cookies) on the portal."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.last: Response | None = None

    def get(self, path: str) -> Response:
        self.last = self.client.get(path)
        return self.last

    def csrf(self, path: str | None = None) -> str:
        """The CSRF token of the page at ``path`` (default: the last page fetched)."""
        response = self.get(path) if path is not None else self.last
        assert response is not None, "fetch a page first"
        found = _CSRF.search(response.text)
        assert found, f"no form with a CSRF token on {response.url}"
        return found.group(1)

    def post(self, action: str, data: dict[str, str], *, token: str | None) -> Response:
        """Post ``data`` to ``action`` with ``token`` as ``csrf_token`` (None: without)."""
        body = dict(data) if token is None else {**data, "csrf_token": token}
        self.last = self.client.post(action, data=body)
        return self.last

    def submit(self, page: str, action: str, data: dict[str, str]) -> Response:
        """Open ``page`` and post its form to ``action``, as a person would."""
        return self.post(action, data, token=self.csrf(page))


class Visit(Protocol):
    """``visit(user_name, password=None, code=None)``: a browser signed in as that demo
    person (their demo password; ``code``: the MFA code, for a person with a factor)."""

    def __call__(
        self, user_name: str, password: str | None = ..., code: str | None = ...
    ) -> Portal: ...


@pytest.fixture
def browser(rt: Pimlico, settings: Settings) -> Iterator[Portal]:
    """A browser that has not signed in."""
    with TestClient(create_app(settings, runtime=rt), follow_redirects=False) as client:
        yield Portal(client)


@pytest.fixture
def visit(rt: Pimlico, settings: Settings) -> Iterator[Visit]:
    clients: list[TestClient] = []

    def signed_in(user_name: str, password: str | None = None, code: str | None = None) -> Portal:
        client = TestClient(create_app(settings, runtime=rt), follow_redirects=False)
        clients.append(client)
        portal = Portal(client)
        response = portal.submit(
            "/portal/sign-in",
            "/portal/sign-in",
            {"user_name": user_name, "password": password or demo_password(user_name)},
        )
        assert response.status_code == 303, response.text
        if response.headers["location"].startswith("/portal/sign-in/mfa"):
            assert code is not None, f"{user_name} has MFA: pass code="
            response = portal.submit(
                response.headers["location"], "/portal/sign-in/mfa", {"code": code}
            )
            assert response.status_code == 303, response.text
        return portal

    yield signed_in
    for client in clients:
        client.close()


def enrol_mfa(rt: Pimlico, user_id: str) -> pyotp.TOTP:
    """Give ``user_id`` a confirmed TOTP factor (through the use cases); its generator."""
    actor = Actor.principal(user_id)
    enrollment = mfa.enroll(rt, actor=actor, user_id=user_id)
    totp = pyotp.TOTP(enrollment.secret)
    mfa.confirm(rt, actor=actor, user_id=user_id, code=totp.at(rt.clock.now()))
    return totp
