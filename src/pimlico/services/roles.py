"""Role use cases: custom roles and their permission patterns. Built-in roles are fixed."""

from __future__ import annotations

from sqlalchemy import func, select

from pimlico.db import mappers
from pimlico.db.tables import RoleRow
from pimlico.domain.catalogue import Perm
from pimlico.domain.model import Role, new_id
from pimlico.domain.permissions import validate_patterns
from pimlico.errors import AlreadyExists, Conflict, FieldError, InvalidInput
from pimlico.services.decisions import authorize
from pimlico.services.lookups import check_name, check_text, get_row
from pimlico.services.runtime import Actor, Pimlico, Written, record_change

MAX_PERMISSIONS = 500


def _check_permissions(permissions: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    if not permissions:
        raise InvalidInput(
            "a role needs permissions",
            [FieldError("permissions", "Required", "give at least one permission")],
        )
    if len(permissions) > MAX_PERMISSIONS:
        raise InvalidInput(
            "too many permissions",
            [FieldError("permissions", "Length", f"at most {MAX_PERMISSIONS} per role")],
        )
    validate_patterns(permissions)
    return tuple(dict.fromkeys(permissions))


def create_role(
    rt: Pimlico, *, actor: Actor, name: str, permissions: list[str], description: str = ""
) -> Written[Role]:
    name = check_name(name, "name")
    perms = _check_permissions(permissions)
    description = check_text(description, "description") or ""
    with rt.writing(actor) as w:
        authorize(rt, actor, Perm.ROLES_WRITE)
        s = w.session
        if s.scalars(select(RoleRow.id).where(func.lower(RoleRow.name) == name.lower())).first():
            raise AlreadyExists(f"role name {name!r} is taken")
        row = RoleRow(
            id=new_id(),
            name=name,
            description=description,
            permissions=list(perms),
            built_in=False,
            created_at=w.at,
            updated_at=w.at,
        )
        s.add(row)
        s.flush()
        role = mappers.role(row)
        record_change(w, "role.create", role)
    return Written(role, w.revision)


def update_role(
    rt: Pimlico,
    *,
    actor: Actor,
    role_id: str,
    permissions: list[str] | None = None,
    description: str | None = None,
) -> Written[Role]:
    """Change a custom role. Everyone holding it gains or loses the change at once."""
    perms = None if permissions is None else _check_permissions(permissions)
    with rt.writing(actor) as w:
        authorize(rt, actor, Perm.ROLES_WRITE)
        row = get_row(w.session, RoleRow, role_id, "role", lock=True)
        if row.built_in:
            raise Conflict(f"{row.name} is a built-in role and cannot be changed")
        before = mappers.role(row)
        if perms is not None:
            row.permissions = list(perms)
        if description is not None:
            row.description = check_text(description, "description") or ""
        row.updated_at = w.at
        role = mappers.role(row)
        record_change(w, "role.update", role, before=before)
    return Written(role, w.revision)


def list_roles(rt: Pimlico, *, actor: Actor) -> list[Role]:
    authorize(rt, actor, Perm.ROLES_READ)
    with rt.reading() as s:
        return [mappers.role(r) for r in s.scalars(select(RoleRow).order_by(RoleRow.name))]


def get_role(rt: Pimlico, *, actor: Actor, role_id: str) -> Role:
    authorize(rt, actor, Perm.ROLES_READ)
    with rt.reading() as s:
        return mappers.role(get_row(s, RoleRow, role_id, "role"))
