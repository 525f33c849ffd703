"""The events of an assignment's life, published when they happen — also when that is later.

A write that creates or changes an assignment calls ``follow_up``: it publishes what is true
now (created; activated when an active assignment is in force at once) and enqueues a job
for each later instant: ``assignment.start`` (an active assignment starting later),
``assignment.remind`` (14 and 1 days before the end, when the assignment is in force by
then) and ``assignment.expire`` (the end). A job checks the assignment when it falls due and
publishes only if the instant it was scheduled for still holds: a job made stale by a later
change (a new end, an early end) does nothing, and that change scheduled its own. Ending an
assignment early publishes ``AssignmentEnded`` at once (``ended``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pimlico.db import mappers
from pimlico.db.audit import WriteContext
from pimlico.db.tables import AssignmentRow
from pimlico.domain.events import (
    EXPIRED,
    AssignmentActivated,
    AssignmentCreated,
    AssignmentEnded,
    AssignmentExpiringSoon,
    AssignmentFacts,
)
from pimlico.domain.model import Assignment, AssignmentKind
from pimlico.jobs.events import publish
from pimlico.jobs.outbox import enqueue

START_JOB, REMIND_JOB, EXPIRE_JOB = "assignment.start", "assignment.remind", "assignment.expire"
REMINDERS = (14, 1)
"""Days before the end at which ``AssignmentExpiringSoon`` is published."""


def follow_up(w: WriteContext, after: Assignment, before: Assignment | None = None) -> None:
    """Publish and schedule the events of ``after``, created (``before`` is ``None``) or
    changed from ``before`` in the write ``w``."""
    facts = AssignmentFacts.of(after)
    if before is None:
        publish(w, AssignmentCreated(facts, w.at, w.actor))
    started = before is not None and before.start <= w.at
    if after.kind is AssignmentKind.ACTIVE and not started:
        if after.start <= w.at:
            publish(w, AssignmentActivated(facts, w.at))
        else:
            _at(w, START_JOB, after, after.start)
    if after.end is None:
        return
    for days in REMINDERS:
        remind_at = after.end - timedelta(days=days)
        if remind_at > max(after.start, w.at):
            _at(w, REMIND_JOB, after, remind_at, days=days)
    _at(w, EXPIRE_JOB, after, after.end)


def ended(w: WriteContext, after: Assignment) -> None:
    """Publish that ``after`` was ended early in ``w`` (its ``end_reason`` says why)."""
    reason = after.end_reason or "removed"
    publish(w, AssignmentEnded(AssignmentFacts.of(after), w.at, reason))


def _at(
    w: WriteContext, kind: str, assignment: Assignment, due: datetime, *, days: int = 0
) -> None:
    start, end = assignment.start.isoformat(), assignment.end and assignment.end.isoformat()
    enqueue(
        w,
        kind=kind,
        payload={"assignment_id": assignment.id, "start": start, "end": end, "days": days},
        due_at=due,
        dedupe_key=f"{kind}:{assignment.id}:{start}:{end}:{days}",
    )


def fall_due(w: WriteContext, kind: str, payload: dict[str, object]) -> None:
    """The ``assignment.*`` jobs: publish the event if the assignment still has the start
    and end the job was scheduled for and was not ended early. Idempotent per job."""
    row = w.session.get(AssignmentRow, str(payload["assignment_id"]))
    if row is None or row.ended_at is not None:
        return
    assignment = mappers.assignment(row)
    end = assignment.end.isoformat() if assignment.end else None
    if (assignment.start.isoformat(), end) != (payload["start"], payload["end"]):
        return
    facts = AssignmentFacts.of(assignment)
    if kind == START_JOB:
        publish(w, AssignmentActivated(facts, assignment.start))
    elif kind == REMIND_JOB:
        days = int(str(payload["days"]))
        publish(w, AssignmentExpiringSoon(facts, w.at, days))
    elif kind == EXPIRE_JOB and assignment.end is not None:
        publish(w, AssignmentEnded(facts, assignment.end, EXPIRED))
