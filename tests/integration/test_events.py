"""Domain events: published with the write that causes them, at the instant they happen
(later starts, reminders 14 and 1 days before the end, the end), and delivered to each
consumer at least once — on SQLite and PostgreSQL, with a fixed clock."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select

from pimlico.clock import FixedClock
from pimlico.db.audit import WriteContext
from pimlico.db.tables import AuditEventRow
from pimlico.domain.events import (
    AssignmentActivated,
    AssignmentCreated,
    AssignmentEnded,
    AssignmentExpiringSoon,
    DomainEvent,
)
from pimlico.domain.model import AssignmentKind, Target
from pimlico.domain.requests import (
    ApprovalStageCompleted,
    RequestApproved,
    RequestStatus,
    RequestSubmitted,
    Ticket,
)
from pimlico.jobs import events
from pimlico.jobs.handlers import HANDLERS, handlers
from pimlico.jobs.worker import Worker
from pimlico.services import approvals, assignments
from pimlico.services.runtime import Pimlico
from tests.integration.test_requests import (
    READER,
    _u,
    activate,
    eligible,
    person,
    purge_group,
    settings,  # noqa: F401 (the fixture: a secret key for MFA)
    with_mfa,
)
from tests.integration.world import OPERATOR, user

DAY = timedelta(days=1)


def published(rt: Pimlico) -> list[DomainEvent]:
    with rt.reading() as s:
        return events.published(s)


def names(found: list[DomainEvent]) -> Counter[str]:
    return Counter(type(e).__name__ for e in found)


def run(rt: Pimlico, clock: FixedClock) -> None:
    Worker(rt, HANDLERS, name="w").run_once(clock.now())


def test_an_assignment_in_force_at_once_is_created_and_activated_with_its_write(
    rt: Pimlico,
) -> None:
    alex = user(rt, "alex")
    made = assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ACTIVE,
        principal=alex,
        target=READER,
        duration=DAY,
        justification="x",
    ).value

    found = published(rt)
    assert names(found) == Counter(
        {"AssignmentCreated": 1, "AssignmentActivated": 1, "RequestSubmitted": 1}
    )
    activated = next(e for e in found if isinstance(e, AssignmentActivated))
    assert activated.assignment.assignment_id == made.id
    assert activated.assignment.target == READER
    created = next(e for e in found if isinstance(e, AssignmentCreated))
    assert created.by == OPERATOR.name


def test_a_later_start_is_activated_when_it_comes_and_not_before(
    rt: Pimlico, clock: FixedClock
) -> None:
    alex = user(rt, "alex")
    start = clock.now() + DAY
    assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ACTIVE,
        principal=alex,
        target=READER,
        start=start,
        duration=DAY,
        justification="x",
    )
    clock.set(start - timedelta(seconds=1))
    run(rt, clock)
    assert names(published(rt))["AssignmentActivated"] == 0

    clock.set(start)
    run(rt, clock)
    run(rt, clock)

    activated = [e for e in published(rt) if isinstance(e, AssignmentActivated)]
    assert [e.at for e in activated] == [start]


def test_reminders_come_14_and_1_days_before_the_end_and_the_end_is_published(
    rt: Pimlico, clock: FixedClock
) -> None:
    alex = user(rt, "alex")
    made = assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ELIGIBLE,
        principal=alex,
        target=READER,
        duration=30 * DAY,
    ).value
    assert made.end is not None
    for instant in (made.end - 14 * DAY, made.end - DAY, made.end):
        clock.set(instant - timedelta(seconds=1))
        run(rt, clock)
        clock.set(instant)
        run(rt, clock)

    found = published(rt)
    soon = [e for e in found if isinstance(e, AssignmentExpiringSoon)]
    assert [(e.days_left, e.at) for e in soon] == [
        (14, made.end - 14 * DAY),
        (1, made.end - DAY),
    ]
    ended = [e for e in found if isinstance(e, AssignmentEnded)]
    assert [(e.reason, e.at) for e in ended] == [("expired", made.end)]


def test_an_extension_moves_the_reminders_and_the_end_and_an_early_end_is_published_once(
    rt: Pimlico, clock: FixedClock
) -> None:
    alex = user(rt, "alex")
    made = assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ELIGIBLE,
        principal=alex,
        target=READER,
        duration=20 * DAY,
    ).value
    assert made.end is not None
    assignments.extend_assignment(rt, actor=OPERATOR, assignment_id=made.id, duration=40 * DAY)
    new_end = clock.now() + 40 * DAY

    clock.set(made.end)  # the old end and the old reminders: nothing
    run(rt, clock)
    assert names(published(rt))["AssignmentExpiringSoon"] == 0
    assert names(published(rt))["AssignmentEnded"] == 0

    clock.set(new_end - 14 * DAY)
    run(rt, clock)
    assignments.remove_assignment(rt, actor=OPERATOR, assignment_id=made.id, reason="left")
    clock.set(new_end)
    run(rt, clock)

    found = published(rt)
    assert [e.days_left for e in found if isinstance(e, AssignmentExpiringSoon)] == [14]
    ended = [e for e in found if isinstance(e, AssignmentEnded)]
    assert [(e.reason, e.at) for e in ended] == [("left", new_end - 14 * DAY)]


def test_a_short_activation_gets_no_reminders(rt: Pimlico, clock: FixedClock) -> None:
    alex = user(rt, "alex")
    assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ACTIVE,
        principal=alex,
        target=READER,
        duration=timedelta(hours=8),
        justification="x",
    )
    clock.advance(timedelta(hours=8))
    run(rt, clock)
    assert names(published(rt))["AssignmentExpiringSoon"] == 0
    assert names(published(rt))["AssignmentEnded"] == 1


def test_the_request_story_is_published_as_it_happens(rt: Pimlico, clock: FixedClock) -> None:
    alex, bob = person(rt, "alex"), person(rt, "bob")
    target = purge_group(rt, bob)
    eligible(rt, _u(alex), target)
    with_mfa(rt, clock, alex)
    asked = activate(rt, alex, target, justification="INC-42", ticket=Ticket("SN", "42")).value

    submitted = [e for e in published(rt) if isinstance(e, RequestSubmitted)]
    assert submitted[-1].request_id == asked.request.id
    assert submitted[-1].status is RequestStatus.PENDING_APPROVAL

    approvals.approve(rt, actor=bob, request_id=asked.request.id, justification="ok")

    found = published(rt)
    about = [e for e in found if getattr(e, "request_id", None) == asked.request.id]
    assert [type(e) for e in about] == [RequestSubmitted, ApprovalStageCompleted, RequestApproved]
    activated = [e for e in found if isinstance(e, AssignmentActivated)]
    assert activated[-1].assignment.target == Target.group_member(target.object_id)
    assert activated[-1].assignment.request_id == asked.request.id


def test_each_consumer_gets_each_event_once_and_a_failing_one_is_retried_alone(
    rt: Pimlico, clock: FixedClock
) -> None:
    """What a consumer does in the delivery's write happens once per event and consumer;
    (effects outside the database may repeat: delivery is at least once)."""
    down_until = clock.now() + timedelta(seconds=1)

    def consumer(name: str) -> events.Consumer:
        def follow(rt: Pimlico, w: WriteContext, event: DomainEvent) -> None:
            down = rt.clock.now() < down_until
            if name == "flaky" and down and isinstance(event, AssignmentActivated):
                raise ConnectionError("downstream is down")
            w.record(
                action=f"probe.{name}",
                target_type="event",
                target_id=type(event).__name__,
                before=None,
                after=None,
            )

        return follow

    worker = Worker(
        rt,
        handlers({"steady": consumer("steady"), "flaky": consumer("flaky")}),
        name="w",
        base_delay=timedelta(seconds=1),
    )
    alex = user(rt, "alex")
    assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ACTIVE,
        principal=alex,
        target=READER,
        duration=DAY,
        justification="x",
    )

    worker.run_once(clock.now())
    assert probes(rt)["probe.flaky:AssignmentActivated"] == 0
    assert probes(rt)["probe.steady:AssignmentActivated"] == 1
    clock.advance(timedelta(seconds=2))
    worker.run_once(clock.now())

    assert probes(rt) == Counter(
        {
            f"probe.{consumer}:{name}": 1
            for consumer in ("steady", "flaky")
            for name in ("AssignmentCreated", "AssignmentActivated", "RequestSubmitted")
        }
    )


def probes(rt: Pimlico) -> Counter[str]:
    with rt.reading() as s:
        rows = s.execute(
            select(AuditEventRow.action, AuditEventRow.target_id).where(
                AuditEventRow.action.like("probe.%")
            )
        )
        return Counter(f"{action}:{target}" for action, target in rows)


@pytest.mark.parametrize("kind", [AssignmentKind.ELIGIBLE, AssignmentKind.ACTIVE])
def test_every_published_event_reads_back_as_it_was_published(
    rt: Pimlico, clock: FixedClock, kind: AssignmentKind
) -> None:
    alex = user(rt, "alex")
    assignments.assign(
        rt,
        actor=OPERATOR,
        kind=kind,
        principal=alex,
        target=READER,
        duration=20 * DAY,
        justification="x",
    )
    for event in published(rt):
        assert events.decode(events.encode(event)) == event
