"""Batch handlers and the set-based jobs, on SQLite and PostgreSQL: a batch kind's consecutive
jobs are handled by one call; a call failing on one job leaves the others done, exactly once,
with the audit chain whole; many assignments ending at once publish each end once (stale jobs
nothing), with one read of the assignments; consumers still get each event once; bulk
enqueues keep the dedupe keys and the events' order. Fixed clock; nothing sleeps."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import event, select
from sqlalchemy.engine import Connection

from pimlico.clock import FixedClock
from pimlico.db.audit import WriteContext, current_revision, verify
from pimlico.db.tables import AuditEventRow, JobRow
from pimlico.domain.events import AssignmentEnded, AssignmentFacts, DomainEvent
from pimlico.domain.model import AssignmentKind, PrincipalRef, PrincipalType
from pimlico.jobs import events, outbox
from pimlico.jobs.handlers import HANDLERS, handlers
from pimlico.jobs.outbox import NewJob
from pimlico.jobs.worker import Batched, Job, Worker
from pimlico.services import assignments
from pimlico.services.assignment_events import EXPIRE_JOB
from pimlico.services.runtime import Pimlico
from tests.factories import T0
from tests.integration.test_requests import READER
from tests.integration.world import OPERATOR, user

SECOND = timedelta(seconds=1)
DAY = timedelta(days=1)


class Batches:
    """``test.batch``, a batch kind: notes each call's jobs, writes one audit event per job,
    and raises on a job whose payload says ``bad`` (after the events of the jobs before it);
    ``test.single``, a per-job kind, notes its job."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def batch(self, rt: Pimlico, w: WriteContext, jobs: Sequence[Job]) -> None:
        self.calls.append([job.id for job in jobs])
        for job in jobs:
            if job.payload.get("bad"):
                raise RuntimeError(f"job {job.id} is bad")
            w.record(action="test.ran", target_type="test", target_id=job.id, before=None, after={})

    def single(self, rt: Pimlico, w: WriteContext, job: Job) -> None:
        self.calls.append([job.id])

    def worker(self, rt: Pimlico, **kwargs: object) -> Worker:
        kinds = {"test.batch": Batched(self.batch), "test.single": self.single}
        return Worker(rt, kinds, name="w1", **kwargs)  # type: ignore[arg-type]


def add(rt: Pimlico, *jobs: tuple[str, Mapping[str, object], timedelta]) -> list[str]:
    """Jobs of (kind, payload, due from now), in one write."""
    with rt.writing(OPERATOR) as w:
        ids = outbox.enqueue_many(w, [NewJob(k, p, w.at + due) for k, p, due in jobs])
    return [i for i in ids if i is not None]


def audited(rt: Pimlico) -> list[str]:
    with rt.reading() as s:
        ran = select(AuditEventRow.target_id).where(AuditEventRow.action == "test.ran")
        return sorted(s.scalars(ran))


def statuses(rt: Pimlico, ids: list[str]) -> list[tuple[str, int]]:
    with rt.reading() as s:
        rows = s.execute(select(JobRow.id, JobRow.status, JobRow.attempts))
        found = {row.id: (row.status, row.attempts) for row in rows}
    return [found[i] for i in ids]


def revision(rt: Pimlico) -> int:
    with rt.reading() as s:
        return current_revision(s)


def test_a_batch_kind_s_consecutive_jobs_are_given_to_one_call_a_group_at_a_time(
    rt: Pimlico, clock: FixedClock
) -> None:
    batches = Batches()
    ids = add(
        rt,
        *[("test.batch", {}, timedelta(0))] * 7,
        ("test.single", {}, SECOND),
        *[("test.batch", {}, 2 * SECOND)] * 2,
    )

    assert batches.worker(rt, group=5).run_once(clock.now() + 2 * SECOND) == 10

    assert [len(call) for call in batches.calls] == [5, 2, 1, 2]
    assert sorted(i for call in batches.calls for i in call) == sorted(ids)
    assert audited(rt) == sorted(ids[:7] + ids[8:])


@pytest.mark.parametrize("group", [1, 50])
def test_a_batch_call_failing_on_one_job_leaves_the_others_done_once_and_the_chain_whole(
    rt: Pimlico, clock: FixedClock, group: int
) -> None:
    batches = Batches()
    ids = add(rt, *[("test.batch", {"bad": i == 5}, timedelta(0)) for i in range(11)])
    others = ids[:5] + ids[6:]
    before = revision(rt)

    assert batches.worker(rt, group=group).run_once(clock.now()) == 11

    assert revision(rt) == before + 1, "the batch ran in one write"
    assert statuses(rt, others) == [("done", 1)] * 10
    with rt.reading() as s:
        failed = s.get(JobRow, ids[5])
        assert failed is not None
        assert (failed.status, failed.attempts) == ("pending", 1)
        assert failed.last_error == f"RuntimeError: job {ids[5]} is bad"
        assert verify(s) is None
    assert audited(rt) == sorted(others), "each job's events exactly once"
    if group == 50:
        assert batches.calls[0] == ids, "one call for the group, then each job alone"
        assert batches.calls[1:] == [[i] for i in ids]


