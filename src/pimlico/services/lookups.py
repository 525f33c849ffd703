"""Loading what a use case names, with a clear ``NotFound`` when it is not there.

Also the small input rules every use case shares (names, emails, reasons).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, and_, bindparam, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from pimlico.db.tables import Base, GroupRow, RoleRow, ServiceAccountRow, UserRow
from pimlico.domain.model import PrincipalRef, PrincipalType
from pimlico.errors import FieldError, InvalidInput, NotFound

R = TypeVar("R", bound=Base)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+\- ]{0,255}$")
_EMAIL = re.compile(r"^[^@\s;,<>\x00]+@[^@\s;,<>.\x00]+(\.[^@\s;,<>.\x00]+)+$")
MAX_TEXT = 4000


_BY_ID: dict[tuple[type[Base], bool], Select[Any]] = {}
"""(table, lock) → its look-up by id, built once: use cases call ``get_row`` under the write
lock, where building and keying a statement on every call is time every writer waits for."""


def get_row(session: Session, table: type[R], row_id: str, what: str, *, lock: bool = False) -> R:
    query = _BY_ID.get((table, lock))
    if query is None:
        query = select(table).where(table.id == bindparam("row_id"))  # type: ignore[attr-defined]
        if lock:
            query = query.with_for_update()
        _BY_ID[(table, lock)] = query
    row: R | None = session.scalars(query, {"row_id": row_id}).one_or_none()
    if row is None:
        raise NotFound(f"{what} {row_id} does not exist")
    return row


def user_by_name(session: Session, user_name: str) -> UserRow:
    row = session.scalars(select(UserRow).where(UserRow.user_name_key == user_name.lower())).first()
    if row is None:
        raise NotFound(f"user {user_name!r} does not exist")
    return row


def group_by_name(session: Session, name: str) -> GroupRow:
    row = session.scalars(select(GroupRow).where(func.lower(GroupRow.name) == name.lower())).first()
    if row is None:
        raise NotFound(f"group {name!r} does not exist")
    return row


def role_by_name(session: Session, name: str) -> RoleRow:
    row = session.scalars(select(RoleRow).where(func.lower(RoleRow.name) == name.lower())).first()
    if row is None:
        raise NotFound(f"role {name!r} does not exist")
    return row


def principal_row(session: Session, ref: PrincipalRef) -> UserRow | GroupRow | ServiceAccountRow:
    if ref.type is PrincipalType.USER:
        return get_row(session, UserRow, ref.id, "user")
    if ref.type is PrincipalType.GROUP:
        return get_row(session, GroupRow, ref.id, "group")
    return get_row(session, ServiceAccountRow, ref.id, "service account")


def check_name(value: str, field: str) -> str:
    value = value.strip()
    if not _NAME.match(value):
        raise InvalidInput(
            f"invalid {field}",
            [
                FieldError(
                    field,
                    "NameFormat",
                    "1 to 256 characters: letters, digits, space and . _ @ + -, "
                    "starting with a letter or digit",
                )
            ],
        )
    return value


def check_email(value: str | None, field: str = "email") -> str | None:
    if value is None or value == "":
        return None
    if len(value) > 254 or not _EMAIL.match(value):
        raise InvalidInput(
            f"invalid {field}", [FieldError(field, "EmailFormat", f"{value!r} is not an address")]
        )
    return value


def check_text(
    value: str | None, field: str, *, required: bool = False, rule: str = "Required"
) -> str | None:
    if value is not None:
        value = value.strip() or None
    if value is None and required:
        raise InvalidInput(
            f"{field} is required", [FieldError(field, rule, f"{field} is required")]
        )
    if value is not None and len(value) > MAX_TEXT:
        raise InvalidInput(
            f"{field} is too long",
            [FieldError(field, "Length", f"at most {MAX_TEXT} characters")],
        )
    if value is not None and "\x00" in value:
        raise InvalidInput(
            f"{field} holds a NUL character",
            [FieldError(field, "NoNul", "text may not hold NUL (\\x00) characters")],
        )
    return value


def check_instant(value: datetime | None, field: str) -> datetime | None:
    """An instant must say its time zone: a naive datetime is refused, never guessed."""
    if value is not None and value.tzinfo is None:
        raise InvalidInput(
            f"{field} has no time zone",
            [FieldError(field, "Timezone", "give an instant with its offset, e.g. ...Z")],
        )
    return value


SelectT = TypeVar("SelectT", bound=Select[Any])


def newest_first_page(
    query: SelectT,
    at: InstrumentedAttribute[datetime],
    row_id: InstrumentedAttribute[str],
    after: tuple[datetime, str] | None,
    limit: int | None,
) -> SelectT:
    """``query`` ordered newest first by ``at``, then by ``row_id``, from just after
    ``after`` (the ``(at, id)`` of the previous page's last row; keyset paging), at most
    ``limit`` rows."""
    if after is not None:
        last_at, last_id = after
        query = query.where(or_(at < last_at, and_(at == last_at, row_id > last_id)))
    return query.order_by(at.desc(), row_id).limit(limit)
