"""Directory reads the portal's administration pages need beside ``services.directory``: the
groups a principal belongs to, the names to show for ids, and a principal found by the name a
person typed.

Each read authorizes like the list it stands beside (``pim.groups.read`` for memberships and
groups, ``pim.users.read`` for users and service accounts; any of the directory reads for
names). Reads only: nothing here
writes, and whether the caller may *use* what was found is the business of the use case it
is passed to.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select

from pimlico.db import mappers
from pimlico.db.tables import GroupRow, MembershipRow, RoleRow, ServiceAccountRow, UserRow
from pimlico.domain.catalogue import Perm
from pimlico.domain.model import Membership, PrincipalRef, PrincipalType
from pimlico.errors import PermissionDenied
from pimlico.services import resolve
from pimlico.services.decisions import authorize
from pimlico.services.runtime import Actor, Pimlico


def _authorize_any(rt: Pimlico, actor: Actor, *permissions: str) -> None:
    refusal: PermissionDenied | None = None
    for permission in permissions:
        try:
            authorize(rt, actor, permission)
        except PermissionDenied as error:
            refusal = refusal or error
        else:
            return
    assert refusal is not None
    raise refusal


def memberships_of(rt: Pimlico, *, actor: Actor, principal: PrincipalRef) -> list[Membership]:
    """The principal's standing memberships and ownerships in force (of any group), oldest
    first. Needs ``pim.groups.read``."""
    authorize(rt, actor, Perm.GROUPS_READ)
    query = (
        select(MembershipRow)
        .where(
            MembershipRow.member_type == principal.type.value,
            MembershipRow.member_id == principal.id,
            MembershipRow.ended_at.is_(None),
        )
        .order_by(MembershipRow.created_at, MembershipRow.id)
    )
    with rt.reading() as s:
        return [mappers.membership(r) for r in s.scalars(query)]


def names_of(rt: Pimlico, *, actor: Actor, ids: Iterable[str]) -> dict[str, str]:
    """What people call each id that is a user (``Alex Analyst (alex)``), a group or a service
    account (their display names) or a role (its name). Unknown ids are left out. Needs
    ``pim.users.read``, ``pim.groups.read`` or ``pim.roles.read``."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    _authorize_any(rt, actor, Perm.USERS_READ, Perm.GROUPS_READ, Perm.ROLES_READ)
    found: dict[str, str] = {}
    with rt.reading() as s:
        for uid, user_name, display in s.execute(
            select(UserRow.id, UserRow.user_name, UserRow.display_name).where(
                UserRow.id.in_(wanted)
            )
        ):
            found[uid] = display if display == user_name else f"{display} ({user_name})"
        for table in (GroupRow, ServiceAccountRow):
            for pid, display in s.execute(
                select(table.id, table.display_name).where(table.id.in_(wanted))
            ):
                found[pid] = display
        for rid, name in s.execute(select(RoleRow.id, RoleRow.name).where(RoleRow.id.in_(wanted))):
            found[rid] = name
    return found


def principal_named(rt: Pimlico, *, actor: Actor, kind: PrincipalType, name: str) -> PrincipalRef:
    """The user, group or service account of that kind whose name (or id) is ``name``;
    ``NotFound`` otherwise. Needs ``pim.users.read`` for users and service accounts,
    ``pim.groups.read`` for groups."""
    if kind is PrincipalType.GROUP:
        authorize(rt, actor, Perm.GROUPS_READ)
        return PrincipalRef(kind, resolve.resolve_group(rt, name).id)
    authorize(rt, actor, Perm.USERS_READ)
    if kind is PrincipalType.USER:
        return PrincipalRef(kind, resolve.resolve_user(rt, name).id)
    return PrincipalRef(kind, resolve.resolve_service_account(rt, name).id)
