"""Directory use cases: users, service accounts, groups and static memberships.

Groups' ``role_assignable`` is chosen at creation and never changes; creating one (or changing
its members) takes ``pim.role_assignable_groups.write``. Memberships end, never vanish.
"""

from __future__ import annotations

from sqlalchemy import func, select

from pimlico.db import mappers
from pimlico.db.audit import WriteContext
from pimlico.db.tables import GroupRow, MembershipRow, ServiceAccountRow, UserRow
from pimlico.domain.catalogue import BUILT_IN_ROLE_IDS, Perm
from pimlico.domain.model import (
    Group,
    Membership,
    PrincipalRef,
    PrincipalType,
    Relation,
    ServiceAccount,
    User,
    new_id,
)
from pimlico.errors import AlreadyExists, FieldError, InvalidInput, NotFound
from pimlico.services.decisions import authorize
from pimlico.services.guards import keeping_a_global_administrator
from pimlico.services.lookups import check_email, check_name, check_text, get_row, principal_row
from pimlico.services.nesting import check_nesting, check_role_assignable_nesting
from pimlico.services.runtime import Actor, Pimlico, Written, record_change

# -- users ----------------------------------------------------------------------------------


def create_user(
    rt: Pimlico,
    *,
    actor: Actor,
    user_name: str,
    display_name: str | None = None,
    email: str | None = None,
    manager_id: str | None = None,
) -> Written[User]:
    user_name = check_name(user_name, "user_name")
    display = check_name(display_name or user_name, "display_name")
    email = check_email(email)
    with rt.writing(actor) as w:
        authorize(rt, actor, Perm.USERS_WRITE)
        user = add_user(
            w, user_name=user_name, display_name=display, email=email, manager_id=manager_id
        )
    return Written(user, w.revision)


def add_user(
    w: WriteContext, *, user_name: str, display_name: str, email: str | None, manager_id: str | None
) -> User:
    """``create_user`` inside the write ``w``, its inputs checked and its caller authorized."""
    s = w.session
    if s.scalars(select(UserRow.id).where(UserRow.user_name_key == user_name.lower())).first():
        raise AlreadyExists(f"user name {user_name!r} is taken")
    if manager_id is not None:
        get_row(s, UserRow, manager_id, "manager")
    row = UserRow(
        id=new_id(),
        user_name=user_name,
        user_name_key=user_name.lower(),
        display_name=display_name,
        email=email,
        enabled=True,
        manager_id=manager_id,
        created_at=w.at,
        updated_at=w.at,
    )
    s.add(row)
    s.flush()
    user = mappers.user(row)
    record_change(w, "user.create", user)
    return user


def update_user(
    rt: Pimlico,
    *,
    actor: Actor,
    user_id: str,
    display_name: str | None = None,
    email: str | None = None,
    manager_id: str | None = None,
) -> Written[User]:
    """Change what is given (``None`` leaves a field as it is)."""
    with rt.writing(actor) as w:
        authorize(rt, actor, Perm.USERS_WRITE)
        row = get_row(w.session, UserRow, user_id, "user", lock=True)
        before = mappers.user(row)
        if display_name is not None:
            row.display_name = check_name(display_name, "display_name")
        if email is not None:
            row.email = check_email(email)
        if manager_id is not None:
            if manager_id == user_id:
                raise InvalidInput(
                    "invalid manager",
                    [FieldError("manager_id", "NotSelf", "a user cannot be their own manager")],
                )
            get_row(w.session, UserRow, manager_id, "manager")
            row.manager_id = manager_id
        row.updated_at = w.at
        user = mappers.user(row)
        record_change(w, "user.update", user, before=before)
    return Written(user, w.revision)


def set_user_enabled(
    rt: Pimlico, *, actor: Actor, user_id: str, enabled: bool, reason: str | None = None
) -> Written[User]:
    """Disable or re-enable a user. A disabled user holds nothing, whatever they are assigned."""
    reason = check_text(reason, "reason")
    with rt.writing(actor) as w:
        authorize(rt, actor, Perm.USERS_WRITE)
        row = get_row(w.session, UserRow, user_id, "user", lock=True)
        if _holds_admin_roles(rt, user_id):
            # Disabling an administrator is a privileged act, not a user-management one.
            authorize(rt, actor, Perm.ROLE_ASSIGNMENTS_WRITE)
        before = mappers.user(row)
        with keeping_a_global_administrator(
            w.session, now=w.at, max_depth=rt.settings.max_nesting_depth
        ):
            row.enabled = enabled
        row.updated_at = w.at
        user = mappers.user(row)
        record_change(
            w, "user.enable" if enabled else "user.disable", user, before=before, reason=reason
        )
    return Written(user, w.revision)


