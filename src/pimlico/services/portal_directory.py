"""Directory reads the portal's administration pages need beside ``services.directory``: the
groups a principal belongs to, the names to show for ids, and a principal found by the name a
person typed.

Each read authorizes like the list it stands beside (``pim.groups.read`` for memberships and
groups, ``pim.users.read`` for users and service accounts, ``pim.roles.read`` for roles; names
per kind). Reads only: nothing here writes, and whether the caller may *use* what was found
is the business of the use case it is passed to.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select

from pimlico.db import mappers
from pimlico.db.tables import GroupRow, MembershipRow, RoleRow, ServiceAccountRow, UserRow
from pimlico.domain.catalogue import Perm
from pimlico.domain.model import Membership, PrincipalRef, PrincipalType
from pimlico.services import resolve
from pimlico.services.decisions import allows, authorize
from pimlico.services.runtime import Actor, Pimlico


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
    account (their display names) or a role (its name), for the kinds the caller may read:
    users and service accounts with ``pim.users.read``, groups with ``pim.groups.read``, roles
    with ``pim.roles.read``; the caller's own name always. Other ids are left out, unknown
    ones too."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    people = allows(rt, actor, Perm.USERS_READ)
    found: dict[str, str] = {}
    with rt.reading() as s:
        users = wanted if people else [i for i in wanted if i == actor.principal_id]
        if users:
            for uid, user_name, display in s.execute(
                select(UserRow.id, UserRow.user_name, UserRow.display_name).where(
                    UserRow.id.in_(users)
                )
            ):
                found[uid] = display if display == user_name else f"{display} ({user_name})"
        readable: list[tuple[type[GroupRow] | type[ServiceAccountRow], bool]] = [
            (GroupRow, allows(rt, actor, Perm.GROUPS_READ)),
            (ServiceAccountRow, people),
        ]
        for table, may in readable:
            if may:
                for pid, display in s.execute(
                    select(table.id, table.display_name).where(table.id.in_(wanted))
                ):
                    found[pid] = display
        if allows(rt, actor, Perm.ROLES_READ):
            for rid, name in s.execute(
                select(RoleRow.id, RoleRow.name).where(RoleRow.id.in_(wanted))
            ):
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


def principal_typed(rt: Pimlico, *, actor: Actor, text: str) -> PrincipalRef:
    """The principal a person typed as ``services.resolve.resolve_principal`` reads it
    (``alex``, ``user:alex``, ``group:NAME``, ``sa:NAME`` or an id), found only with the read
    permission of its kind: ``pim.users.read`` for users and service accounts (a bare name or
    id too), ``pim.groups.read`` for groups. Whether a name exists is never told to a caller
    who may not read that kind."""
    head, sep, _ = text.strip().partition(":")
    kind = resolve.PRINCIPAL_PREFIXES.get(head.strip().lower()) if sep else None
    authorize(rt, actor, Perm.GROUPS_READ if kind is PrincipalType.GROUP else Perm.USERS_READ)
    found = resolve.resolve_principal(rt, text)
    if found.type is PrincipalType.GROUP:
        authorize(rt, actor, Perm.GROUPS_READ)  # a group's id typed bare
    return found
