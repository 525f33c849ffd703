"""What must be true downstream: one ``provisioning`` row per (mapping, principal).

This module owns the *desired* side of provisioning, written inside Pimlico's own writes, and
the reads of provisioning states. It never calls a downstream system: that is the
dispatcher's (``jobs.provisioning``), which runs outside every write (see there for why).

``follow`` is the outbox consumer of ``AssignmentActivated`` and ``AssignmentEnded``: in the
delivery's write it works out whose effective holdings the assignment could change (its
principal, or every user inside it if it is a group: that covers nested groups, since a group
joining a group is itself an assignment or membership of the group below) and ``settle``\\ s
them. ``settle`` asks the decision index, as of the write, whether each principal holds each
mapping's target now — through any assignment, static membership or nested group — and
records that as ``present``: a row changes (and falls due at once, with a new generation) only
when that answer changes, so ending one of two assignments that back the same access changes
nothing. Absent principals without a row get none (nothing was granted).

Waking (``provisioning_wake``): a commit that changed rows wakes the dispatchers at once, so
that a revocation reaches the downstream system within milliseconds of its decision rather
than at the next poll.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import event as event_api
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from pimlico.db.audit import WriteContext
from pimlico.db.tables import (
    AssignmentRow,
    ConnectorMappingRow,
    ConnectorRow,
    ProvisioningRow,
)
from pimlico.domain import events
from pimlico.domain.catalogue import Perm
from pimlico.domain.decisions import Access
from pimlico.domain.model import PrincipalType, new_id
from pimlico.domain.scopes import ancestors
from pimlico.errors import PermissionDenied
from pimlico.services.decisions import authorize
from pimlico.services.lookups import get_row
from pimlico.services.provisioning_wake import wake_after_commit
from pimlico.services.runtime import Actor, Pimlico

PENDING, PROVISIONED, REVOKED, FAILED = "pending", "provisioned", "revoked", "failed"
CONSUMER = "provisioning"
"""The name the worker knows this module's consumer by."""

_MAPPINGS = "pimlico.provisioning.mappings"
_WAITING = "pimlico.provisioning.waiting"
_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class Mapped:
    """An open mapping of an enabled connector, as ``settle`` needs it."""

    id: str
    target_type: str
    object_id: str
    scope: str


@dataclass(frozen=True, slots=True)
class ProvisioningState:
    """How far one principal's access got in one connector's object."""

    connector: str
    mapping_id: str
    downstream_object: str
    principal_id: str
    present: bool
    status: str
    attempts: int
    identity: str | None
    last_error: str | None
    updated_at: datetime


# -- desired state ------------------------------------------------------------------------


def follow(rt: Pimlico, w: WriteContext, event: events.DomainEvent) -> None:
    """The outbox consumer: settle whoever an assignment's start or end may have changed.

    The principals are collected and settled together just before the delivery's write
    commits: a write that delivers a thousand events (a shift ending) reads their rows once
    and flushes once, where settling each on its own took most of the write's time. (A
    principal whose delivery was rolled back in a savepoint is settled all the same: settling
    writes what is true now, so an extra one changes nothing.)"""
    if not isinstance(event, events.AssignmentActivated | events.AssignmentEnded):
        return
    if not _open_mappings(w):
        return
    principal = event.assignment.principal
    if principal.type is PrincipalType.GROUP:
        index = rt.decisions.current()
        principals = index.holders("group_member", principal.id, "/", w.at)
    else:
        principals = {principal.id}
    waiting: set[str] | None = w.info.get(_WAITING)
    if waiting is None:
        waiting = w.info[_WAITING] = set()

        def settle_waiting(session: Session) -> None:
            settle(rt, w, principals=w.info.pop(_WAITING, ()), committing=True)

        event_api.listen(w.session, "before_commit", settle_waiting, once=True)
    waiting |= principals


