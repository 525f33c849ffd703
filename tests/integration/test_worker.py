"""The outbox and the worker on SQLite and PostgreSQL: jobs commit with their change, run once
when due, retry with growing delays, are reclaimed after a lease runs out, are never run twice
by two workers, and time out pending requests. Batches: one write for many jobs, a failing job
undoes only itself (and the audit chain stays whole), claims take at most ``batch`` jobs, a
job taken over is skipped, and a batch that fails as a whole runs again one write per job.
A sleeping worker wakes at the next due instant (counted from after it looked it up), and a
running one keeps what was alive at its start out of full collections. Fixed clock; nothing
sleeps."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select, text, update
from sqlalchemy.orm import Session

from pimlico.clock import FixedClock
from pimlico.db.audit import WriteContext, current_revision, verify
from pimlico.db.tables import AuditEventRow, JobRow
from pimlico.domain.requests import RequestStatus, Ticket
from pimlico.jobs import outbox
from pimlico.jobs.handlers import HANDLERS
from pimlico.jobs.worker import Batched, Job, Worker
from pimlico.services import requests
from pimlico.services.approvals import ADVANCE_JOB
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
    """Test handlers: ``test.record`` counts its calls per job (``test.records`` too, as a
    batch kind); ``test.fail`` always raises; ``test.audit`` counts its calls and writes one
    audit event; ``test.audit_then_fail`` writes one and raises; ``test.conflict`` writes one,
    then a row that breaks the jobs' primary key; ``test.flaky`` raises on its first attempt
    and audits on the next; ``test.peek`` notes how many jobs are running; ``test.steal``
    hands the job named in its payload to another worker, as a takeover after a lease ran out
    would; ``test.sabotage`` makes the commit of its write fail, once."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.order: list[str] = []
        self.running: list[int] = []
        self.sabotaged = False
        self._lock = threading.Lock()

    def record(self, rt: Pimlico, w: WriteContext, job: Job) -> None:
        with self._lock:
            self.calls[job.id] += 1
            self.order.append(job.id)

    def records(self, rt: Pimlico, w: WriteContext, jobs: Sequence[Job]) -> None:
        for job in jobs:
            self.record(rt, w, job)

    def fail(self, rt: Pimlico, w: WriteContext, job: Job) -> None:
        raise RuntimeError(f"downstream unavailable (attempt {job.attempt})")

    def audit(self, rt: Pimlico, w: WriteContext, job: Job) -> None:
        self.record(rt, w, job)
        w.record(action="test.ran", target_type="test", target_id=job.id, before=None, after={})

    def audit_then_fail(self, rt: Pimlico, w: WriteContext, job: Job) -> None:
        self.audit(rt, w, job)
        self.fail(rt, w, job)

    def conflict(self, rt: Pimlico, w: WriteContext, job: Job) -> None:
        self.audit(rt, w, job)
        w.session.add(
            JobRow(
                id=job.id,
                kind=job.kind,
                payload={},
                due_at=w.at,
                created_at=w.at,
                attempts=0,
                status="pending",
            )
        )

    def flaky(self, rt: Pimlico, w: WriteContext, job: Job) -> None:
        if job.attempt == 1:
            self.fail(rt, w, job)
        self.audit(rt, w, job)

    def peek(self, rt: Pimlico, w: WriteContext, job: Job) -> None:
        running = select(func.count()).select_from(JobRow).where(JobRow.status == "running")
        self.running.append(w.session.execute(running).scalar_one())

    def steal(self, rt: Pimlico, w: WriteContext, job: Job) -> None:
        w.session.execute(
            update(JobRow)
            .where(JobRow.id == job.payload["victim"])
            .values(claimed_by="w2", attempts=JobRow.attempts + 1)
        )

    def sabotage(self, rt: Pimlico, w: WriteContext, job: Job) -> None:
        if not self.sabotaged:
            self.sabotaged = True
            event.listen(w.session, "before_commit", _refuse_commit)

    def worker(self, rt: Pimlico, name: str = "w1", **kwargs: object) -> Worker:
        handlers = {
            "test.record": self.record,
            "test.records": Batched(self.records),
            "test.fail": self.fail,
            "test.audit": self.audit,
            "test.audit_then_fail": self.audit_then_fail,
            "test.conflict": self.conflict,
            "test.flaky": self.flaky,
            "test.peek": self.peek,
            "test.steal": self.steal,
            "test.sabotage": self.sabotage,
        }
        return Worker(rt, handlers, name=name, **kwargs)  # type: ignore[arg-type]


def _refuse_commit(session: Session) -> None:
    if not session.in_nested_transaction():  # a savepoint's release commits too
        raise RuntimeError("the commit failed")


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


def in_order(rt: Pimlico, kinds: list[str]) -> list[str]:
    """One job of each kind, all due now, claimed in the order given."""
    with rt.writing(OPERATOR) as w:
        ids = [
            outbox.enqueue(w, kind=kind, payload={}, due_at=w.at - SECOND * (len(kinds) - i))
            for i, kind in enumerate(kinds)
        ]
    return [i for i in ids if i is not None]


