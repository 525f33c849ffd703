"""Batch handlers and the set-based jobs, on SQLite and PostgreSQL: a batch kind's due jobs
are taken in the write that runs them (no lease, no claim of their own) and handled by one
call; a call failing on one job is split in halves until that job fails alone, leaving the
others done, exactly once, with the audit chain whole; a write failing as a whole runs its
jobs again one write each; many assignments ending at once publish each end once (stale jobs
nothing), with one read of the assignments; consumers still get each event once; bulk
enqueues keep the dedupe keys (also those ``enqueue`` left to the write's end), the events'
order and the stored form of instants. Fixed clock; nothing sleeps."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import Text, cast, event, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

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
    """``test.batch``, a batch kind: notes each call's jobs and how the store saw them then
    (``seen``: status and attempts, by id), writes one audit event per job, and raises on a
    job whose payload says ``bad`` (after the events of the jobs before it), or makes the
    commit of its write fail, once, for a job whose payload says ``sabotage``;
    ``test.single``, a per-job kind, notes its job."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.seen: dict[str, tuple[str, int]] = {}
        self.sabotaged = False

    def batch(self, rt: Pimlico, w: WriteContext, jobs: Sequence[Job]) -> None:
        self.calls.append([job.id for job in jobs])
        rows = w.session.execute(select(JobRow.id, JobRow.status, JobRow.attempts))
        self.seen |= {row.id: (row.status, row.attempts) for row in rows}
        for job in jobs:
            if job.payload.get("bad"):
                raise RuntimeError(f"job {job.id} is bad")
            if job.payload.get("sabotage") and not self.sabotaged:
                self.sabotaged = True
                event.listen(w.session, "before_commit", _refuse_commit)
            w.record(action="test.ran", target_type="test", target_id=job.id, before=None, after={})

    def single(self, rt: Pimlico, w: WriteContext, job: Job) -> None:
        self.calls.append([job.id])

    def worker(self, rt: Pimlico, **kwargs: object) -> Worker:
        kinds = {"test.batch": Batched(self.batch), "test.single": self.single}
        return Worker(rt, kinds, name="w1", **kwargs)  # type: ignore[arg-type]


def _refuse_commit(session: Session) -> None:
    if not session.in_nested_transaction():  # a savepoint's release commits too
        raise RuntimeError("the commit failed")


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


def test_a_batch_kind_s_due_jobs_are_taken_in_one_write_and_given_to_one_call(
    rt: Pimlico, clock: FixedClock
) -> None:
    batches = Batches()
    ids = add(
        rt,
        *[("test.batch", {}, timedelta(0))] * 7,
        ("test.single", {}, SECOND),
        *[("test.batch", {}, 2 * SECOND)] * 2,
    )
    batched = ids[:7] + ids[8:]
    before = revision(rt)

    assert batches.worker(rt).run_once(clock.now() + 2 * SECOND) == 10

    assert batches.calls == [batched, [ids[7]]]
    assert revision(rt) == before + 2, "one write for the batch kind, one for the other"
    assert {batches.seen[i] for i in batched} == {("pending", 0)}, "no claim before the write"
    with rt.reading() as s:
        rows = s.execute(select(JobRow).where(JobRow.id.in_(batched))).scalars().all()
        done = {(r.status, r.attempts, r.claimed_by, r.claimed_until) for r in rows}
        assert done == {("done", 1, "w1", None)}
        assert {r.finished_at for r in rows} == {clock.now()}
    assert audited(rt) == sorted(batched)


def test_a_take_reads_at_most_batch_jobs_and_the_rest_go_on_in_the_next_write(
    rt: Pimlico, clock: FixedClock
) -> None:
    batches = Batches()
    ids = add(rt, *[("test.batch", {}, timedelta(0))] * 9)
    before = revision(rt)

    assert batches.worker(rt, batch=4).run_once(clock.now()) == 9

    assert batches.calls == [ids[:4], ids[4:8], ids[8:]]
    assert revision(rt) == before + 3
    assert statuses(rt, ids) == [("done", 1)] * 9


@pytest.mark.parametrize("claim_every", [timedelta(0), timedelta(hours=1)])
def test_other_kinds_are_claimed_during_a_burst_of_full_takes_every_claim_every(
    rt: Pimlico, clock: FixedClock, claim_every: timedelta
) -> None:
    batches = Batches()
    ids = add(rt, *[("test.batch", {}, timedelta(0))] * 4, ("test.single", {}, timedelta(0)))

    worker = batches.worker(rt, batch=2, claim_every=claim_every)
    assert worker.run_once(clock.now()) == 5

    if claim_every:  # after the burst: its takes were full
        assert batches.calls == [ids[:2], ids[2:4], [ids[4]]]
    else:  # after each take
        assert batches.calls == [ids[:2], [ids[4]], ids[2:4]]