def list_users(rt: Pimlico, *, actor: Actor) -> list[User]:
    authorize(rt, actor, Perm.USERS_READ)
    with rt.reading() as s:
        return [mappers.user(r) for r in s.scalars(select(UserRow).order_by(UserRow.user_name_key))]


def _holds_admin_roles(rt: Pimlico, user_id: str) -> bool:
    """Does the user hold, or may they activate, one of Pimlico's own admin roles?"""
    access = rt.decisions.current().effective_access(user_id, rt.clock.now())
    held = {g.role_id for g in access.roles}
    held.update(e.target_id for e in access.eligible if e.target_type == "role")
    return bool(held & BUILT_IN_ROLE_IDS)


# -- service accounts -----------------------------------------------------------------------


def create_service_account(
    rt: Pimlico, *, actor: Actor, name: str, display_name: str | None = None, description: str = ""
) -> Written[ServiceAccount]:
    name = check_name(name, "name")
    display = check_name(display_name or name, "display_name")
    description = check_text(description, "description") or ""
    with rt.writing(actor) as w:
        authorize(rt, actor, Perm.USERS_WRITE)
        s = w.session
        taken = s.scalars(
            select(ServiceAccountRow.id).where(func.lower(ServiceAccountRow.name) == name.lower())
        ).first()
        if taken:
            raise AlreadyExists(f"service account name {name!r} is taken")
        row = ServiceAccountRow(
            id=new_id(),
            name=name,
            display_name=display,
            description=description,
            enabled=True,
            created_at=w.at,
            updated_at=w.at,
        )
        s.add(row)
        s.flush()
        account = mappers.service_account(row)
        record_change(w, "service_account.create", account)
    return Written(account, w.revision)


def set_service_account_enabled(
    rt: Pimlico, *, actor: Actor, account_id: str, enabled: bool, reason: str | None = None
) -> Written[ServiceAccount]:
    reason = check_text(reason, "reason")
    with rt.writing(actor) as w:
        authorize(rt, actor, Perm.USERS_WRITE)
        row = get_row(w.session, ServiceAccountRow, account_id, "service account", lock=True)
        before = mappers.service_account(row)
        row.enabled = enabled
        row.updated_at = w.at
        account = mappers.service_account(row)
        record_change(
            w,
            "service_account.enable" if enabled else "service_account.disable",
            account,
            before=before,
            reason=reason,
        )
    return Written(account, w.revision)


def list_service_accounts(rt: Pimlico, *, actor: Actor) -> list[ServiceAccount]:
    authorize(rt, actor, Perm.USERS_READ)
    with rt.reading() as s:
        rows = s.scalars(select(ServiceAccountRow).order_by(ServiceAccountRow.name))
        return [mappers.service_account(r) for r in rows]


# -- groups ---------------------------------------------------------------------------------


def group_write_permission(role_assignable: bool) -> str:
    return Perm.ROLE_ASSIGNABLE_GROUPS_WRITE if role_assignable else Perm.GROUPS_WRITE


def create_group(
    rt: Pimlico,
    *,
    actor: Actor,
    name: str,
    display_name: str | None = None,
    description: str = "",
    role_assignable: bool = False,
    pim_enabled: bool = False,
) -> Written[Group]:
    """Create a group. ``role_assignable`` can be chosen now and never again."""
    name = check_name(name, "name")
    display = check_name(display_name or name, "display_name")
    description = check_text(description, "description") or ""
    with rt.writing(actor) as w:
        authorize(rt, actor, group_write_permission(role_assignable))
        s = w.session
        if s.scalars(select(GroupRow.id).where(func.lower(GroupRow.name) == name.lower())).first():
            raise AlreadyExists(f"group name {name!r} is taken")
        row = GroupRow(
            id=new_id(),
            name=name,
            display_name=display,
            description=description,
            role_assignable=role_assignable,
            pim_enabled=pim_enabled,
            created_at=w.at,
            updated_at=w.at,
        )
        s.add(row)
        s.flush()
        group = mappers.group(row)
        record_change(w, "group.create", group)
    return Written(group, w.revision)


def update_group(
    rt: Pimlico,
    *,
    actor: Actor,
    group_id: str,
    display_name: str | None = None,
    description: str | None = None,
    pim_enabled: bool | None = None,
) -> Written[Group]:
    """Change a group's names or PIM switch. (There is deliberately no ``role_assignable``.)"""
    with rt.writing(actor) as w:
        row = get_row(w.session, GroupRow, group_id, "group", lock=True)
        authorize(rt, actor, group_write_permission(row.role_assignable))
        before = mappers.group(row)
        if display_name is not None:
            row.display_name = check_name(display_name, "display_name")
        if description is not None:
            row.description = check_text(description, "description") or ""
        if pim_enabled is not None:
            row.pim_enabled = pim_enabled
        row.updated_at = w.at
        group = mappers.group(row)
        record_change(w, "group.update", group, before=before)
    return Written(group, w.revision)


