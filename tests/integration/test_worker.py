"""The outbox and the worker on SQLite and PostgreSQL: jobs commit with their change, run once
when due, retry with growing delays, are reclaimed after a lease runs out, are never run twice
by two workers, and time out pending requests. Fixed clock; nothing sleeps."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select

from pimlico.clock import FixedClock
from pimlico.db.audit import WriteContext
from pimlico.db.tables import AuditEventRow, JobRow
from pimlico.domain.requests import RequestStatus, Ticket
from pimlico.jobs import outbox
from pimlico.jobs.handlers import HANDLERS
from pimlico.jobs.worker import Job, Worker
from pimlico.services import requests
from pimlico.services.runtime import Pimlico
from tests.integration.test_requests import (  # noqa: F401 (settings is a fixture)
    _u,
    activate,
    eligible,
    person,
    purge_group,
    settings,
    with_mfa,
)
from tests.integration.world import OPERATOR

SECOND = timedelta(seconds=1)


class Recorder:
    """Test handlers: ``test.record`` counts its calls per job; ``test.fail`` always raises."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def record(self, rt: Pimlico, w: WriteContext, job: Job) -> None:
        with self._lock:
            self.calls[job.id] += 1

    def fail(self, rt: Pimlico, w: WriteContext, job: Job) -> None:
        raise RuntimeError(f"downstream unavailable (attempt {job.attempt})")

    def worker(self, rt: Pimlico, name: str = "w1", **kwargs: object) -> Worker:
        handlers = {"test.record": self.record, "test.fail": self.fail}
        return Worker(rt, handlers, name=name, **kwargs)  # type: ignore[arg-type]


def add(rt: Pimlico, kind: str, due: timedelta = timedelta(0), n: int = 1) -> list[str]:
    with rt.writing(OPERATOR) as w:
        ids = [outbox.enqueue(w, kind=kind, payload={"n": i}, due_at=w.at + due) for i in range(n)]
    return [i for i in ids if i is not None]


def enqueue_then_fail(rt: Pimlico) -> None:
    with rt.writing(OPERATOR) as w:
        outbox.enqueue(w, kind="test.record", payload={}, due_at=w.at)
        raise RuntimeError("the change failed")


def job(rt: Pimlico, job_id: str) -> JobRow:
    with rt.reading() as s:
        row = s.get(JobRow, job_id)
        assert row is not None
        s.expunge(row)
        return row


def test_a_job_enqueued_in_a_rolled_back_write_never_exists(rt: Pimlico) -> None:
    with pytest.raises(RuntimeError, match="the change failed"):
        enqueue_then_fail(rt)

    with rt.reading() as s:
        assert s.scalars(select(JobRow)).all() == []
        assert outbox.next_due(s) is None


def test_the_same_follow_up_is_enqueued_once(rt: Pimlico) -> None:
    with rt.writing(OPERATOR) as w:
        first = outbox.enqueue(w, kind="test.record", payload={}, due_at=w.at, dedupe_key="k")
    with rt.writing(OPERATOR) as w:
        again = outbox.enqueue(w, kind="test.record", payload={}, due_at=w.at, dedupe_key="k")

    assert first is not None
    assert again is None


def test_due_jobs_run_once_and_jobs_not_yet_due_wait(rt: Pimlico, clock: FixedClock) -> None:
    recorder = Recorder()
    now_ids = add(rt, "test.record", n=3)
    (later,) = add(rt, "test.record", due=timedelta(hours=1))
    worker = recorder.worker(rt)

    assert worker.run_once(clock.now()) == 3
    assert worker.run_once(clock.now()) == 0
    assert recorder.calls == Counter(dict.fromkeys(now_ids, 1))
    assert job(rt, later).status == "pending"
    with rt.reading() as s:
        assert outbox.next_due(s) == clock.now() + timedelta(hours=1)

    clock.advance(timedelta(hours=1))
    assert worker.run_once(clock.now()) == 1
    done = job(rt, later)
    assert (done.status, done.attempts, done.finished_at) == ("done", 1, clock.now())
    assert recorder.calls[later] == 1