def revision(rt: Pimlico) -> int:
    with rt.reading() as s:
        return current_revision(s)


def audited(rt: Pimlico) -> list[str]:
    """The jobs ``test.audit`` wrote an event for (one entry per event), sorted."""
    with rt.reading() as s:
        events = select(AuditEventRow.target_id).where(AuditEventRow.action == "test.ran")
        return sorted(s.scalars(events))


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


def test_claims_take_pending_jobs_and_lapsed_leases_together_the_earliest_due_first(
    rt: Pimlico, clock: FixedClock
) -> None:
    recorder = Recorder()
    first, second, third, fourth = in_order(rt, ["test.record"] * 4)
    with rt.sessions() as s, s.begin():
        s.execute(
            update(JobRow)
            .where(JobRow.id.in_([first, third]))
            .values(status="running", claimed_by="dead", attempts=1, claimed_until=clock.now())
        )

    assert recorder.worker(rt, batch=2).run_once(clock.now()) == 4

    assert recorder.order == [first, second, third, fourth]
    assert {(job(rt, i).status, job(rt, i).attempts) for i in (first, third)} == {("done", 2)}


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


@pytest.mark.parametrize("group", [1, 50])
@pytest.mark.parametrize(
    ("failing", "error"),
    [("test.audit_then_fail", "RuntimeError: "), ("test.conflict", "IntegrityError: ")],
)
def test_a_failing_job_in_a_batch_undoes_only_itself_and_leaves_the_audit_chain_whole(
    rt: Pimlico, clock: FixedClock, group: int, failing: str, error: str
) -> None:
    ids = in_order(rt, ["test.audit"] * 5 + [failing] + ["test.audit"] * 5)
    others = ids[:5] + ids[6:]
    before = revision(rt)

    assert Recorder().worker(rt, group=group).run_once(clock.now()) == 11

    assert revision(rt) == before + 1, "the batch ran in one write"
    assert {(job(rt, i).status, job(rt, i).attempts) for i in others} == {("done", 1)}
    failed = job(rt, ids[5])
    assert (failed.status, failed.attempts, failed.claimed_by) == ("pending", 1, None)
    assert failed.last_error is not None
    assert failed.last_error.startswith(error)
    assert SECOND <= failed.due_at - clock.now() <= SECOND * 1.1
    assert audited(rt) == sorted(others)
    with rt.reading() as s:
        assert verify(s) is None


def test_a_job_that_failed_in_a_batch_runs_again_when_its_retry_falls_due(
    rt: Pimlico, clock: FixedClock
) -> None:
    worker = Recorder().worker(rt)
    first, flaky, last = in_order(rt, ["test.audit", "test.flaky", "test.audit"])

    assert worker.run_once(clock.now()) == 3
    retry = job(rt, flaky)
    assert (retry.status, retry.attempts) == ("pending", 1)
    assert worker.run_once(retry.due_at - timedelta(microseconds=1)) == 0
    clock.set(retry.due_at)
    assert worker.run_once(clock.now()) == 1

    done = job(rt, flaky)
    assert (done.status, done.attempts, done.finished_at) == ("done", 2, clock.now())
    assert audited(rt) == sorted([first, flaky, last])


def test_a_write_holds_the_lock_for_at_most_hold_and_the_rest_go_on_in_the_next(
    rt: Pimlico, clock: FixedClock
) -> None:
    recorder = Recorder()
    ids = add(rt, "test.audit", n=4)
    before = revision(rt)

    assert recorder.worker(rt, hold=timedelta(0)).run_once(clock.now()) == 4

    assert revision(rt) == before + 4, "at least one job per write, then the budget is spent"
    assert {job(rt, i).status for i in ids} == {"done"}
    assert recorder.calls == Counter(dict.fromkeys(ids, 1))
    assert audited(rt) == sorted(ids)


def test_a_claim_takes_at_most_batch_jobs(rt: Pimlico, clock: FixedClock) -> None:
    recorder = Recorder()
    add(rt, "test.peek", n=25)

    assert recorder.worker(rt, batch=10).run_once(clock.now()) == 25

    assert sorted(set(recorder.running)) == [5, 10]


def test_a_claimed_job_taken_over_before_its_write_is_skipped(
    rt: Pimlico, clock: FixedClock
) -> None:
    recorder = Recorder()
    with rt.writing(OPERATOR) as w:
        victim = outbox.enqueue(w, kind="test.audit", payload={}, due_at=w.at)
        outbox.enqueue(w, kind="test.steal", payload={"victim": victim}, due_at=w.at - SECOND)
    assert victim is not None

    assert recorder.worker(rt, hold=timedelta(0)).run_once(clock.now()) == 2

    assert recorder.calls[victim] == 0
    row = job(rt, victim)
    assert (row.status, row.claimed_by, row.attempts) == ("running", "w2", 2)
    assert audited(rt) == []


