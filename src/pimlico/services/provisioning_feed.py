"""Changes that publish no event but change who holds a mapped target: followed from the
audit log's change feed.

Assignments publish ``AssignmentActivated`` / ``AssignmentEnded``, which provisioning consumes
(``services.provisioning.follow``). A static membership added or ended (a user put into a
group that is nested into a mapped one) or a user disabled publishes nothing, yet changes
what must be true downstream. The dispatcher reads the feed of audited changes to
memberships, users and service accounts since the revision it last saw, works out whose
holdings they may change (the member; for a group, every user inside it) and settles them
in one write — which is rolled back, taking no revision, when nothing changed.
"""

from __future__ import annotations

from sqlalchemy import select

from pimlico.db.audit import current_revision
from pimlico.db.tables import AuditEventRow, MembershipRow
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
