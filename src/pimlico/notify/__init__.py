"""Notifications: email over SMTP and Slack/Teams webhooks, driven by the outbox.

How it fits together (a worker's wiring, which entry points do):

- ``consumers(settings)``: the event consumer to start the worker with
  (``jobs.handlers.handlers(consumers=…)``): inside each event's delivery write it records the
  messages the event calls for as ``notify.send`` jobs (``consumer``, ``plan``, ``audience``);
- ``handlers(settings)``: job handlers to add to the worker's: ``provisioning.alert`` logs the
  alert as before and records a message to the administrators;
- ``Sender`` / ``start``: sends the ``notify.send`` jobs outside every write (``sender``),
  beside the worker. The worker must not be given ``notify.send``.

Settings: ``NotifySettings`` (``PIMLICO_SMTP_*``, ``PIMLICO_PUBLIC_URL``, …). Templates:
``render``. What is sent when, to whom: docs/notifications.md.
"""

from __future__ import annotations

from pimlico.jobs.events import Consumer
from pimlico.jobs.worker import Handler
from pimlico.notify.consumer import SEND_JOB, alert_handler, consumer
from pimlico.notify.sender import Sender, start
from pimlico.notify.settings import NotifySettings
from pimlico.services.provisioning_work import ALERT_JOB

CONSUMER = "notify"
"""The consumer's name in the worker (each consumer's deliveries are retried on their own)."""

__all__ = ["CONSUMER", "SEND_JOB", "NotifySettings", "Sender", "consumers", "handlers", "start"]


def consumers(settings: NotifySettings) -> dict[str, Consumer]:
    """The event consumers to start the worker with, by name."""
    return {CONSUMER: consumer(settings)}


def handlers(settings: NotifySettings) -> dict[str, Handler]:
    """Job handlers to merge over the worker's (they replace ``provisioning.alert``)."""
    return {ALERT_JOB: alert_handler(settings)}
