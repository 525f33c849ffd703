"""A test-only batch kind for the worker crash test, loaded by ``pimlico worker --handlers``.

``test.marks`` (``Batched``) first creates the file named by ``PIMLICO_TEST_CRASH_SIGNAL`` (so
the test knows the worker is inside its write), then, for each job, sleeps a little and inserts
its id into ``crash_marks`` — in the write that took the jobs, so the marks commit with their
``done``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from sqlalchemy import text

from pimlico.db.audit import WriteContext
from pimlico.jobs.worker import Batched, Handler, Job
from pimlico.services.runtime import Pimlico


def marks(rt: Pimlico, w: WriteContext, jobs: Sequence[Job]) -> None:
    Path(os.environ["PIMLICO_TEST_CRASH_SIGNAL"]).touch()
    for job in jobs:
        time.sleep(0.15)
        w.session.execute(text("INSERT INTO crash_marks (job_id) VALUES (:id)"), {"id": job.id})


HANDLERS: Mapping[str, Handler] = {"test.marks": Batched(marks)}
