"""A test-only job kind for the worker crash test, loaded by ``pimlico worker --handlers``.

``test.mark`` sleeps a little (so a worker can be killed mid-batch), then inserts its job's id
into ``crash_marks`` — in the job's own write, so the mark commits with the job's ``done``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from sqlalchemy import text

from pimlico.db.audit import WriteContext
from pimlico.jobs.worker import Handler, Job
from pimlico.services.runtime import Pimlico

CREATE = "CREATE TABLE crash_marks (job_id VARCHAR(36) PRIMARY KEY)"


def mark(rt: Pimlico, w: WriteContext, job: Job) -> None:
    time.sleep(0.15)
    w.session.execute(text("INSERT INTO crash_marks (job_id) VALUES (:id)"), {"id": job.id})


HANDLERS: Mapping[str, Handler] = {"test.mark": mark}