def test_a_failing_job_retries_with_growing_delays_then_fails_keeping_its_error(
    rt: Pimlico, clock: FixedClock
) -> None:
    worker = Recorder().worker(rt, max_attempts=4, base_delay=SECOND)
    (failing,) = add(rt, "test.fail")

    delays = []
    for attempt in (1, 2, 3):
        assert worker.run_once(clock.now()) == 1
        row = job(rt, failing)
        assert (row.status, row.attempts) == ("pending", attempt)
        assert row.last_error == f"RuntimeError: downstream unavailable (attempt {attempt})"
        delays.append(row.due_at - clock.now())
        assert worker.run_once(clock.now()) == 0
        clock.set(row.due_at)
    for attempt, delay in enumerate(delays):
        assert SECOND * 2**attempt <= delay <= SECOND * 2**attempt * 1.1

    assert worker.run_once(clock.now()) == 1
    row = job(rt, failing)
    assert (row.status, row.attempts, row.finished_at) == ("failed", 4, clock.now())
    assert row.last_error == "RuntimeError: downstream unavailable (attempt 4)"
    clock.advance(timedelta(days=1))
    assert worker.run_once(clock.now()) == 0


def test_a_job_whose_worker_died_is_claimed_again_when_its_lease_runs_out(
    rt: Pimlico, clock: FixedClock
) -> None:
    recorder = Recorder()
    (orphan,) = add(rt, "test.record")
    with rt.sessions() as s, s.begin():
        row = s.get(JobRow, orphan)
        assert row is not None
        row.status, row.claimed_by, row.attempts = "running", "dead-worker", 1
        row.claimed_until = clock.now() + timedelta(seconds=60)
    worker = recorder.worker(rt)

    assert worker.run_once(clock.now()) == 0
    with rt.reading() as s:
        assert outbox.next_due(s) == clock.now() + timedelta(seconds=60)
    clock.advance(timedelta(seconds=60))
    assert worker.run_once(clock.now()) == 1

    done = job(rt, orphan)
    assert (done.status, done.claimed_by, done.attempts) == ("done", "w1", 2)
    assert recorder.calls[orphan] == 1


def test_a_worker_only_claims_the_kinds_it_has_handlers_for(rt: Pimlico, clock: FixedClock) -> None:
    (other,) = add(rt, "someone.else")

    assert Recorder().worker(rt).run_once(clock.now()) == 0
    assert job(rt, other).status == "pending"


def test_a_commit_that_enqueues_wakes_the_workers_of_this_process(rt: Pimlico) -> None:
    wake = threading.Event()
    with rt.sessions() as s:
        outbox.listen(s, wake)
    try:
        with pytest.raises(RuntimeError, match="the change failed"):
            enqueue_then_fail(rt)
        assert not wake.is_set()
        add(rt, "test.record")
        assert wake.is_set()
    finally:
        with rt.sessions() as s:
            outbox.unlisten(s, wake)


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_two_workers_never_run_the_same_job(rt: Pimlico, clock: FixedClock) -> None:
    recorder = Recorder()
    ids = add(rt, "test.record", n=200)
    with Pimlico(rt.settings, clock=clock) as other:
        workers = [recorder.worker(rt, "w1", batch=20), recorder.worker(other, "w2", batch=20)]
        start = threading.Barrier(2)
        tried: list[int] = []

        def run(worker: Worker) -> None:
            start.wait()
            tried.append(worker.run_once(clock.now()))

        threads = [threading.Thread(target=run, args=(w,)) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert sum(tried) == 200
    assert recorder.calls == Counter(dict.fromkeys(ids, 1))
    with rt.reading() as s:
        statuses = s.scalars(select(JobRow.status)).all()
    assert statuses == ["done"] * 200


def test_a_pending_request_expires_when_the_worker_runs_at_its_timeout_not_before(
    rt: Pimlico, clock: FixedClock
) -> None:
    alex, bob = person(rt, "alex"), person(rt, "bob")
    target = purge_group(rt, bob)
    eligible(rt, _u(alex), target)
    with_mfa(rt, clock, alex)
    asked = activate(rt, alex, target, justification="why", ticket=Ticket("SN", "1")).value.request
    due = asked.requested_at + timedelta(days=1)
    with rt.reading() as s:
        assert outbox.next_due(s) == due
    worker = Worker(rt, HANDLERS, name="w1")

    clock.set(due - SECOND)
    assert worker.run_once(clock.now()) == 0
    assert requests.get_request(rt, actor=alex, request_id=asked.id).request.status is (
        RequestStatus.PENDING_APPROVAL
    )

    clock.set(due)
    assert worker.run_once(clock.now()) == 1
    view = requests.get_request(rt, actor=alex, request_id=asked.id)
    assert view.request.status is RequestStatus.EXPIRED
    with rt.reading() as s:
        expired = s.scalars(
            select(AuditEventRow).where(
                AuditEventRow.action == "request.expired", AuditEventRow.target_id == asked.id
            )
        ).all()
        assert [e.actor for e in expired] == ["system:worker:w1"]
        assert outbox.next_due(s) is None
    assert worker.run_once(clock.now() + timedelta(days=2)) == 0
