"""The job kinds Pimlico runs, each a thin call of one use case (no business rules here).

``request.advance`` (payload ``{"request_id": …}``): time passes for a pending request —
``services.requests.advance`` expires or escalates it and enqueues its next step.
Every handler is idempotent (see ``pimlico.jobs.worker``).
"""

from __future__ import annotations

from collections.abc import Mapping

from pimlico.db.audit import WriteContext
from pimlico.jobs.worker import Handler, Job
from pimlico.services import requests
from pimlico.services.runtime import Pimlico


def advance_request(rt: Pimlico, w: WriteContext, job: Job) -> None:
    requests.advance(w, request_id=str(job.payload["request_id"]))


HANDLERS: Mapping[str, Handler] = {"request.advance": advance_request}
"""Every job kind the worker runs, by name."""