def test_jobs_taken_but_not_reached_before_hold_stay_pending_untouched(
    rt: Pimlico, clock: FixedClock
) -> None:
    batches = Batches()
    ids = add(rt, *[("test.batch", {}, timedelta(0))] * 3)
    before = revision(rt)

    assert batches.worker(rt, hold=timedelta(0)).run_once(clock.now()) == 3

    assert batches.calls == [[i] for i in ids], "at least one job per write, then hold is spent"
    assert revision(rt) == before + 3
    assert batches.seen[ids[2]] == ("pending", 0), "left as it was by the first two writes"
    assert statuses(rt, ids) == [("done", 1)] * 3


def test_a_worker_with_nothing_due_takes_no_revision(rt: Pimlico, clock: FixedClock) -> None:
    batches = Batches()
    add(rt, ("test.batch", {}, DAY), ("test.single", {}, DAY))
    before = revision(rt)

    assert batches.worker(rt).run_once(clock.now()) == 0

    assert revision(rt) == before
    assert batches.calls == []


def test_a_batch_kind_s_job_whose_worker_died_holding_its_lease_is_taken_and_counted(
    rt: Pimlico, clock: FixedClock
) -> None:
    """A lease on a batch kind: written by a worker that ran it as a plain kind, then died."""
    batches = Batches()
    (orphan,) = add(rt, ("test.batch", {}, timedelta(0)))
    with rt.sessions() as s, s.begin():
        s.execute(
            update(JobRow)
            .where(JobRow.id == orphan)
            .values(status="running", claimed_by="dead", attempts=1, claimed_until=clock.now())
        )

    assert batches.worker(rt).run_once(clock.now() - SECOND) == 0
    assert batches.worker(rt).run_once(clock.now()) == 1

    assert statuses(rt, [orphan]) == [("done", 2)]
    assert audited(rt) == [orphan]


def test_a_batch_call_failing_on_one_job_is_halved_until_it_fails_alone(
    rt: Pimlico, clock: FixedClock
) -> None:
    batches = Batches()
    ids = add(rt, *[("test.batch", {"bad": i == 5}, timedelta(0)) for i in range(11)])
    others = ids[:5] + ids[6:]
    before = revision(rt)

    assert batches.worker(rt).run_once(clock.now()) == 11

    assert revision(rt) == before + 1, "the batch ran in one write"
    assert statuses(rt, others) == [("done", 1)] * 10
    with rt.reading() as s:
        failed = s.get(JobRow, ids[5])
        assert failed is not None
        assert (failed.status, failed.attempts, failed.claimed_by) == ("pending", 1, None)
        assert failed.last_error == f"RuntimeError: job {ids[5]} is bad"
        assert SECOND <= failed.due_at - clock.now() <= SECOND * 1.1
        assert verify(s) is None
    assert audited(rt) == sorted(others), "each job's events exactly once"
    assert batches.calls == [ids, ids[:5], ids[5:], ids[5:8], ids[5:6], ids[6:8], ids[8:]]


def test_a_batch_call_failing_on_every_job_fails_each_alone(rt: Pimlico, clock: FixedClock) -> None:
    batches = Batches()
    ids = add(rt, *[("test.batch", {"bad": True}, timedelta(0))] * 4)

    assert batches.worker(rt, max_attempts=1).run_once(clock.now()) == 4

    assert statuses(rt, ids) == [("failed", 1)] * 4
    assert [call for call in batches.calls if len(call) == 1] == [[i] for i in ids]
    assert audited(rt) == []


def test_a_write_of_taken_jobs_failing_as_a_whole_runs_each_again_in_its_own_write(
    rt: Pimlico, clock: FixedClock
) -> None:
    batches = Batches()
    ids = add(rt, *[("test.batch", {"sabotage": i == 1}, timedelta(0)) for i in range(3)])
    before = revision(rt)

    assert batches.worker(rt).run_once(clock.now()) == 3

    assert batches.calls == [ids, [ids[0]], [ids[1]], [ids[2]]]
    assert revision(rt) == before + 3, "the failed write left nothing; then one write per job"
    assert statuses(rt, ids) == [("done", 1)] * 3
    assert audited(rt) == sorted(ids)
    with rt.reading() as s:
        assert verify(s) is None


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


