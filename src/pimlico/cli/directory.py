"""``pimlico user``, ``service-account`` and ``group``: the directory and static memberships."""

from __future__ import annotations

from typing import Annotated

import typer

from pimlico.cli._common import ACTOR, command, done, instant, runtime, say, show, table, yes_no
from pimlico.cli.assignments import assignments_table
from pimlico.cli.decisions import render_access
from pimlico.domain.model import Relation, Target
from pimlico.services import assignments, decisions, directory, resolve

users = typer.Typer(help="Users: people who can hold assignments.", no_args_is_help=True)
service_accounts = typer.Typer(
    help="Service accounts: non-human principals (active, time-bound assignments only).",
    no_args_is_help=True,
)
groups = typer.Typer(help="Groups, their members and owners.", no_args_is_help=True)

UserName = Annotated[str, typer.Argument(help="A user name (or id).", show_default=False)]
AccountName = Annotated[str, typer.Argument(help="A service account name (or id).")]
GroupName = Annotated[str, typer.Argument(help="A group name (or id).", show_default=False)]
Reason = Annotated[str | None, typer.Option("--reason", help="Why: kept in the audit log.")]
Description = Annotated[str | None, typer.Option("--description", help="What it is for.")]


# -- users ----------------------------------------------------------------------------------


@command(users, "create")
def create_user(
    name: UserName,
    display_name: Annotated[str | None, typer.Option("--display-name")] = None,
    email: Annotated[str | None, typer.Option("--email")] = None,
    manager: Annotated[str | None, typer.Option("--manager", help="The manager's name.")] = None,
) -> None:
    """Create a user."""
    with runtime() as rt:
        manager_id = None if manager is None else resolve.resolve_user(rt, manager).id
        written = directory.create_user(
            rt,
            actor=ACTOR,
            user_name=name,
            display_name=display_name,
            email=email,
            manager_id=manager_id,
        )
    done(f"created user {written.value.user_name} ({written.value.id})", written.revision)


@command(users, "list")
def list_users() -> None:
    """List users."""
    with runtime() as rt:
        found = directory.list_users(rt, actor=ACTOR)
    rows = table("users", "user name", "display name", "email", "enabled", "id")
    for user in found:
        rows.add_row(
            user.user_name, user.display_name, user.email or "", yes_no(user.enabled), user.id
        )
    show(rows)


@command(users, "show")
def show_user(name: UserName) -> None:
    """Show a user and what they hold now."""
    with runtime() as rt:
        user = resolve.resolve_user(rt, name)
        labels = resolve.labels(rt, [user.manager_id] if user.manager_id else [])
        details = table(None, "", "")
        details.show_header = False
        details.add_row("user name", user.user_name)
        details.add_row("display name", user.display_name)
        details.add_row("email", user.email or "")
        details.add_row("enabled", yes_no(user.enabled))
        manager = labels.get(user.manager_id, user.manager_id) if user.manager_id else ""
        details.add_row("manager", manager)
        details.add_row("created", instant(user.created_at))
        details.add_row("id", user.id)
        show(details)
        if not user.enabled:
            say("disabled: holds nothing while disabled, whatever is assigned")
        render_access(rt, decisions.effective_access(rt, actor=ACTOR, principal_id=user.id))


@command(users, "disable")
def disable_user(name: UserName, reason: Reason = None) -> None:
    """Disable a user: they hold nothing while disabled, whatever they are assigned."""
    with runtime() as rt:
        user = resolve.resolve_user(rt, name)
        written = directory.set_user_enabled(
            rt, actor=ACTOR, user_id=user.id, enabled=False, reason=reason
        )
    done(f"disabled user {written.value.user_name}", written.revision)


@command(users, "enable")
def enable_user(name: UserName, reason: Reason = None) -> None:
    """Enable a disabled user again."""
    with runtime() as rt:
        user = resolve.resolve_user(rt, name)
        written = directory.set_user_enabled(
            rt, actor=ACTOR, user_id=user.id, enabled=True, reason=reason
        )
    done(f"enabled user {written.value.user_name}", written.revision)


# -- service accounts -----------------------------------------------------------------------


@command(service_accounts, "create")
def create_service_account(
    name: AccountName,
    display_name: Annotated[str | None, typer.Option("--display-name")] = None,
    description: Description = None,
) -> None:
    """Create a service account."""
    with runtime() as rt:
        written = directory.create_service_account(
            rt, actor=ACTOR, name=name, display_name=display_name, description=description or ""
        )
    done(f"created service account {written.value.name} ({written.value.id})", written.revision)


@command(service_accounts, "list")
def list_service_accounts() -> None:
    """List service accounts."""
    with runtime() as rt:
        found = directory.list_service_accounts(rt, actor=ACTOR)
    rows = table("service accounts", "name", "display name", "enabled", "description", "id")
    for account in found:
        rows.add_row(
            account.name,
            account.display_name,
            yes_no(account.enabled),
            account.description,
            account.id,
        )
    show(rows)


def _set_account_enabled(name: str, enabled: bool, reason: str | None) -> None:
    with runtime() as rt:
        account = resolve.resolve_service_account(rt, name)
        written = directory.set_service_account_enabled(
            rt, actor=ACTOR, account_id=account.id, enabled=enabled, reason=reason
        )
    verb = "enabled" if enabled else "disabled"
    done(f"{verb} service account {written.value.name}", written.revision)


