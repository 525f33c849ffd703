"""A Pimlico runtime on a fresh migrated database (SQLite and PostgreSQL) with a fixed clock,
a real SMTP server on loopback, and a worker and a sender wired as a deployment wires them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from pydantic import SecretStr

from pimlico import notify
from pimlico.clock import FixedClock
from pimlico.domain.model import AssignmentKind, PrincipalRef, PrincipalType, Target
from pimlico.jobs import handlers as job_handlers
from pimlico.jobs.worker import Worker
from pimlico.notify import NotifySettings
from pimlico.notify.sender import Sender
from pimlico.services import assignments, directory, role_settings
from pimlico.services.runtime import Actor, Pimlico
from pimlico.settings import Settings
from tests.factories import T0
from tests.integration.world import OPERATOR
from tests.notify.servers import SmtpServer

KEY = "q5wqT0Vf0mB3rXy2kZ8nN4pL7sD1gH6jC9vE2aR5tYU="


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def settings(migrated_url: str) -> Settings:
    return Settings(
        database_url=migrated_url, max_nesting_depth=4, secret_key=SecretStr(KEY), mfa_freshness=600
    )


@pytest.fixture
def rt(settings: Settings, clock: FixedClock) -> Iterator[Pimlico]:
    with Pimlico(settings, clock=clock) as runtime:
        yield runtime


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


def notify_settings(smtp: SmtpServer | None, **changes: Any) -> NotifySettings:
    values: dict[str, Any] = {"public_url": "https://pim.example.org", "notify_base_delay": 1.0}
    if smtp is not None:
        values |= {"smtp_host": "127.0.0.1", "smtp_port": smtp.port, "smtp_security": "none"}
    return NotifySettings(**(values | changes))


@dataclass
class Notifier:
    """A worker delivering events to the notification consumer, and a sender."""

    rt: Pimlico
    settings: NotifySettings

    def consumers(self) -> dict[str, Any]:
        return notify.consumers(self.settings)

    def worker(self) -> Worker:
        kinds = {
            **job_handlers.handlers(consumers=notify.consumers(self.settings)),
            **notify.handlers(self.settings),
        }
        return Worker(self.rt, kinds, name="worker")

    def run(self) -> int:
        """Run the due jobs, then send the due messages; how many messages were tried."""
        self.worker().run_once(self.rt.clock.now())
        sender = Sender(self.rt, self.settings, name="sender")
        try:
            return sender.run_once()
        finally:
            sender.close()


@pytest.fixture
def notifier(rt: Pimlico, smtp: SmtpServer) -> Notifier:
    return Notifier(rt, notify_settings(smtp))


# -- helpers -------------------------------------------------------------------------------

DAY = timedelta(days=1)


def person(rt: Pimlico, name: str, *, email: bool = True) -> Actor:
    address = f"{name}@example.org" if email else None
    made = directory.create_user(
        rt, actor=OPERATOR, user_name=name, display_name=name.title(), email=address
    ).value
    return Actor.principal(made.id)


def ref(actor: Actor) -> PrincipalRef:
    return PrincipalRef(PrincipalType.USER, actor.name)


def mails(smtp: SmtpServer, address: str, about: str = "") -> list[EmailMessage]:
    return [m for m in smtp.inbox.to(address) if about in str(m["Subject"])]


def bodies(message: EmailMessage) -> tuple[str, str]:
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None
    assert html is not None
    return str(text.get_content()), str(html.get_content())


def policy(rt: Pimlico, target: Target, changes: dict[str, object]) -> None:
    role_settings.update_policy(
        rt, actor=OPERATOR, target_type=target.type, object_id=target.object_id, changes=changes
    )


def eligible(rt: Pimlico, holder: PrincipalRef, target: Target, days: int = 90) -> str:
    return assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ELIGIBLE,
        principal=holder,
        target=target,
        duration=days * DAY,
    ).value.id
