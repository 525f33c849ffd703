"""The job kinds Pimlico runs, each a thin call of one use case (no business rules here).

``request.advance`` (payload ``{"request_id": …}``): time passes for a pending request —
``services.approvals.advance`` expires or escalates it and enqueues its next step.
``request.provision`` (same payload): a granted request's assignment has started —
``services.request_effects.provision_due`` marks it provisioned.
Every handler is idempotent (see ``pimlico.jobs.worker``).
"""

from __future__ import annotations

from collections.abc import Mapping

from pimlico.db.audit import WriteContext
from pimlico.jobs.worker import Handler, Job
from pimlico.services import approvals, request_effects
from pimlico.services.runtime import Pimlico


def advance_request(rt: Pimlico, w: WriteContext, job: Job) -> None:
    approvals.advance(w, request_id=str(job.payload["request_id"]))


def provision_request(rt: Pimlico, w: WriteContext, job: Job) -> None:
    request_effects.provision_due(w, request_id=str(job.payload["request_id"]))


HANDLERS: Mapping[str, Handler] = {
    approvals.ADVANCE_JOB: advance_request,
    request_effects.PROVISION_JOB: provision_request,
}
"""Every job kind the worker runs, by name."""