def test_enqueue_many_skips_the_dedupe_keys_taken_in_the_store_or_earlier_in_the_list(
    rt: Pimlico,
) -> None:
    with rt.writing(OPERATOR) as w:
        outbox.enqueue(w, kind="test.single", payload={}, due_at=w.at, dedupe_key="a")
        ids = outbox.enqueue_many(
            w,
            [
                NewJob("test.single", {}, w.at, "a"),
                NewJob("test.single", {}, w.at, "b"),
                NewJob("test.single", {}, w.at, "b"),
                NewJob("test.single", {}, w.at),
                NewJob("test.single", {}, w.at),
            ],
        )

    assert [i is None for i in ids] == [True, False, True, False, False]
    with rt.reading() as s:
        keys = Counter(s.scalars(select(JobRow.dedupe_key)))
    assert keys == Counter({"a": 1, "b": 1, None: 2})


def test_events_published_one_by_one_and_in_bulk_keep_their_order(
    rt: Pimlico, clock: FixedClock
) -> None:
    def ended(n: int) -> AssignmentEnded:
        principal = PrincipalRef(PrincipalType.USER, "someone")
        facts = AssignmentFacts(f"a-{n}", AssignmentKind.ACTIVE, principal, READER, T0, T0, None)
        return AssignmentEnded(facts, T0, "expired")

    with rt.writing(OPERATOR) as w:
        events.publish(w, ended(1))
        events.publish_many(w, [ended(2), ended(3)])
        events.publish(w, ended(4))
    with rt.writing(OPERATOR) as w:
        events.publish_many(w, [ended(5), ended(6)])

    found = [e for e in _published(rt) if isinstance(e, AssignmentEnded)]
    assert [e.assignment.assignment_id for e in found] == [f"a-{n}" for n in range(1, 7)]


def test_fifty_assignments_ending_at_once_publish_each_end_once_and_stale_jobs_nothing(
    rt: Pimlico, clock: FixedClock
) -> None:
    made = [_assign(rt, f"user-{i}") for i in range(50)]
    end = clock.now() + DAY
    extended, removed = made[0], made[1]
    assignments.extend_assignment(rt, actor=OPERATOR, assignment_id=extended, duration=2 * DAY)
    clock.advance(timedelta(hours=1))
    assignments.remove_assignment(rt, actor=OPERATOR, assignment_id=removed, reason="left")
    worker = Worker(rt, HANDLERS, name="w1")
    worker.run_once(clock.now())  # the events of the set-up
    published_before = len(_published(rt))

    clock.set(end)
    with _statements(rt) as seen:
        # 50 ends and the extended one's new reminder (a day before its new end), then
        # 48 AssignmentEnded and 1 AssignmentExpiringSoon published.
        assert worker.run_once(clock.now()) == 50 + 1 + 48 + 1

    ended = [e for e in _published(rt) if isinstance(e, AssignmentEnded)]
    expired = Counter(e.assignment.assignment_id for e in ended if e.reason == "expired")
    assert expired == Counter(dict.fromkeys(made[2:], 1))
    assert all(e.at == end for e in ended if e.reason == "expired")
    assert [e.reason for e in ended if e.assignment.assignment_id == removed] == ["left"]
    assert len(_published(rt)) == published_before + 48 + 1
    with rt.reading() as s:
        due = s.execute(select(JobRow.status, JobRow.attempts).where(JobRow.kind == EXPIRE_JOB))
        assert Counter(due) == Counter({("done", 1): 50, ("pending", 0): 1})
        assert verify(s) is None
    reads = [sql for sql in seen if sql.startswith("SELECT") and "FROM assignments" in sql]
    assert len(reads) == 2, "one read for the fifty ends, one for the reminder"

    clock.set(end + DAY)
    worker.run_once(clock.now())
    ended = [e for e in _published(rt) if isinstance(e, AssignmentEnded)]
    assert [e.reason for e in ended if e.assignment.assignment_id == extended] == ["expired"]


def test_each_consumer_gets_each_of_many_events_once(rt: Pimlico, clock: FixedClock) -> None:
    got: Counter[tuple[str, str]] = Counter()

    def consumer(name: str) -> events.Consumer:
        def follow(rt: Pimlico, w: WriteContext, event: DomainEvent) -> None:
            if isinstance(event, AssignmentEnded):
                got[(name, event.assignment.assignment_id)] += 1

        return follow

    made = [_assign(rt, f"user-{i}") for i in range(20)]
    worker = Worker(rt, handlers({"a": consumer("a"), "b": consumer("b")}), name="w1")
    clock.advance(DAY)
    worker.run_once(clock.now())
    worker.run_once(clock.now())

    assert got == Counter({(name, a): 1 for name in "ab" for a in made})
    with rt.reading() as s:
        deliveries = s.scalars(select(JobRow.status).where(JobRow.kind == events.DELIVER_JOB))
        assert set(deliveries) == {"done"}


def _assign(rt: Pimlico, name: str) -> str:
    principal = user(rt, name)
    return assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ELIGIBLE,
        principal=principal,
        target=READER,
        duration=DAY,
    ).value.id


def _published(rt: Pimlico) -> list[DomainEvent]:
    with rt.reading() as s:
        return events.published(s)


@contextmanager
def _statements(rt: Pimlico) -> Iterator[list[str]]:
    seen: list[str] = []

    def note(conn: Connection, cursor: object, sql: str, *args: object) -> None:
        seen.append(sql)

    event.listen(rt.engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(rt.engine, "before_cursor_execute", note)