def settle(
    rt: Pimlico,
    w: WriteContext,
    *,
    principals: Iterable[str] | None = None,
    mappings: Sequence[ConnectorMappingRow] | None = None,
    committing: bool = False,
) -> int:
    """Record, in ``w``, whether each principal must be present under each mapping now;
    how many rows changed. Default mappings: every open one of an enabled connector; default
    principals: those holding each mapping's target and those recorded present under it."""
    mapped = (
        _open_mappings(w)
        if mappings is None
        else [Mapped(m.id, m.target_type, m.object_id, m.scope) for m in mappings]
    )
    if not mapped:
        return 0
    index = rt.decisions.current()
    if principals is None:
        wanted = set()
        for m in mapped:
            wanted |= index.holders(m.target_type, m.object_id, m.scope, w.at)
        wanted |= set(
            w.session.scalars(
                select(ProvisioningRow.principal_id).where(
                    ProvisioningRow.mapping_id.in_([m.id for m in mapped]),
                    ProvisioningRow.present.is_(True),
                )
            )
        )
    else:
        wanted = set(principals)
    ids = sorted(wanted)
    mapping_ids = [m.id for m in mapped]
    rows: dict[tuple[str, str], tuple[str, bool, datetime | None]] = {}
    for start in range(0, len(ids), _CHUNK):
        query = select(
            ProvisioningRow.id,
            ProvisioningRow.mapping_id,
            ProvisioningRow.principal_id,
            ProvisioningRow.present,
            ProvisioningRow.recheck_at,
        ).where(
            ProvisioningRow.principal_id.in_(ids[start : start + _CHUNK]),
            ProvisioningRow.mapping_id.in_(mapping_ids),
        )
        for row_id, mapping_id, principal_id, present, recheck in w.session.execute(query):
            rows[(mapping_id, principal_id)] = (row_id, present, recheck)
    new: list[dict[str, object]] = []
    flipped: dict[tuple[bool, datetime | None], list[str]] = defaultdict(list)
    rechecked: dict[datetime | None, list[str]] = defaultdict(list)
    for pid in ids:
        access = index.effective_access(pid, w.at)
        for m in mapped:
            present, until = _held(access, m)
            known = rows.get((m.id, pid))
            if known is None:
                if present:
                    new.append(_new_row(w, m.id, pid, until))
            elif known[1] != present:
                flipped[(present, until)].append(known[0])
            elif present and known[2] != until:
                rechecked[until].append(known[0])
    # Set-based: one INSERT, and one UPDATE per kind of change and thousand rows (row by row,
    # the ORM's flush took most of the time of settling a shift's ten thousand ends).
    if new:
        w.session.execute(insert(ProvisioningRow), new)
    for (present, until), row_ids in flipped.items():
        _update(
            w,
            row_ids,
            present=present,
            recheck_at=until,
            status=PENDING,
            attempts=0,
            generation=ProvisioningRow.generation + 1,
            due_at=w.at,
            last_error=None,
        )
    for until, row_ids in rechecked.items():
        _update(w, row_ids, recheck_at=until)
    changed = len(new) + sum(len(v) for v in flipped.values())
    if changed:
        wake_after_commit(w.session, committing=committing)
    return changed


def _update(w: WriteContext, row_ids: list[str], **values: object) -> None:
    for start in range(0, len(row_ids), _CHUNK):
        w.session.execute(
            update(ProvisioningRow)
            .where(ProvisioningRow.id.in_(row_ids[start : start + _CHUNK]))
            .values(updated_at=w.at, **values)
            .execution_options(synchronize_session=False)
        )


def _new_row(
    w: WriteContext, mapping_id: str, principal_id: str, until: datetime | None
) -> dict[str, object]:
    return {
        "id": new_id(),
        "mapping_id": mapping_id,
        "principal_id": principal_id,
        "present": True,
        "status": PENDING,
        "generation": 1,
        "attempts": 0,
        "due_at": w.at,
        "recheck_at": until,
        "updated_at": w.at,
    }


def _held(access: Access, m: Mapped) -> tuple[bool, datetime | None]:
    """Does ``access`` hold ``m``'s target, and until when at the earliest (``None``: for
    good, or not held)? The earliest end of what backs it: re-settled then, a holding that
    goes on through something else is found again and re-dated."""
    if m.target_type == "role":
        covering = ancestors(m.scope)
        ends = [g.end for g in access.roles if g.role_id == m.object_id and g.scope in covering]
    else:
        relation = "member" if m.target_type == "group_member" else "owner"
        ends = [
            h.end for h in access.groups if h.group_id == m.object_id and h.relation == relation
        ]
    if not ends:
        return False, None
    dated = [end for end in ends if end is not None]
    return True, (min(dated) if dated else None)


