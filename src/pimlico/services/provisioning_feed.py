"""What the dispatcher settles itself: changes that publish no event, and ends that come.

Static changes are followed from the audit log's change feed (``follow_feed``); ends are
re-checked when they come (``recheck_due``), below.

Assignments publish ``AssignmentActivated`` / ``AssignmentEnded``, which provisioning consumes
(``services.provisioning.follow``). A static membership added or ended (a user put into a
group that is nested into a mapped one) or a user disabled publishes nothing, yet changes
what must be true downstream. The dispatcher reads the feed of audited changes to
memberships, users and service accounts since the revision it last saw, works out whose
holdings they may change (the member; for a group, every user inside it) and settles them
in one write — which is rolled back, taking no revision, when nothing changed.

Ends: a present row carries ``recheck_at``, the earliest end of what backs it. When it comes,
the dispatcher settles its principal again: an access that ended is revoked at its end
instant without waiting for ``AssignmentEnded`` to travel through the outbox (a fan-out and a
delivery per event: with ten thousand ends in one second, most of the lag). The event, when
it is delivered, finds nothing left to change.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from pimlico.db.audit import current_revision
from pimlico.db.tables import (
    AuditEventRow,
    ConnectorMappingRow,
    ConnectorRow,
    MembershipRow,
    ProvisioningRow,
)
from pimlico.domain.model import PrincipalType
from pimlico.services.provisioning import settle
from pimlico.services.runtime import Actor, Pimlico

FOLLOWED = ("membership", "user", "service_account")


class _Unchanged(Exception):
    """Raised inside the write to roll it back when settling changed nothing."""


def head(rt: Pimlico) -> int:
    with rt.reading() as s:
        return current_revision(s)


def follow_feed(rt: Pimlico, *, since: int, actor: Actor) -> int:
    """Settle the principals that changes after revision ``since`` may have affected; the
    revision followed up to."""
    with rt.reading() as s:
        top = current_revision(s)
        if top <= since:
            return since
        changed = s.execute(
            select(AuditEventRow.target_type, AuditEventRow.target_id).where(
                AuditEventRow.revision > since,
                AuditEventRow.revision <= top,
                AuditEventRow.target_type.in_(FOLLOWED),
            )
        ).all()
        memberships = [i for t, i in changed if t == "membership"]
        members = (
            s.execute(
                select(MembershipRow.member_type, MembershipRow.member_id).where(
                    MembershipRow.id.in_(memberships)
                )
            ).all()
            if memberships
            else []
        )
    principals = {i for t, i in changed if t != "membership"}
    groups = {m for kind, m in members if kind == PrincipalType.GROUP.value}
    principals |= {m for kind, m in members if kind != PrincipalType.GROUP.value}
    if groups:
        index = rt.decisions.current()
        now = rt.clock.now()
        for group_id in groups:
            principals |= index.holders("group_member", group_id, "/", now)
    if principals:
        try:
            with rt.writing(actor) as w:
                if not settle(rt, w, principals=principals):
                    raise _Unchanged
        except _Unchanged:
            pass
    return top


def recheck_due(rt: Pimlico, *, now: datetime, actor: Actor, batch: int) -> int:
    """Settle again, in one write, the principals of present rows whose ``recheck_at`` has
    come (what backed them ended): revoked at the end instant without waiting for the end's
    event to travel through the outbox. How many principals."""
    with rt.reading() as s:
        due = list(
            s.scalars(
                select(ProvisioningRow.principal_id)
                .join(ConnectorMappingRow, ConnectorMappingRow.id == ProvisioningRow.mapping_id)
                .join(ConnectorRow, ConnectorRow.id == ConnectorMappingRow.connector_id)
                .where(
                    ProvisioningRow.present.is_(True),
                    ProvisioningRow.recheck_at <= now,
                    ConnectorMappingRow.ended_at.is_(None),
                    ConnectorRow.enabled.is_(True),
                )
                .distinct()
                .limit(batch)
            )
        )
    if due:
        with rt.writing(actor) as w:
            settle(rt, w, principals=due)
    return len(due)


def next_recheck(rt: Pimlico) -> datetime | None:
    """The earliest ``recheck_at`` of a present row of an open mapping of an enabled
    connector."""
    with rt.reading() as s:
        found: datetime | None = s.scalar(
            select(func.min(ProvisioningRow.recheck_at))
            .join(ConnectorMappingRow, ConnectorMappingRow.id == ProvisioningRow.mapping_id)
            .join(ConnectorRow, ConnectorRow.id == ConnectorMappingRow.connector_id)
            .where(
                ProvisioningRow.present.is_(True),
                ConnectorMappingRow.ended_at.is_(None),
                ConnectorRow.enabled.is_(True),
            )
        )
    return found
