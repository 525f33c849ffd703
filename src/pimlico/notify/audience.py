"""Who a notification reaches: approvers, administrators, assignees — as people with addresses.

Groups are expanded when the message is recorded (inside the delivery write), from the
decision index as it is then: a group approver or a group assignee means the users who are
its members at that instant, nesting and PIM memberships in force included (the index's
``holders``). Administrators are the users holding Privileged Role Administrator or Global
Administrator at ``/`` at that instant. A stage without approvers means the users who may
approve requests at the target's scope (``pim.requests.approve``), as approvals decide it.

Users that are disabled, unknown or without an email address are left out (logged), never
an error. It must not render or send anything.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from pimlico.db.tables import RoleRow, UserRow
from pimlico.domain.catalogue import GLOBAL_ADMINISTRATOR, PRIVILEGED_ROLE_ADMINISTRATOR, Perm
from pimlico.domain.decisions import permission_matches
from pimlico.domain.model import PrincipalRef, PrincipalType, Target, TargetType
from pimlico.domain.policy import ApproverRef, ApproverType
from pimlico.services.runtime import Pimlico

log = logging.getLogger(__name__)

ADMIN_ROLES = (GLOBAL_ADMINISTRATOR.id, PRIVILEGED_ROLE_ADMINISTRATOR.id)
_PEOPLE = select(UserRow.id, UserRow.display_name, UserRow.email, UserRow.enabled).where(
    UserRow.id.in_(bindparam("ids", expanding=True))
)


@dataclass(frozen=True, slots=True)
class Person:
    """A user a message can be addressed to."""

    id: str
    name: str
    email: str


def administrators(rt: Pimlico, at: datetime) -> set[str]:
    """The users and service accounts holding an administrator role at ``/`` at ``at``."""
    index = rt.decisions.current()
    found: set[str] = set()
    for role_id in ADMIN_ROLES:
        found |= index.holders(TargetType.ROLE.value, role_id, "/", at)
    return found


def approvers(
    rt: Pimlico, s: Session, refs: Iterable[ApproverRef], target: Target, at: datetime
) -> set[str]:
    """The users named by ``refs`` (groups expanded); none named: who may approve requests
    at the target's scope."""
    refs = list(refs)
    if not refs:
        return _may_approve(rt, s, target.scope, at)
    index = rt.decisions.current()
    found: set[str] = set()
    for ref in refs:
        if ref.type is ApproverType.USER:
            found.add(ref.id)
        else:
            found |= index.holders(TargetType.GROUP_MEMBER.value, ref.id, "/", at)
    return found


def members(rt: Pimlico, principal: PrincipalRef, at: datetime) -> set[str]:
    """The principal itself, or for a group its members at ``at``."""
    if principal.type is not PrincipalType.GROUP:
        return {principal.id}
    index = rt.decisions.current()
    return index.holders(TargetType.GROUP_MEMBER.value, principal.id, "/", at)


def people(s: Session, ids: Iterable[str], *, why: str) -> list[Person]:
    """The enabled users among ``ids`` that have an email address, by name."""
    wanted = sorted(set(ids))
    if not wanted:
        return []
    rows = s.execute(_PEOPLE, {"ids": wanted}).all()
    found: list[Person] = []
    for user_id, name, email, enabled in rows:
        if not enabled:
            continue
        if not email:
            log.info("user %s gets no %s notification: no email address", user_id, why)
            continue
        found.append(Person(user_id, name, email))
    return sorted(found, key=lambda p: (p.name, p.id))


def _may_approve(rt: Pimlico, s: Session, scope: str, at: datetime) -> set[str]:
    index = rt.decisions.current()
    roles = s.execute(select(RoleRow.id, RoleRow.permissions)).all()
    found: set[str] = set()
    for role_id, patterns in roles:
        if any(permission_matches(p, Perm.REQUESTS_APPROVE) for p in patterns):
            found |= index.holders(TargetType.ROLE.value, role_id, scope, at)
    return {p for p in found if index.decide(p, Perm.REQUESTS_APPROVE, scope, at).allowed}