def test_a_batch_that_fails_as_a_whole_runs_again_one_write_per_job_each_once(
    rt: Pimlico, clock: FixedClock
) -> None:
    recorder = Recorder()
    ids = in_order(rt, ["test.audit", "test.sabotage", "test.audit"])
    before = revision(rt)

    assert recorder.worker(rt).run_once(clock.now()) == 3

    assert {(job(rt, i).status, job(rt, i).attempts) for i in ids} == {("done", 1)}
    assert revision(rt) == before + 3, "the failed batch left nothing; then one write per job"
    assert recorder.calls == Counter({ids[0]: 2, ids[2]: 2})
    assert audited(rt) == sorted([ids[0], ids[2]])
    with rt.reading() as s:
        assert verify(s) is None


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
@pytest.mark.parametrize("kind", ["test.record", "test.records"])
def test_two_workers_never_run_the_same_job(rt: Pimlico, clock: FixedClock, kind: str) -> None:
    """Claimed with a lease (``test.record``) or taken in the write (a batch kind)."""
    recorder = Recorder()
    ids = add(rt, kind, n=200)
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
    advancing = [ADVANCE_JOB]  # (the other jobs of the set-up, such as events, aside)
    with rt.reading() as s:
        assert outbox.next_due(s, advancing) == due
    worker = Worker(rt, {ADVANCE_JOB: HANDLERS[ADVANCE_JOB]}, name="w1")

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
        assert outbox.next_due(s, advancing) is None
    assert worker.run_once(clock.now() + timedelta(days=2)) == 0


def test_a_worker_sleeps_until_the_next_due_instant_counted_from_after_it_looked_it_up(
    rt: Pimlico, clock: FixedClock
) -> None:
    """Each statement takes a second here (the clock moves on as it runs)."""
    (later,) = add(rt, "test.record", due=timedelta(seconds=10))
    due = job(rt, later).due_at

    def a_second_passes(*args: object) -> None:
        clock.advance(SECOND)

    event.listen(rt.engine, "before_cursor_execute", a_second_passes)
    try:
        seconds = Recorder().worker(rt, cap=timedelta(hours=1))._sleep()
    finally:
        event.remove(rt.engine, "before_cursor_execute", a_second_passes)

    assert clock.now() > due - timedelta(seconds=10), "the look-up took time"
    assert seconds == (due - clock.now()).total_seconds()


def test_a_running_worker_keeps_what_was_alive_when_it_started_out_of_full_collections(
    rt: Pimlico, clock: FixedClock
) -> None:
    frozen: list[int] = []
    ran = threading.Event()

    def note(rt: Pimlico, w: WriteContext, job: Job) -> None:
        frozen.append(gc.get_freeze_count())
        ran.set()

    add(rt, "test.note")
    worker = Worker(rt, {"test.note": note}, name="w1", cap=timedelta(hours=1))
    stop = threading.Event()
    thread = threading.Thread(target=worker.run_forever, args=(stop,))
    thread.start()
    try:
        assert ran.wait(30)
    finally:
        stop.set()
        worker.wake()
        thread.join(30)

    assert frozen[0] > 0, "frozen while it runs"
    assert gc.get_freeze_count() == 0, "given back when it stops"


ENQUEUE_ELSEWHERE = """
import sys
from datetime import datetime
from pimlico.jobs.outbox import enqueue
from pimlico.services.runtime import Actor, Pimlico
from pimlico.settings import Settings

with Pimlico(Settings(database_url=sys.argv[1])) as rt, rt.writing(Actor.operator("other")) as w:
    enqueue(w, kind="test.woken", payload={}, due_at=datetime.fromisoformat(sys.argv[2]))
"""


class _Sleepy(Worker):
    """A worker that says when it goes to sleep, and sleeps for up to an hour."""

    sleeping = threading.Event()

    def _sleep(self) -> float:
        seconds = super()._sleep()
        self.sleeping.set()
        return seconds


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_job_enqueued_by_another_process_wakes_a_sleeping_worker_at_once(
    rt: Pimlico, clock: FixedClock
) -> None:
    """Its cap is an hour: only PostgreSQL's notification can wake it before the guard."""
    ran = threading.Event()
    worker = _Sleepy(
        rt, {"test.woken": lambda rt, w, job: ran.set()}, name="w", cap=timedelta(hours=1)
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run_forever, args=(stop,))
    thread.start()
    try:
        assert worker.sleeping.wait(30)
        _listening(rt)
        subprocess.run(
            [
                sys.executable,
                "-c",
                ENQUEUE_ELSEWHERE,
                rt.settings.database_url,
                clock.now().isoformat(),
            ],
            check=True,
            timeout=60,
        )
        assert ran.wait(30), "the sleeping worker was not woken by the other process's commit"
    finally:
        stop.set()
        worker.wake()
        thread.join(30)


def _listening(rt: Pimlico) -> None:
    """Wait (up to 30 s) until the worker's listener has run ``LISTEN``."""
    for _ in range(300):
        with rt.reading() as s:
            found = s.scalar(
                select(func.count())
                .select_from(text("pg_stat_activity"))
                .where(text("query = 'LISTEN pimlico_jobs'"))
            )
        if found:
            return
        time.sleep(0.1)
    raise AssertionError("the worker never listened")