def _open_mappings(w: WriteContext) -> list[Mapped]:
    """The open mappings of enabled connectors, read once per write."""
    cached: list[Mapped] | None = w.info.get(_MAPPINGS)
    if cached is None:
        query = (
            select(
                ConnectorMappingRow.id,
                ConnectorMappingRow.target_type,
                ConnectorMappingRow.object_id,
                ConnectorMappingRow.scope,
            )
            .join(ConnectorRow, ConnectorRow.id == ConnectorMappingRow.connector_id)
            .where(ConnectorMappingRow.ended_at.is_(None), ConnectorRow.enabled.is_(True))
        )
        cached = w.info[_MAPPINGS] = [Mapped(*r) for r in w.session.execute(query)]
    return cached


# -- reads --------------------------------------------------------------------------------


def _state(row: ProvisioningRow, obj: str, connector: str) -> ProvisioningState:
    return ProvisioningState(
        connector,
        row.mapping_id,
        obj,
        row.principal_id,
        row.present,
        row.status,
        row.attempts,
        row.identity,
        row.last_error,
        row.updated_at,
    )


def states(
    rt: Pimlico, *, actor: Actor, connector: str | None = None, status: str | None = None
) -> list[ProvisioningState]:
    """Every provisioning state (of one connector, in one status), failures first."""
    authorize(rt, actor, Perm.CONNECTORS_READ)
    query = (
        select(ProvisioningRow, ConnectorMappingRow.downstream_object, ConnectorRow.name)
        .join(ConnectorMappingRow, ConnectorMappingRow.id == ProvisioningRow.mapping_id)
        .join(ConnectorRow, ConnectorRow.id == ConnectorMappingRow.connector_id)
    )
    if connector is not None:
        query = query.where(ConnectorRow.name == connector)
    if status is not None:
        query = query.where(ProvisioningRow.status == status)
    with rt.reading() as s:
        found = [_state(r, obj, name) for r, obj, name in s.execute(query)]
    order = {FAILED: 0, PENDING: 1}
    return sorted(found, key=lambda st: (order.get(st.status, 2), st.connector, st.principal_id))


def states_of_assignment(
    rt: Pimlico, *, actor: Actor, assignment_id: str
) -> list[ProvisioningState]:
    """The provisioning states an assignment drives: per connector mapping its target, for
    its principal (or, for a group, each principal provisioned under it). Readers of
    assignments see any; a user or service account sees those of its own assignments."""
    try:
        authorize(rt, actor, Perm.ASSIGNMENTS_READ)
        own = False
    except PermissionDenied:
        own = True  # (refused below unless the assignment is the actor's own)
    with rt.reading() as s:
        if own:
            a = s.get(AssignmentRow, assignment_id)
            if a is None or actor.principal_id is None or a.principal_id != actor.principal_id:
                raise PermissionDenied(
                    "only the assignment's holder or a reader of assignments may read its "
                    "provisioning"
                )
        else:
            a = get_row(s, AssignmentRow, assignment_id, "assignment")
        query = (
            select(
                ProvisioningRow,
                ConnectorMappingRow.downstream_object,
                ConnectorRow.name,
                ConnectorMappingRow.scope,
            )
            .join(ConnectorMappingRow, ConnectorMappingRow.id == ProvisioningRow.mapping_id)
            .join(ConnectorRow, ConnectorRow.id == ConnectorMappingRow.connector_id)
            .where(
                ConnectorMappingRow.target_type == a.target_type,
                ConnectorMappingRow.object_id == a.target_id,
            )
        )
        # A role assignment drives the mappings of its role at scopes its scope covers.
        rows = [
            (r, obj, name)
            for r, obj, name, scope in s.execute(query)
            if a.target_type != "role" or a.scope in ancestors(scope)
        ]
    if a.principal_type == PrincipalType.GROUP.value:
        index = rt.decisions.current()
        members = index.holders("group_member", a.principal_id, "/", rt.clock.now())
    else:
        members = {a.principal_id}
    return [_state(r, obj, name) for r, obj, name in rows if r.principal_id in members]
