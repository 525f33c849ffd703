"""Browser tests: Playwright's sync API driving Debian's Chromium against real servers.

Fixtures:

- ``browser``: one Chromium per test process (session); missing ``/usr/bin/chromium`` skips
  with the reason on a user's machine and fails under ``CI=true``, where nothing may skip.
- ``new_context(device="desktop")``: a fresh browser context per call (``desktop``:
  1280x800; ``phone``: 390x844, touch, scale 2), in the ``Europe/Berlin`` zone, closed
  after the test. ``desktop`` and ``phone`` are one context each; ``page`` is a page in
  ``desktop``. Two people in one test: two contexts (their cookies are apart).
- ``live_pimlico``: a real Pimlico server (``create_app``, real clock) over a fresh migrated
  SQLite store with the demo directory loaded (``LivePimlico``: ``url``, ``portal``, ``rt``,
  ``settings``, ``demo``, ``user_id(name)``). SQLite only, to keep CI short: the store is
  the API tests' business; a test that wants PostgreSQL too parametrizes ``backend``
  (``@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres",
  marks=pytest.mark.postgres)])``).
- ``live_console``: the example mail console (``examples/mail_console``) served for
  ``live_pimlico`` with its own service token (``LiveConsole``: ``url``, ``token``).

``screenshot(page, name)`` (``tests.web.harness``) saves what a page looks like.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from examples.mail_console.app import create_console
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from pimlico.api import create_app
from pimlico.demo import load_demo
from pimlico.services.runtime import Pimlico
from tests.conftest import _in_ci
from tests.web.harness import (
    CHROMIUM,
    CHROMIUM_ARGS,
    Device,
    LiveConsole,
    LivePimlico,
    NewContext,
    RunningClock,
    console_token,
    context_options,
    serve,
    web_settings,
)

DEFAULT_TIMEOUT_MS = 10_000
"""How long a locator waits: long enough for a loaded CI machine, short enough to fail fast."""


@pytest.fixture
def backend() -> str:
    """The browser tests' store is SQLite (see the module docstring for PostgreSQL too)."""
    return "sqlite"


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, headless, launched once per test process."""
    if not CHROMIUM.exists():
        message = (
            f"Chromium not found at {CHROMIUM}: apt-get install -y --no-install-recommends chromium"
        )
        if _in_ci():
            pytest.fail(f"{message} (CI=true: nothing may skip)")
        pytest.skip(message)
    launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield launched
    launched.close()


@pytest.fixture
def new_context(browser: Browser) -> Iterator[NewContext]:
    made: list[BrowserContext] = []

    def opened(device: Device = "desktop") -> BrowserContext:
        context = browser.new_context(**context_options(device))
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        made.append(context)
        return context

    yield opened
    for context in made:
        context.close()


@pytest.fixture
def desktop(new_context: NewContext) -> BrowserContext:
    return new_context("desktop")


@pytest.fixture
def phone(new_context: NewContext) -> BrowserContext:
    return new_context("phone")


@pytest.fixture
def page(desktop: BrowserContext) -> Page:
    return desktop.new_page()


@pytest.fixture
def live_pimlico(migrated_url: str) -> Iterator[LivePimlico]:
    settings = web_settings(migrated_url)
    clock = RunningClock()
    with Pimlico(settings, clock=clock) as rt:
        demo = load_demo(rt)
        with serve(create_app(settings, runtime=rt)) as url:
            yield LivePimlico(url=url, rt=rt, settings=settings, demo=demo, clock=clock)


@pytest.fixture
def live_console(live_pimlico: LivePimlico) -> Iterator[LiveConsole]:
    token = console_token(live_pimlico.rt)
    with serve(create_console(live_pimlico.url, token)) as url:
        yield LiveConsole(url=url, token=token)
