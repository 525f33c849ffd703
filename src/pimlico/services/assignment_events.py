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
from pimlico.jobs.events import publish, publish_all
from pimlico.jobs.outbox import as_stored, enqueue, instants, one_of

START_JOB, REMIND_JOB, EXPIRE_JOB = "assignment.start", "assignment.remind", "assignment.expire"
REMINDERS = (14, 1)
"""Days before the end at which ``AssignmentExpiringSoon`` is published."""
_IDS_PER_SELECT = 1000
_ASSIGNMENTS = Base.metadata.tables[AssignmentRow.__tablename__]
_COLUMNS = [
    *(
        _ASSIGNMENTS.c[name]
        for name in ("id", "kind", "principal_type", "principal_id", "target_type", "target_id")
    ),
    _ASSIGNMENTS.c.scope,
    as_stored(_ASSIGNMENTS.c.start_at),
    as_stored(_ASSIGNMENTS.c.end_at),
    _ASSIGNMENTS.c.request_id,
    _ASSIGNMENTS.c.ended_at.is_(None).label("in_force"),
]
"""An assignment's columns (its instants as stored, decoded once per value: a shift's
assignments share theirs), and whether it was not ended early (a flag in the select: in its
``WHERE``, SQLite's planner scanned every assignment in force rather than look up the ids)."""


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
    the job (for the same reason their enumerations are looked up in dictionaries, not
    called: ``AssignmentKind(kind)`` costs twenty times more)."""
    parsed: dict[str, datetime] = {}  # a shift's jobs share their start and end

    def instant(written: object) -> datetime | None:
        if written is None:
            return None
        at = parsed.get(text := str(written))
        if at is None:
            at = parsed[text] = datetime.fromisoformat(text)
        return at

    wanted = [
        (kind, payload, str(payload["assignment_id"]), instant(payload["start"]))
        for kind, payload in due
    ]
    found = _read_assignments(w, sorted({job[2] for job in wanted}))
    publish_all(  # made as they are published: on PostgreSQL, while the first are stored
        w,
        (
            event
            for kind, payload, id_, start in wanted
            if (
                event := _still_due(
                    w, kind, payload, start, instant(payload["end"]), found.get(id_)
                )
            )
        ),
    )


def _read_assignments(w: WriteContext, ids: list[str]) -> dict[str, AssignmentFacts]:
    """The facts of the assignments of ``ids`` that were not ended early, by id."""
    dialect = w.session.get_bind().dialect
    read, at = _READS[dialect.name], instants(dialect)
    targets: dict[tuple[str, str, str], Target] = {}  # a shift's assignments share theirs
    found: dict[str, AssignmentFacts] = {}
    for first in range(0, len(ids), _IDS_PER_SELECT):
        rows = w.session.execute(read, {"ids": ids[first : first + _IDS_PER_SELECT]}).all()
        for id_, kind, p_type, p_id, t_type, t_id, scope, start, end, request, in_force in rows:
            if not in_force:
                continue
            target = targets.get((t_type, t_id, scope))
            if target is None:
                target = targets[t_type, t_id, scope] = Target(_TARGET_TYPES[t_type], t_id, scope)
            principal = PrincipalRef(_PRINCIPAL_TYPES[p_type], p_id)
            start_at = at(start)
            assert start_at is not None  # (an assignment always has its start)
            facts = AssignmentFacts(
                id_, _KINDS[kind], principal, target, start_at, at(end), request
            )
            found[id_] = facts
    return found


_KINDS = {kind.value: kind for kind in AssignmentKind}
_PRINCIPAL_TYPES = {type_.value: type_ for type_ in PrincipalType}
_TARGET_TYPES = {type_.value: type_ for type_ in TargetType}
_READS = {
    dialect: select(*_COLUMNS).where(one_of(_ASSIGNMENTS.c.id, "ids", dialect=dialect))
    for dialect in ("postgresql", "sqlite")
}


def _still_due(
    w: WriteContext,
    kind: str,
    payload: Mapping[str, object],
    start: datetime | None,
    end: datetime | None,
    facts: AssignmentFacts | None,
) -> AssignmentEvent | None:
    """The event of the job ``kind`` scheduled for an assignment that ran from ``start`` to
    ``end``, if it still does (``facts``: ``None`` if it was ended early)."""
    if facts is None or (facts.start, facts.end) != (start, end):
        return None
    if kind == START_JOB:
        return AssignmentActivated(facts, facts.start)
    if kind == REMIND_JOB:
        return AssignmentExpiringSoon(facts, w.at, int(str(payload["days"])))
    if kind == EXPIRE_JOB and facts.end is not None:
        return AssignmentEnded(facts, facts.end, EXPIRED)
    return None
