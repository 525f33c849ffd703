"""The events of an assignment's life, published when they happen — also when that is later.

A write that creates or changes an assignment calls ``follow_up``: it publishes what is true
now (created; activated when an active assignment is in force at once) and enqueues a job
for each later instant: ``assignment.start`` (an active assignment starting later),
``assignment.remind`` (14 and 1 days before the end, when the assignment is in force by
then) and ``assignment.expire`` (the end). A job checks the assignment when it falls due and
publishes only if the instant it was scheduled for still holds: a job made stale by a later
change (a new end, an early end) does nothing, and that change scheduled its own. Ending an
assignment early publishes ``AssignmentEnded`` at once (``ended``). The jobs are handled
set-based (``fall_due``), since thousands fall due at once when a shift ends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy import select

from pimlico.db.audit import WriteContext
from pimlico.db.tables import AssignmentRow, Base
from pimlico.domain.events import (
    EXPIRED,
    AssignmentActivated,
    AssignmentCreated,
    AssignmentEnded,
    AssignmentEvent,
    AssignmentExpiringSoon,
    AssignmentFacts,
)
from pimlico.domain.model import (
    Assignment,
    AssignmentKind,
    PrincipalRef,
    PrincipalType,
    Target,
    TargetType,
)
from pimlico.jobs.events import publish, publish_many
from pimlico.jobs.outbox import enqueue

START_JOB, REMIND_JOB, EXPIRE_JOB = "assignment.start", "assignment.remind", "assignment.expire"
REMINDERS = (14, 1)
"""Days before the end at which ``AssignmentExpiringSoon`` is published."""
_IDS_PER_SELECT = 1000
_ASSIGNMENTS = Base.metadata.tables[AssignmentRow.__tablename__]
_COLUMNS = [
    _ASSIGNMENTS.c[name]
    for name in (
        "id",
        "kind",
        "principal_type",
        "principal_id",
        "target_type",
        "target_id",
        "scope",
        "start_at",
        "end_at",
        "request_id",
        "ended_at",
    )
]


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
            _at(w, START_JOB, after, after.start, fresh=before is None)
    if after.end is None:
        return
    for days in REMINDERS:
        remind_at = after.end - timedelta(days=days)
        if remind_at > max(after.start, w.at):
            _at(w, REMIND_JOB, after, remind_at, days=days, fresh=before is None)
    _at(w, EXPIRE_JOB, after, after.end, fresh=before is None)


def ended(w: WriteContext, after: Assignment) -> None:
    """Publish that ``after`` was ended early in ``w`` (its ``end_reason`` says why)."""
    reason = after.end_reason or "removed"
    publish(w, AssignmentEnded(AssignmentFacts.of(after), w.at, reason))


def _at(
    w: WriteContext,
    kind: str,
    assignment: Assignment,
    due: datetime,
    *,
    days: int = 0,
    fresh: bool,
) -> None:
    """Enqueue the job ``kind`` of ``assignment`` due at ``due``; ``fresh``: the assignment
    was made in this write, so no job can carry its key yet."""
    start, end = assignment.start.isoformat(), assignment.end and assignment.end.isoformat()
    enqueue(
        w,
        kind=kind,
        payload={"assignment_id": assignment.id, "start": start, "end": end, "days": days},
        due_at=due,
        dedupe_key=f"{kind}:{assignment.id}:{start}:{end}:{days}",
        fresh=fresh,
    )


def fall_due(w: WriteContext, due: Sequence[tuple[str, Mapping[str, object]]]) -> None:
    """The ``assignment.*`` jobs, ``(kind, payload)`` each, many at once: publish each one's
    event if its assignment still has the start and end the job was scheduled for and was not
    ended early. One read of the assignments, one insert of the events. Idempotent per job.

    The assignments are read as columns, not entities: when a shift ends, ten thousand of
    them are read at once, and loading each into the session cost more than the rest of
    the job."""
    ids = sorted({str(payload["assignment_id"]) for _, payload in due})
    found: dict[str, tuple[AssignmentFacts, datetime | None]] = {}
    for first in range(0, len(ids), _IDS_PER_SELECT):
        chunk = ids[first : first + _IDS_PER_SELECT]
        rows = w.session.execute(select(*_COLUMNS).where(_ASSIGNMENTS.c.id.in_(chunk))).all()
        for id_, kind, p_type, p_id, t_type, t_id, scope, start, end, request, ended in rows:
            principal = PrincipalRef(PrincipalType(p_type), p_id)
            target = Target(TargetType(t_type), t_id, scope)
            facts = AssignmentFacts(
                id_, AssignmentKind(kind), principal, target, start, end, request
            )
            found[id_] = (facts, ended)
    events = [
        event
        for kind, payload in due
        if (event := _still_due(w, kind, payload, found.get(str(payload["assignment_id"]))))
    ]
    publish_many(w, events)


def _still_due(
    w: WriteContext,
    kind: str,
    payload: Mapping[str, object],
    found: tuple[AssignmentFacts, datetime | None] | None,
) -> AssignmentEvent | None:
    if found is None or found[1] is not None:
        return None
    facts = found[0]
    start, end = facts.start, facts.end
    if (start.isoformat(), end and end.isoformat()) != (payload["start"], payload["end"]):
        return None
    if kind == START_JOB:
        return AssignmentActivated(facts, start)
    if kind == REMIND_JOB:
        return AssignmentExpiringSoon(facts, w.at, int(str(payload["days"])))
    if kind == EXPIRE_JOB and end is not None:
        return AssignmentEnded(facts, end, EXPIRED)
    return None
