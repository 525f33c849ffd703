"""What the browser tests stand on: Debian's Chromium, the two screen sizes, screenshots, and
real servers (uvicorn on an OS-chosen loopback port, in a thread of the test).

It owns no fixtures (``conftest.py`` does) and no page knowledge of the portal: only how to
start things, how to size a browser and where pictures go. Nothing here mocks anything.

Screenshots go to ``artifacts/screenshots/<desktop|phone>/<name>.png`` at the repository root
(ignored by git; CI keeps the folder as the run's artifact).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

import uvicorn
from fastapi import FastAPI
from playwright.sync_api import BrowserContext, Page
from pydantic import SecretStr

from pimlico.demo import Demo
from pimlico.domain.catalogue import SECURITY_READER
from pimlico.domain.model import AssignmentKind, PrincipalRef, PrincipalType, Target
from pimlico.services import accounts, assignments, directory
from pimlico.services.runtime import Actor, Pimlico
from pimlico.settings import Settings

CHROMIUM = Path("/usr/bin/chromium")
"""Debian's Chromium (``apt-get install chromium``); Playwright downloads no browser here."""

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium keeps trying to reach hosts this machine cannot reach.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

TIMEZONE = "Europe/Berlin"
"""The viewer's zone in every context: never UTC, so a time shown in UTC is visibly wrong."""

LOCALE = "en-GB"

Device = Literal["desktop", "phone"]

DEVICES: dict[Device, dict[str, Any]] = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {
        "viewport": {"width": 390, "height": 844},
        "is_mobile": True,
        "has_touch": True,
        "device_scale_factor": 2,
    },
}
"""``Browser.new_context`` options per device (the phone is an iPhone 12/13/14-sized screen)."""

PHONE_MAX_WIDTH = 600

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "artifacts" / "screenshots"

KEY = "q5wqT0Vf0mB3rXy2kZ8nN4pL7sD1gH6jC9vE2aR5tYU="
"""A fixed Fernet key (secrets at rest, e.g. TOTP seeds): the store is thrown away anyway."""

OPERATOR = Actor.operator("web-test")


class NewContext(Protocol):
    """The ``new_context`` fixture: ``new_context(device="desktop")`` opens a fresh context
    (its own cookies: one person) of that size, closed after the test."""

    def __call__(self, device: Device = ...) -> BrowserContext: ...


def context_options(device: Device) -> dict[str, Any]:
    """Everything ``Browser.new_context`` takes for ``device``, zone and locale included."""
    return {**DEVICES[device], "timezone_id": TIMEZONE, "locale": LOCALE}


def device_of(page: Page) -> Device:
    """Which of the two screen sizes ``page`` has (by its viewport's width)."""
    size = page.viewport_size
    return "phone" if size is not None and size["width"] <= PHONE_MAX_WIDTH else "desktop"


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page PNG of ``page`` as ``artifacts/screenshots/<device>/<name>.png``."""
    path = SCREENSHOTS / device_of(page) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port, in a thread; yields its base URL.

    The socket is bound before the thread starts (port 0: the OS picks), so two xdist workers
    never race for a port.
    """
    listening = socket.create_server(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive(), "the server stopped while starting"
            assert time.monotonic() < deadline, "the server did not start in 30 s"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listening.close()


class RunningClock:
    """The wall clock, moved forward when a test says so: the browser works in real time, and
    a story that must wait (five minutes before an activation may be ended early) skips the
    wait instead of sleeping."""

    def __init__(self) -> None:
        self._ahead = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._ahead

    def advance(self, delta: timedelta) -> None:
        self._ahead += delta


@dataclass(frozen=True)
class LivePimlico:
    """A Pimlico server a browser can reach, with the runtime behind it (for assertions and
    for setting things up through the services) and the demo directory loaded into it."""

    url: str
    rt: Pimlico
    settings: Settings
    demo: Demo
    clock: RunningClock

    @property
    def portal(self) -> str:
        """The portal's root, ``<url>/portal/``."""
        return f"{self.url}/portal/"

    def user_id(self, user_name: str) -> str:
        """The id of a demo person (``alex``, ``bob``, ``root``, ``priya``, …)."""
        return self.demo.users[user_name]


@dataclass(frozen=True)
class LiveConsole:
    """The example mail console served for a live Pimlico, with its own service token."""

    url: str
    token: str


def web_settings(database_url: str) -> Settings:
    """Settings for a browser test's Pimlico.

    ``decision_max_staleness=0``: a browser page has no write revision to pass to ``check``,
    and a test clicks faster than a person, so every decision reads the store's head
    (in production a second of lag is invisible to people). ``token_cache_seconds=0``: a
    sign-out is refused everywhere at once.
    """
    return Settings(
        database_url=database_url,
        secret_key=SecretStr(KEY),
        token_cache_seconds=0,
        decision_max_staleness=0.0,
    )


def console_token(rt: Pimlico) -> str:
    """The console's own identity: a service account, actively Security Reader (so it may
    ask about others), and a token scoped to ``pim.decisions.read``."""
    account = directory.create_service_account(rt, actor=OPERATOR, name="mail-console").value
    assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ACTIVE,
        principal=PrincipalRef(PrincipalType.SERVICE_ACCOUNT, account.id),
        target=Target.role(SECURITY_READER.id),
        duration=timedelta(days=30),
        justification="the mail console asks Pimlico",
    )
    return accounts.issue_token(
        rt,
        actor=OPERATOR,
        name="mail console",
        scopes=["pim.decisions.read"],
        service_account_id=account.id,
    ).bearer
