"""Notifications: email over SMTP and Slack/Teams webhooks, driven by the outbox.

How it fits together (a worker's wiring, which entry points do):

- ``consumers(settings)``: the event consumer to start the worker with
  (``jobs.handlers.handlers(consumers=…)``): inside each event's delivery write it records the
  messages the event calls for as ``notify.send`` jobs (``consumer``, ``plan``, ``audience``,
  ``facts``);
- ``handlers(settings)``: job handlers to add to the worker's: ``provisioning.alert`` logs the
  alert as before and records a message to the administrators;
- ``sender.Sender`` / ``start_sender``: renders and sends the ``notify.send`` jobs outside
  every write, beside the worker. The worker must not be given ``notify.send``.

Settings: ``NotifySettings`` (``PIMLICO_SMTP_*``, ``PIMLICO_PUBLIC_URL``, …). Templates:
``render``. What is sent when, to whom: docs/notifications.md.

This module imports only the settings at import time, so that ``pimlico.settings`` may
import ``NotifySettings`` without a cycle (the rest needs the runtime, which needs them).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from pimlico.notify.settings import NotifySettings

if TYPE_CHECKING:
    from pimlico.jobs.events import Consumer
    from pimlico.jobs.worker import Handler
    from pimlico.notify.sender import Sender
    from pimlico.services.runtime import Pimlico

CONSUMER = "notify"
"""The consumer's name in the worker (each consumer's deliveries are retried on their own)."""
SEND_JOB = "notify.send"
"""The job kind of a message to send (``consumer.SEND_JOB``)."""

__all__ = ["CONSUMER", "SEND_JOB", "NotifySettings", "consumers", "handlers", "start_sender"]


def consumers(settings: NotifySettings) -> dict[str, Consumer]:
    """The event consumers to start the worker with, by name."""
    from pimlico.notify.consumer import consumer

    return {CONSUMER: consumer(settings)}


def handlers(settings: NotifySettings) -> dict[str, Handler]:
    """Job handlers to merge over the worker's (they replace ``provisioning.alert``)."""
    from pimlico.notify.consumer import alert_handler
    from pimlico.services.provisioning_work import ALERT_JOB

    return {ALERT_JOB: alert_handler(settings)}


def start_sender(
    rt: Pimlico, settings: NotifySettings, *, name: str, stop: threading.Event
) -> tuple[Sender, threading.Thread]:
    """A sender in a thread of its own until ``stop`` is set (then call its ``wake``)."""
    from pimlico.notify.sender import start

    return start(rt, settings, name=name, stop=stop)
