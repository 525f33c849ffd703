"""The job kinds Pimlico runs, each a thin call of one use case (no business rules here).

- ``request.advance`` (payload ``{"request_id": …}``): time passes for a pending request —
  ``services.approvals.advance`` expires or escalates it and enqueues its next step.
- ``request.provision`` (same payload): a granted request's assignment has started —
  ``services.request_effects.provision_due`` marks it provisioned.
- ``assignment.start`` / ``assignment.remind`` / ``assignment.expire``: an assignment's
  later instant has come — ``services.assignment_events.fall_due`` publishes its event.
- ``event.publish`` / ``event.deliver``: published domain events go to the consumers the
  worker was started with (``jobs.events``). ``WORKER_HANDLERS`` (what ``pimlico worker``
  and ``pimlico serve`` run) delivers them to provisioning (``services.provisioning.follow``),
  which records what must be true downstream; the provisioning dispatcher
  (``jobs.provisioning``) calls the downstream systems outside every write.
- ``provisioning.alert``: provisioning into a downstream system failed for good — an
  administrator alert (``services.provisioning_work.ProvisioningFailed``), logged until
  notifications consume it.

The ``assignment.*`` kinds and ``event.publish`` are batch handlers (``Batched``): when a shift
ends, ten thousand of them fall due in the same second, and the worker takes them in the
write that runs them and hands each handler its consecutive jobs together. Every handler is
idempotent (see ``pimlico.jobs.worker``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from pimlico.db.audit import WriteContext
from pimlico.jobs import claims, events
from pimlico.jobs.worker import Batched, Handler, Job
from pimlico.services import approvals, assignment_events, provisioning, request_effects
from pimlico.services.provisioning_work import ALERT_JOB
from pimlico.services.runtime import Pimlico
from pimlico.settings import Settings

log = logging.getLogger(__name__)


def advance_request(rt: Pimlico, w: WriteContext, job: Job) -> None:
    approvals.advance(w, request_id=str(job.payload["request_id"]))


def provision_request(rt: Pimlico, w: WriteContext, job: Job) -> None:
    request_effects.provision_due(w, request_id=str(job.payload["request_id"]))


def assignment_instants(rt: Pimlico, w: WriteContext, jobs: Sequence[Job]) -> None:
    claims.decode_all(job.payload for job in jobs)
    assignment_events.fall_due(w, [(job.kind, job.payload) for job in jobs])


def alert(rt: Pimlico, w: WriteContext, job: Job) -> None:
    data = job.payload.get("data", {})
    log.error(
        "ALERT provisioning failed: %s in %s of connector %s after %s attempt(s): %s",
        data.get("principal_id"),
        data.get("downstream_object"),
        data.get("connector"),
        data.get("attempts"),
        data.get("error"),
    )


def handlers(consumers: Mapping[str, events.Consumer] | None = None) -> dict[str, Handler]:
    """Every job kind the worker runs, by name, delivering events to ``consumers``."""
    return {
        approvals.ADVANCE_JOB: advance_request,
        request_effects.PROVISION_JOB: provision_request,
        assignment_events.START_JOB: Batched(assignment_instants),
        assignment_events.REMIND_JOB: Batched(assignment_instants),
        assignment_events.EXPIRE_JOB: Batched(assignment_instants),
        ALERT_JOB: alert,
        **events.handlers(consumers or {}),
    }


HANDLERS: Mapping[str, Handler] = handlers()
"""The handlers of a worker with no event consumers."""

WORKER_HANDLERS: Mapping[str, Handler] = handlers({provisioning.CONSUMER: provisioning.follow})
"""A worker's handlers with events delivered to provisioning only (no notifications)."""


def worker_handlers(settings: Settings) -> dict[str, Handler]:
    """The handlers of Pimlico's worker (``pimlico worker``, ``pimlico serve``): events
    delivered to provisioning and to notifications, which record the messages to send; the
    notifications' sender (``notify.start_sender``) sends them, outside the worker."""
    from pimlico import notify

    consumers = {provisioning.CONSUMER: provisioning.follow, **notify.consumers(settings.notify)}
    return {**handlers(consumers), **notify.handlers(settings.notify)}
