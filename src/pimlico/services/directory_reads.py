"""Directory reads beside ``services.directory``: one user, service account or group by id, and
the scopes in use.

Each read authorizes with the permission of the matching list (``pim.users.read``,
``pim.groups.read``; ``pim.assignments.read`` for scopes, since they say where assignments
are). Reads only: nothing here writes, and nothing here decides who may change what.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, or_, select

from pimlico.db import mappers
from pimlico.db.tables import AssignmentRow, GroupRow, ServiceAccountRow, UserRow
from pimlico.domain.catalogue import Perm
from pimlico.domain.model import Group, ServiceAccount, TargetType, User
from pimlico.domain.scopes import ROOT
from pimlico.services.decisions import authorize
from pimlico.services.lookups import get_row
from pimlico.services.runtime import Actor, Pimlico


def get_user(rt: Pimlico, *, actor: Actor, user_id: str) -> User:
    """A user; anyone may read their own record, others need ``pim.users.read``."""
    if actor.principal_id != user_id or not actor.may_use("pim.self"):
        authorize(rt, actor, Perm.USERS_READ)
    with rt.reading() as s:
        return mappers.user(get_row(s, UserRow, user_id, "user"))


def get_service_account(rt: Pimlico, *, actor: Actor, account_id: str) -> ServiceAccount:
    authorize(rt, actor, Perm.USERS_READ)
    with rt.reading() as s:
        return mappers.service_account(get_row(s, ServiceAccountRow, account_id, "service account"))


def get_group(rt: Pimlico, *, actor: Actor, group_id: str) -> Group:
    authorize(rt, actor, Perm.GROUPS_READ)
    with rt.reading() as s:
        return mappers.group(get_row(s, GroupRow, group_id, "group"))


@dataclass(frozen=True, slots=True)
class ScopeInUse:
    """A scope and how many current or future role assignments are made at it."""

    scope: str
    assignments: int


def scopes_in_use(rt: Pimlico, *, actor: Actor) -> list[ScopeInUse]:
    """The scopes of role assignments in force now or scheduled, with ``/`` always among them
    (it exists whether or not anything is assigned there)."""
    authorize(rt, actor, Perm.ASSIGNMENTS_READ)
    now = rt.clock.now()
    query = (
        select(AssignmentRow.scope, func.count())
        .where(
            AssignmentRow.target_type == TargetType.ROLE.value,
            AssignmentRow.ended_at.is_(None),
            or_(AssignmentRow.end_at.is_(None), AssignmentRow.end_at > now),
        )
        .group_by(AssignmentRow.scope)
    )
    with rt.reading() as s:
        counts: dict[str, int] = {scope: count for scope, count in s.execute(query)}
    counts.setdefault(ROOT, 0)
    return [ScopeInUse(scope, counts[scope]) for scope in sorted(counts)]