def list_groups(rt: Pimlico, *, actor: Actor) -> list[Group]:
    authorize(rt, actor, Perm.GROUPS_READ)
    with rt.reading() as s:
        return [mappers.group(r) for r in s.scalars(select(GroupRow).order_by(GroupRow.name))]


# -- static memberships ---------------------------------------------------------------------


def add_member(
    rt: Pimlico,
    *,
    actor: Actor,
    group_id: str,
    member: PrincipalRef,
    relation: Relation = Relation.MEMBER,
    reason: str | None = None,
) -> Written[Membership]:
    """Make ``member`` a standing member (or owner) of a group, from now until removed."""
    reason = check_text(reason, "reason")
    with rt.writing(actor) as w:
        s = w.session
        group = get_row(s, GroupRow, group_id, "group", lock=True)
        authorize(rt, actor, group_write_permission(group.role_assignable))
        principal_row(s, member)
        if (
            group.role_assignable
            and relation is Relation.MEMBER
            and member.type is PrincipalType.SERVICE_ACCOUNT
        ):
            raise InvalidInput(
                "no standing membership for a service account in a role-assignable group",
                [
                    FieldError(
                        "member",
                        "ServiceAccountActiveOnly",
                        "give the service account an active, time-bound membership assignment",
                    )
                ],
            )
        if relation is Relation.OWNER and member.type is PrincipalType.GROUP:
            raise InvalidInput(
                "invalid owner",
                [FieldError("member", "OwnerType", "owners are users or service accounts")],
            )
        open_same = s.scalars(
            select(MembershipRow.id).where(
                MembershipRow.group_id == group_id,
                MembershipRow.member_type == member.type.value,
                MembershipRow.member_id == member.id,
                MembershipRow.relation == relation.value,
                MembershipRow.ended_at.is_(None),
            )
        ).first()
        if open_same:
            raise AlreadyExists(f"{member} is already {relation.value} of group {group_id}")
        if member.type is PrincipalType.GROUP:
            check_role_assignable_nesting(group, get_row(s, GroupRow, member.id, "group"))
            check_nesting(
                s,
                child=member.id,
                parent=group_id,
                now=w.at,
                max_depth=rt.settings.max_nesting_depth,
            )
        row = MembershipRow(
            id=new_id(),
            group_id=group_id,
            member_type=member.type.value,
            member_id=member.id,
            relation=relation.value,
            created_at=w.at,
            created_by=actor.name,
        )
        s.add(row)
        s.flush()
        membership = mappers.membership(row)
        record_change(w, f"membership.add.{relation.value}", membership, reason=reason)
    return Written(membership, w.revision)


def remove_member(
    rt: Pimlico,
    *,
    actor: Actor,
    group_id: str,
    member: PrincipalRef,
    relation: Relation = Relation.MEMBER,
    reason: str | None = None,
) -> Written[Membership]:
    """End a standing membership now. The row stays, with who ended it, when and why."""
    reason = check_text(reason, "reason")
    with rt.writing(actor) as w:
        s = w.session
        group = get_row(s, GroupRow, group_id, "group")
        authorize(rt, actor, group_write_permission(group.role_assignable))
        row = s.scalars(
            select(MembershipRow)
            .where(
                MembershipRow.group_id == group_id,
                MembershipRow.member_type == member.type.value,
                MembershipRow.member_id == member.id,
                MembershipRow.relation == relation.value,
                MembershipRow.ended_at.is_(None),
            )
            .with_for_update()
        ).first()
        if row is None:
            raise NotFound(f"{member} is not {relation.value} of group {group_id}")
        before = mappers.membership(row)
        with keeping_a_global_administrator(s, now=w.at, max_depth=rt.settings.max_nesting_depth):
            row.ended_at, row.ended_by, row.end_reason = w.at, actor.name, reason
        membership = mappers.membership(row)
        record_change(
            w, f"membership.end.{relation.value}", membership, before=before, reason=reason
        )
    return Written(membership, w.revision)


def list_memberships(
    rt: Pimlico, *, actor: Actor, group_id: str, include_ended: bool = False
) -> list[Membership]:
    authorize(rt, actor, Perm.GROUPS_READ)
    with rt.reading() as s:
        get_row(s, GroupRow, group_id, "group")
        query = select(MembershipRow).where(MembershipRow.group_id == group_id)
        if not include_ended:
            query = query.where(MembershipRow.ended_at.is_(None))
        rows = s.scalars(query.order_by(MembershipRow.created_at))
        return [mappers.membership(r) for r in rows]
