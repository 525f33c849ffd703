"""Recording the messages an event calls for, inside the write that delivers it.

The event consumer (``consumer``) and the ``provisioning.alert`` handler (``alert_handler``)
run inside a store write, so they send nothing: for each notice (``plan``) they apply the
target's notification rule, find the addresses and enqueue a ``notify.send`` job per email
recipient and per chat channel, its payload what rendering the message needs (its kind, the
address and the facts it shows). The ``Sender`` renders and sends them outside every write:
rendering is the consumer's costliest step, and the write lock is no place for it.

A rule whose level is ``none`` sends nothing for its notice; ``critical`` only the notices
that need someone to act (approval needed, expiring soon, provisioning failed); with
``default_recipients`` off only the rule's additional recipients get mail. Chat messages go
out for a notice its rule lets through, to the channels configured for its kind.

A ``notify.send`` payload: ``{"channel": "email" | "slack" | "teams", "kind", "context"}``
(the template variables), with ``"to"`` and ``"recipient"`` (a name or ``None``) for email.

Idempotent: every message's dedupe key is made of the event's identity, the kind, the channel
and the address, so a repeated delivery of the same event enqueues nothing more.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from pimlico.db.audit import WriteContext
from pimlico.domain.events import DomainEvent
from pimlico.domain.policy import NotificationLevel
from pimlico.jobs import handlers as job_handlers
from pimlico.jobs.events import Consumer
from pimlico.jobs.outbox import NewJob, enqueue_many
from pimlico.jobs.worker import Handler, Job
from pimlico.notify import SEND_JOB, audience, plan
from pimlico.notify.facts import Facts
from pimlico.notify.settings import NotifySettings
from pimlico.services.runtime import Pimlico

log = logging.getLogger(__name__)

CHAT_CHANNELS = ("slack", "teams")


def consumer(settings: NotifySettings) -> Consumer:
    """The event consumer: records the messages each event calls for."""

    def follow(rt: Pimlico, w: WriteContext, event: DomainEvent) -> None:
        for notice in plan.notices(rt, Facts.of(w), event, settings.public_url):
            record(w, notice, settings)

    return follow


def alert_handler(settings: NotifySettings) -> Handler:
    """The ``provisioning.alert`` handler: logs the alert, as the built-in one does, and
    records a message to the administrators (their Global / Privileged Role Administrator
    holders in force; no target rule governs it)."""

    def alert(rt: Pimlico, w: WriteContext, job: Job) -> None:
        job_handlers.alert(rt, w, job)
        data = dict(job.payload.get("data", {}))
        notice = plan.Notice(
            "provisioning_failed",
            f"ProvisioningFailed:{job.id}",
            frozenset(audience.administrators(rt, w.at)),
            None,
            None,
            True,
            {"alert": data},
        )
        record(w, notice, settings)

    return alert


def record(w: WriteContext, notice: plan.Notice, settings: NotifySettings) -> int:
    """Enqueue the messages of ``notice`` its rule lets through; how many were new."""
    s = w.session
    rule = None
    if notice.rule is not None and notice.target is not None:
        rule = Facts.of(w).rules(notice.target).rule(*notice.rule)
        if rule.level is NotificationLevel.NONE or (
            rule.level is NotificationLevel.CRITICAL and not notice.critical
        ):
            return 0
    addresses: dict[str, tuple[str, str | None]] = {}
    if rule is None or rule.default_recipients:
        for person in audience.people(s, notice.people, why=notice.kind):
            addresses.setdefault(person.email.casefold(), (person.email, person.name))
    for extra in () if rule is None else rule.additional_recipients:
        addresses.setdefault(extra.casefold(), (extra, None))
    base = {**notice.context, "kind": notice.kind, "public_url": settings.public_url}
    base.setdefault("link", notice.link)
    jobs: list[NewJob] = []
    for key, (address, name) in sorted(addresses.items()):
        payload: dict[str, Any] = {
            "channel": "email",
            "kind": notice.kind,
            "to": address,
            "recipient": name,
            "context": base,
        }
        jobs.append(_job(w, notice, "email", key, payload))
    for channel in CHAT_CHANNELS:
        if settings.chat_url(channel, notice.kind) is not None:
            payload = {"channel": channel, "kind": notice.kind, "context": base}
            jobs.append(_job(w, notice, channel, "", payload))
    if not jobs:
        log.info("%s (%s): nobody to notify", notice.kind, notice.identity)
        return 0
    return sum(1 for made in enqueue_many(w, jobs) if made is not None)


def _job(
    w: WriteContext, notice: plan.Notice, channel: str, address: str, payload: dict[str, Any]
) -> NewJob:
    identity = "\x1f".join((notice.identity, notice.kind, channel, address))
    key = f"{SEND_JOB}:{hashlib.sha256(identity.encode()).hexdigest()}"
    return NewJob(SEND_JOB, payload, w.at, dedupe_key=key)