def test_enqueue_many_skips_the_dedupe_keys_enqueue_left_to_the_end_of_the_write(
    rt: Pimlico,
) -> None:
    with rt.writing(OPERATOR) as w:
        first = outbox.enqueue(w, kind="test.single", payload={}, due_at=w.at, dedupe_key="a")
        again = outbox.enqueue_many(w, [NewJob("test.single", {}, w.at, "a")])

    assert first is not None
    assert again == [None]
    with rt.reading() as s:
        assert s.scalars(select(JobRow.id).where(JobRow.dedupe_key == "a")).all() == [first]


def test_jobs_enqueued_in_bulk_store_their_instants_as_every_other_write_does(
    rt: Pimlico, clock: FixedClock
) -> None:
    """Compared as stored (on SQLite, text): a bulk insert bypasses SQLAlchemy's parameter
    processing, and must still write what it would have."""
    due = clock.now() + DAY
    with rt.writing(OPERATOR) as w:
        (one,) = outbox.enqueue_many(w, [NewJob("test.single", {"n": 1}, due)])
        w.session.add(
            JobRow(
                id="orm",
                kind="test.single",
                payload={"n": 1},
                due_at=due,
                created_at=w.at,
                attempts=0,
                status="pending",
            )
        )

    assert one is not None
    with rt.reading() as s:
        stored = s.execute(
            text("SELECT id, due_at, created_at FROM jobs WHERE id IN (:one, 'orm')"),
            {"one": one},
        ).all()
        assert len(stored) == 2
        assert len({(row.due_at, row.created_at) for row in stored}) == 1
        found = s.scalars(select(JobRow.id).where(JobRow.due_at == due))
        assert sorted(found) == sorted([one, "orm"])
        job = s.get(JobRow, one)
        assert job is not None
        assert (job.payload, job.due_at, job.created_at) == ({"n": 1}, due, clock.now())


def test_jobs_streamed_into_the_outbox_take_no_dedupe_key(rt: Pimlico) -> None:
    with pytest.raises(ValueError, match="without a dedupe_key"), rt.writing(OPERATOR) as w:
        outbox.enqueue_streamed(w, [outbox.EncodedJob("test.single", "{}", w.at, "key")])

    with rt.reading() as s:
        assert s.scalars(select(JobRow.id)).all() == []


def test_payloads_holding_the_characters_a_copy_gives_a_meaning_to_are_stored_as_given(
    rt: Pimlico,
) -> None:
    """On PostgreSQL the rows travel as ``COPY`` text, where a backslash, a tab, a newline
    and a carriage return mean something: each must reach the store as it was given."""
    texts = [
        '{"path":"C:\\\\temp\\\\new","quote":"say \\"hi\\"","tab":"a\\tb"}',
        '{\n\t"raw":\r\n"whitespace between tokens"}',
        '{"backslash-N":"\\\\N","end":"\\\\."}',
    ]
    with rt.writing(OPERATOR) as w:
        jobs = [outbox.EncodedJob(f"test.{n}", text, w.at) for n, text in enumerate(texts)]
        outbox.enqueue_streamed(w, jobs)
        (keyed,) = outbox.enqueue_encoded(
            w, [outbox.EncodedJob("test.keyed", texts[0], w.at, "key\\with\ttab")]
        )

    with rt.reading() as s:
        rows = s.execute(select(JobRow.kind, cast(JobRow.payload, Text)))
        stored = {kind: payload for kind, payload in rows}
        key = s.scalar(select(JobRow.dedupe_key).where(JobRow.id == keyed))
    assert stored == {**{f"test.{n}": text for n, text in enumerate(texts)}, "test.keyed": texts[0]}
    assert key == "key\\with\ttab"


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_ids_given_as_one_parameter_are_refused_if_one_holds_a_comma(rt: Pimlico) -> None:
    """On PostgreSQL the list travels comma-separated: an id with a comma would be split."""
    one_of = outbox.one_of(JobRow.__table__.c.id, "ids", dialect="postgresql")

    with rt.reading() as s, pytest.raises(StatementError, match="an id holds a comma"):
        s.execute(select(JobRow.id).where(one_of), {"ids": ["a,b"]})


def test_jobs_enqueued_in_bulk_have_time_ordered_ids(rt: Pimlico) -> None:
    with rt.writing(OPERATOR) as w:
        ids = outbox.enqueue_many(w, [NewJob("test.single", {}, w.at)] * 3)

    assert {uuid.UUID(str(i)).version for i in ids} == {7}


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
