"""Turning what a person types into ids: ``alex``, ``group:Search and Purge``, ``role:Reader``.

Read-only use cases for entry points that take names (the CLI, later the portal's search).
Each opens one reading session and answers with a domain entity or a ``PrincipalRef``; an
unknown name is ``NotFound``, a malformed one ``InvalidInput``. They decide nothing else:
whether the caller may *use* what was named is the business of the use case it is passed to.

Names are matched without regard to case, as the directory keeps them unique that way; an
id is accepted wherever a name is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pimlico.db import mappers
from pimlico.db.tables import Base, GroupRow, RoleRow, ServiceAccountRow, UserRow
from pimlico.domain.model import (
    Group,
    PrincipalRef,
    PrincipalType,
    Role,
    ServiceAccount,
    Target,
    TargetType,
    User,
)
from pimlico.errors import FieldError, InvalidInput, NotFound
from pimlico.services.lookups import group_by_name, role_by_name, user_by_name
from pimlico.services.runtime import Pimlico

R = TypeVar("R", bound=Base)

PRINCIPAL_PREFIXES: dict[str, PrincipalType] = {
    "user": PrincipalType.USER,
    "group": PrincipalType.GROUP,
    "sa": PrincipalType.SERVICE_ACCOUNT,
    "service_account": PrincipalType.SERVICE_ACCOUNT,
    "service-account": PrincipalType.SERVICE_ACCOUNT,
}
"""How a typed principal starts: ``user:alex``, ``group:Admins``, ``sa:ci-bot``."""

TARGET_PREFIXES: dict[str, TargetType] = {
    "role": TargetType.ROLE,
    "member": TargetType.GROUP_MEMBER,
    "owner": TargetType.GROUP_OWNER,
}
"""How a target is written: ``role:NAME`` (at a scope), ``member:GROUP``, ``owner:GROUP``."""

_LABEL_PREFIX = {
    PrincipalType.USER: "user",
    PrincipalType.GROUP: "group",
    PrincipalType.SERVICE_ACCOUNT: "sa",
}


def _required(text: str, field: str, hint: str) -> str:
    text = text.strip()
    if not text:
        raise InvalidInput(f"no {field} given", [FieldError(field, "Required", hint)])
    return text


def _by_name_or_id(
    session: Session,
    text: str,
    by_name: Callable[[Session, str], R],
    table: type[R],
    what: str,
) -> R:
    """The row named ``text``, or else the row whose id is ``text``."""
    try:
        return by_name(session, text)
    except NotFound:
        row = session.get(table, text)
        if row is None:
            raise NotFound(f"{what} {text!r} does not exist (by name or id)") from None
        return row


def _service_account_by_name(session: Session, name: str) -> ServiceAccountRow:
    row = session.scalars(
        select(ServiceAccountRow).where(func.lower(ServiceAccountRow.name) == name.lower())
    ).first()
    if row is None:
        raise NotFound(f"service account {name!r} does not exist")
    return row


def _user(session: Session, text: str) -> UserRow:
    return _by_name_or_id(session, text, user_by_name, UserRow, "user")


def _group(session: Session, text: str) -> GroupRow:
    return _by_name_or_id(session, text, group_by_name, GroupRow, "group")


def _service_account(session: Session, text: str) -> ServiceAccountRow:
    return _by_name_or_id(
        session, text, _service_account_by_name, ServiceAccountRow, "service account"
    )


def _strip_prefix(text: str, prefix: str) -> str:
    head, sep, rest = text.partition(":")
    return rest.strip() if sep and head.strip().lower() == prefix else text


def _principal_id(session: Session, kind: PrincipalType, text: str) -> str:
    if kind is PrincipalType.USER:
        return _user(session, text).id
    if kind is PrincipalType.GROUP:
        return _group(session, text).id
    return _service_account(session, text).id


def resolve_user(rt: Pimlico, text: str) -> User:
    """The user whose name (or id) is ``text``; ``user:`` in front is allowed."""
    text = _required(_strip_prefix(text, "user"), "user", "name a user")
    with rt.reading() as s:
        return mappers.user(_user(s, text))


def resolve_service_account(rt: Pimlico, text: str) -> ServiceAccount:
    """The service account whose name (or id) is ``text``; ``sa:`` in front is allowed."""
    text = _required(_strip_prefix(text, "sa"), "service_account", "name a service account")
    with rt.reading() as s:
        return mappers.service_account(_service_account(s, text))


def resolve_group(rt: Pimlico, text: str) -> Group:
    """The group whose name (or id) is ``text``; ``group:`` in front is allowed."""
    text = _required(_strip_prefix(text, "group"), "group", "name a group")
    with rt.reading() as s:
        return mappers.group(_group(s, text))


def resolve_role(rt: Pimlico, text: str) -> Role:
    """The role whose name (or id) is ``text``; ``role:`` in front is allowed."""
    text = _required(_strip_prefix(text, "role"), "role", "name a role")
    with rt.reading() as s:
        return mappers.role(_by_name_or_id(s, text, role_by_name, RoleRow, "role"))


def resolve_principal(rt: Pimlico, text: str) -> PrincipalRef:
    """The principal ``text`` names: ``user:NAME``, ``group:NAME``, ``sa:NAME``, a bare user
    name, or the id of a user, group or service account."""
    hint = "name a user (alex or user:alex), a group (group:NAME) or a service account (sa:NAME)"
    text = _required(text, "principal", hint)
    head, sep, rest = text.partition(":")
    with rt.reading() as s:
        if sep:
            kind = PRINCIPAL_PREFIXES.get(head.strip().lower())
            if kind is None:
                raise InvalidInput(
                    f"unknown principal type {head.strip()[:32]!r}",
                    [FieldError("principal", "PrincipalFormat", hint)],
                )
            name = _required(rest, "principal", hint)
            return PrincipalRef(kind, _principal_id(s, kind, name))
        try:
            return PrincipalRef(PrincipalType.USER, user_by_name(s, text).id)
        except NotFound:
            pass
        tables: tuple[tuple[PrincipalType, type[Base]], ...] = (
            (PrincipalType.USER, UserRow),
            (PrincipalType.GROUP, GroupRow),
            (PrincipalType.SERVICE_ACCOUNT, ServiceAccountRow),
        )
        for kind, table in tables:
            if s.get(table, text) is not None:
                return PrincipalRef(kind, text)
    raise NotFound(
        f"no user is named {text!r} and no principal has that id "
        "(write group:NAME for a group and sa:NAME for a service account)"
    )


def resolve_target(rt: Pimlico, text: str, scope: str = "/") -> Target:
    """The target ``text`` names: ``role:NAME`` (at ``scope``), ``member:GROUP`` or
    ``owner:GROUP``. The scope is passed on as given; the use case judges it."""
    hint = "write role:NAME, member:GROUP or owner:GROUP"
    text = _required(text, "target", hint)
    head, sep, rest = text.partition(":")
    kind = TARGET_PREFIXES.get(head.strip().lower()) if sep else None
    if kind is None:
        raise InvalidInput(
            f"cannot read target {text[:64]!r}", [FieldError("target", "TargetFormat", hint)]
        )
    name = _required(rest, "target", hint)
    if kind is TargetType.ROLE:
        return Target.role(resolve_role(rt, name).id, scope)
    return Target(kind, resolve_group(rt, name).id, scope)


def labels(rt: Pimlico, ids: Iterable[str]) -> dict[str, str]:
    """A label for each id that is a user, group, service account or role: ``user:alex``,
    ``group:Admins``, ``sa:ci-bot``, ``role:Reader``. Unknown ids are left out."""
    wanted = sorted(set(ids))
    found: dict[str, str] = {}
    if not wanted:
        return found
    with rt.reading() as s:
        for uid, name in s.execute(
            select(UserRow.id, UserRow.user_name).where(UserRow.id.in_(wanted))
        ):
            found[uid] = f"user:{name}"
        for gid, name in s.execute(
            select(GroupRow.id, GroupRow.name).where(GroupRow.id.in_(wanted))
        ):
            found[gid] = f"group:{name}"
        for aid, name in s.execute(
            select(ServiceAccountRow.id, ServiceAccountRow.name).where(
                ServiceAccountRow.id.in_(wanted)
            )
        ):
            found[aid] = f"sa:{name}"
        for rid, name in s.execute(select(RoleRow.id, RoleRow.name).where(RoleRow.id.in_(wanted))):
            found[rid] = f"role:{name}"
    return found


def describe_principal(rt: Pimlico, ref: PrincipalRef) -> str:
    """``user:alex``, ``group:Admins`` or ``sa:ci-bot``; the id if the principal is gone."""
    return labels(rt, [ref.id]).get(ref.id, f"{_LABEL_PREFIX[ref.type]}:{ref.id}")
