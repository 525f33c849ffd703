"""What notification templates show, read from the store once per write: names, target
labels, request facts, and the notification rules of a target.

A delivery write runs the consumer for up to ``group`` events of a burst (ten thousand
assignments ending in the same second share their role, its settings and its label), so each
fact is read once per write and kept in ``WriteContext.info`` (``Facts.of``), with statements
built once. It only reads; facts are what the store said when the write read them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, union_all
from sqlalchemy.orm import Session

from pimlico.db.audit import WriteContext
from pimlico.db.tables import GroupRow, RequestRow, RoleRow, ServiceAccountRow, UserRow
from pimlico.domain import requests as rq
from pimlico.domain.events import AssignmentFacts
from pimlico.domain.model import Target, TargetType
from pimlico.domain.policy import NotificationRules
from pimlico.services.role_settings import load_policy

_KEY = "pimlico.notify.facts"
_NAME = union_all(
    *(
        select(t.display_name).where(t.id == bindparam("id"))
        for t in (UserRow, GroupRow, ServiceAccountRow)
    )
)
_ROLE_NAME = select(RoleRow.name).where(RoleRow.id == bindparam("id"))
_ACTION = select(RequestRow.action).where(RequestRow.id == bindparam("id"))


class Facts:
    """The facts of one write, each read once."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._names: dict[str, str] = {}
        self._labels: dict[Target, str] = {}
        self._actions: dict[str, rq.RequestAction | None] = {}
        self._rules: dict[tuple[TargetType, str], NotificationRules] = {}

    @classmethod
    def of(cls, w: WriteContext) -> Facts:
        facts: Facts | None = w.info.get(_KEY)
        if facts is None:
            facts = w.info[_KEY] = cls(w.session)
        return facts

    def name(self, principal_id: str) -> str:
        """A principal's display name; its id if it is gone."""
        name = self._names.get(principal_id)
        if name is None:
            found = self.session.scalars(_NAME, {"id": principal_id}).first()
            name = self._names[principal_id] = principal_id if found is None else str(found)
        return name

    def target(self, target: Target) -> str:
        """``Security Reader at /``, ``membership of Search and Purge PIM``."""
        label = self._labels.get(target)
        if label is None:
            if target.type is TargetType.ROLE:
                name = self.session.scalar(_ROLE_NAME, {"id": target.object_id})
                label = f"{name or target.object_id} at {target.scope}"
            else:
                what = "membership" if target.type is TargetType.GROUP_MEMBER else "ownership"
                label = f"{what} of {self.name(target.object_id)}"
            self._labels[target] = label
        return label

    def action(self, request_id: str | None) -> rq.RequestAction | None:
        """The action of the request that made an assignment, if any."""
        if request_id is None:
            return None
        if request_id not in self._actions:
            action = self.session.scalar(_ACTION, {"id": request_id})
            self._actions[request_id] = None if action is None else rq.RequestAction(action)
        return self._actions[request_id]

    def rules(self, target: Target) -> NotificationRules:
        key = (target.type, target.object_id)
        rules = self._rules.get(key)
        if rules is None:
            policy = load_policy(self.session, target.type, target.object_id)
            rules = self._rules[key] = policy.settings.notifications
        return rules

    def request(self, request: rq.Request) -> dict[str, Any]:
        ticket = request.ticket
        return {
            "id": request.id,
            "action": request.action.value,
            "kind": request.kind.value,
            "status": request.status.value,
            "requester": self.name(request.requested_by),
            "principal": self.name(request.principal.id),
            "target": self.target(request.target),
            "justification": request.justification,
            "ticket": None
            if ticket is None
            else {"system": ticket.system, "number": ticket.number},
            "requested_at": instant(request.requested_at),
            "start": instant(request.schedule.start),
            "end": instant(request.schedule.end),
        }

    def assignment(self, facts: AssignmentFacts) -> dict[str, Any]:
        return {
            "id": facts.assignment_id,
            "kind": facts.kind.value,
            "principal": self.name(facts.principal.id),
            "principal_type": facts.principal.type.value,
            "target": self.target(facts.target),
            "start": instant(facts.start),
            "end": instant(facts.end),
        }


def instant(at: datetime | None) -> str | None:
    return None if at is None else at.strftime("%Y-%m-%d %H:%M UTC")