@command(service_accounts, "disable")
def disable_service_account(name: AccountName, reason: Reason = None) -> None:
    """Disable a service account."""
    _set_account_enabled(name, False, reason)


@command(service_accounts, "enable")
def enable_service_account(name: AccountName, reason: Reason = None) -> None:
    """Enable a disabled service account again."""
    _set_account_enabled(name, True, reason)


# -- groups ---------------------------------------------------------------------------------


@command(groups, "create")
def create_group(
    name: GroupName,
    role_assignable: Annotated[
        bool,
        typer.Option("--role-assignable", help="May hold roles. Chosen now and never again."),
    ] = False,
    pim_enabled: Annotated[
        bool, typer.Option("--pim-enabled", help="Membership is managed by PIM.")
    ] = False,
    display_name: Annotated[str | None, typer.Option("--display-name")] = None,
    description: Description = None,
) -> None:
    """Create a group."""
    with runtime() as rt:
        written = directory.create_group(
            rt,
            actor=ACTOR,
            name=name,
            display_name=display_name,
            description=description or "",
            role_assignable=role_assignable,
            pim_enabled=pim_enabled,
        )
    done(f"created group {written.value.name} ({written.value.id})", written.revision)


@command(groups, "update")
def update_group(
    name: GroupName,
    pim_enabled: Annotated[
        bool | None, typer.Option("--pim-enabled/--no-pim-enabled", show_default=False)
    ] = None,
    display_name: Annotated[str | None, typer.Option("--display-name")] = None,
    description: Description = None,
) -> None:
    """Change a group's PIM switch, display name or description."""
    with runtime() as rt:
        group = resolve.resolve_group(rt, name)
        written = directory.update_group(
            rt,
            actor=ACTOR,
            group_id=group.id,
            display_name=display_name,
            description=description,
            pim_enabled=pim_enabled,
        )
    done(f"updated group {written.value.name}", written.revision)


@command(groups, "list")
def list_groups() -> None:
    """List groups."""
    with runtime() as rt:
        found = directory.list_groups(rt, actor=ACTOR)
    rows = table("groups", "name", "role-assignable", "PIM", "description", "id")
    for group in found:
        rows.add_row(
            group.name,
            yes_no(group.role_assignable),
            yes_no(group.pim_enabled),
            group.description,
            group.id,
        )
    show(rows)


@command(groups, "show")
def show_group(name: GroupName) -> None:
    """Show a group, its standing members and owners, and its PIM assignments."""
    with runtime() as rt:
        group = resolve.resolve_group(rt, name)
        members = directory.list_memberships(rt, actor=ACTOR, group_id=group.id)
        pim = [
            *assignments.list_assignments(rt, actor=ACTOR, target=Target.group_member(group.id)),
            *assignments.list_assignments(rt, actor=ACTOR, target=Target.group_owner(group.id)),
        ]
        labels = resolve.labels(rt, [m.member.id for m in members])
        details = table(None, "", "")
        details.show_header = False
        details.add_row("name", group.name)
        details.add_row("display name", group.display_name)
        details.add_row("description", group.description)
        details.add_row("role-assignable", yes_no(group.role_assignable))
        details.add_row("PIM enabled", yes_no(group.pim_enabled))
        details.add_row("id", group.id)
        standing = table("standing members and owners", "principal", "relation", "since", "by")
        for m in members:
            standing.add_row(
                labels.get(m.member.id, str(m.member)),
                m.relation.value,
                instant(m.created_at),
                m.created_by or "",
            )
        show(details, standing, assignments_table(rt, pim, "PIM assignments"))


def _membership(
    group_name: str, member_name: str, owner: bool, reason: str | None, *, add: bool
) -> None:
    relation = Relation.OWNER if owner else Relation.MEMBER
    with runtime() as rt:
        group = resolve.resolve_group(rt, group_name)
        member = resolve.resolve_principal(rt, member_name)
        change = directory.add_member if add else directory.remove_member
        written = change(
            rt, actor=ACTOR, group_id=group.id, member=member, relation=relation, reason=reason
        )
        who = resolve.describe_principal(rt, member)
    if add:
        done(f"added {who} as {relation.value} of group {group.name}", written.revision)
    else:
        done(f"removed {who} as {relation.value} of group {group.name}", written.revision)


Owner = Annotated[bool, typer.Option("--owner", help="Ownership rather than membership.")]
Member = Annotated[str, typer.Argument(help="alex, user:alex, group:NAME or sa:NAME.")]


@command(groups, "add-member")
def add_member(
    group: GroupName, member: Member, owner: Owner = False, reason: Reason = None
) -> None:
    """Make MEMBER a standing member (or owner) of GROUP."""
    _membership(group, member, owner, reason, add=True)


@command(groups, "remove-member")
def remove_member(
    group: GroupName, member: Member, owner: Owner = False, reason: Reason = None
) -> None:
    """End MEMBER's standing membership (or ownership) of GROUP."""
    _membership(group, member, owner, reason, add=False)
