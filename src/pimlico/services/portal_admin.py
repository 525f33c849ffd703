"""Reads the portal's administration pages need beside the ordinary use cases: the targets
that have role settings (with their policies, in one query), names for ids, one assignment,
approvers typed by name, and the audit log exported with every filter the page offers.

Each authorizes with the permission of what it shows (``pim.policies.read``,
``pim.assignments.read``, ``pim.audit.read``); names are given only for the kinds of thing the
caller may read. Nothing here writes: changes go through ``role_settings.update_policy`` and
``requests.submit`` as in the API.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from pimlico.db import mappers
from pimlico.db.audit import EXPORT_FIELDS, csv_row
from pimlico.db.tables import (
    AssignmentRow,
    GroupRow,
    RoleSettingsRow,
    UserRow,
)
from pimlico.domain.audit import AuditRecord, canonical_json
from pimlico.domain.catalogue import Perm
from pimlico.domain.model import Assignment, Group, Role, TargetType
from pimlico.domain.policy import ApproverRef, ApproverType, RoleSettings
from pimlico.domain.policy_codec import from_dict
from pimlico.errors import FieldError, InvalidInput, InvalidPolicy, NotFound
from pimlico.services import audit, directory, roles
from pimlico.services.decisions import allows, authorize
from pimlico.services.lookups import get_row
from pimlico.services.resolve import (
    PRINCIPAL_PREFIXES,
    resolve_group,
    resolve_principal,
    resolve_role,
    resolve_user,
)
from pimlico.services.runtime import Actor, Pimlico

EXPORT_BATCH = 1000
"""Events an export reads at a time (memory stays flat however long the log)."""


@dataclass(frozen=True, slots=True)
class SettingsTarget:
    """A target whose settings an administrator can read: a role, or a PIM-enabled group's
    membership or ownership, with its policy (the defaults at version 0)."""

    target_type: TargetType
    object_id: str
    name: str
    settings: RoleSettings
    version: int


def _readable_targets(rt: Pimlico, actor: Actor) -> tuple[list[Role], list[Group]]:
    """The roles and the PIM-enabled groups the caller may read: roles only with
    ``pim.roles.read``, groups only with ``pim.groups.read`` (a Groups Administrator reads
    groups, not roles, and must still see the group targets)."""
    found_roles = roles.list_roles(rt, actor=actor) if allows(rt, actor, Perm.ROLES_READ) else []
    groups = (
        [g for g in directory.list_groups(rt, actor=actor) if g.pim_enabled]
        if allows(rt, actor, Perm.GROUPS_READ)
        else []
    )
    return found_roles, groups


def settings_targets(rt: Pimlico, *, actor: Actor) -> list[SettingsTarget]:
    """Every role, then the membership and ownership of every PIM-enabled group, by name
    (of the kinds the caller may read)."""
    authorize(rt, actor, Perm.POLICIES_READ)
    found_roles, groups = _readable_targets(rt, actor)
    with rt.reading() as s:
        stored = {
            (row.target_type, row.object_id): (row.settings, row.version)
            for row in s.scalars(select(RoleSettingsRow))
        }

    def target(kind: TargetType, object_id: str, name: str) -> SettingsTarget:
        document, version = stored.get((kind.value, object_id), (None, 0))
        settings = RoleSettings.default() if document is None else from_dict(document)
        return SettingsTarget(kind, object_id, name, settings, version)

    found = [
        target(TargetType.ROLE, r.id, r.name)
        for r in sorted(found_roles, key=lambda r: r.name.casefold())
    ]
    for g in sorted(groups, key=lambda g: g.display_name.casefold()):
        found.append(target(TargetType.GROUP_MEMBER, g.id, g.display_name))
        found.append(target(TargetType.GROUP_OWNER, g.id, g.display_name))
    return found


def target_name(rt: Pimlico, *, actor: Actor, target_type: TargetType, object_id: str) -> str:
    """The name of a role or group (``NotFound`` if there is none)."""
    if target_type is TargetType.ROLE:
        return roles.get_role(rt, actor=actor, role_id=object_id).name
    authorize(rt, actor, Perm.GROUPS_READ)
    with rt.reading() as s:
        return get_row(s, GroupRow, object_id, "group").display_name


def approver_names(rt: Pimlico, *, actor: Actor, refs: Iterable[ApproverRef]) -> dict[str, str]:
    """How to write each approver back in a form: a user name (``bob``) or ``group:NAME``."""
    authorize(rt, actor, Perm.POLICIES_READ)
    wanted = sorted({r.id for r in refs})
    found: dict[str, str] = {}
    if not wanted:
        return found
    with rt.reading() as s:
        for uid, name in s.execute(
            select(UserRow.id, UserRow.user_name).where(UserRow.id.in_(wanted))
        ):
            found[uid] = name
        for gid, name in s.execute(
            select(GroupRow.id, GroupRow.name).where(GroupRow.id.in_(wanted))
        ):
            found[gid] = f"group:{name}"
    return found


def approvers_by_name(
    rt: Pimlico, *, actor: Actor, typed: dict[str, list[str]]
) -> dict[str, list[dict[str, str]]]:
    """Approvers typed in a settings form (``bob``, ``group:Approvers``), per field, as the
    settings document writes them; ``InvalidPolicy`` naming each field with an unknown name.

    Needs ``pim.policies.write``, checked before any name is looked up: only someone who may
    save the settings learns whether a name exists."""
    authorize(rt, actor, Perm.POLICIES_WRITE)
    problems: list[FieldError] = []
    resolved: dict[str, list[dict[str, str]]] = {}
    for field, names in typed.items():
        refs: list[dict[str, str]] = []
        for name in names:
            head, sep, rest = name.partition(":")
            try:
                if sep and head.strip().lower() == "group":
                    refs.append(
                        {"type": ApproverType.GROUP.value, "id": resolve_group(rt, rest).id}
                    )
                else:
                    refs.append({"type": ApproverType.USER.value, "id": resolve_user(rt, name).id})
            except NotFound:
                problems.append(
                    FieldError(
                        field,
                        "UnknownApprover",
                        f"nobody is named {name!r}: write a user name (bob) or group:NAME",
                    )
                )
        resolved[field] = refs
    if problems:
        raise InvalidPolicy("some approvers do not exist", problems)
    return resolved


def get_assignment(rt: Pimlico, *, actor: Actor, assignment_id: str) -> Assignment:
    """One assignment, ended or not."""
    authorize(rt, actor, Perm.ASSIGNMENTS_READ)
    with rt.reading() as s:
        return mappers.assignment(get_row(s, AssignmentRow, assignment_id, "assignment"))


def export_events(
    rt: Pimlico,
    *,
    actor: Actor,
    format: str,
    by: str | None = None,
    action: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Iterator[str]:
    """The matching events as text chunks, in ``services.audit.export_log``'s formats (JSON
    lines, or CSV with a header row), but with every filter of the audit page.

    The caller's permission and the filters are checked, and the first batch read, before
    this returns: a refusal is raised here, never in the middle of a download.
    """
    chosen = audit.export_format(format)

    def batch(after: int | None) -> list[AuditRecord]:
        return audit.list_events(
            rt,
            actor=actor,
            by=by,
            action=action,
            target_type=target_type,
            target_id=target_id,
            since=since,
            until=until,
            limit=EXPORT_BATCH,
            after_sequence=after,
        )

    first = batch(None)

    def chunks() -> Iterator[str]:
        records = first
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n") if chosen == "csv" else None
        if writer is not None:
            writer.writerow(EXPORT_FIELDS)
        while True:
            for record in records:
                if writer is None:
                    out.write(canonical_json(record.as_dict()) + "\n")
                else:
                    writer.writerow(csv_row(record))
            yield out.getvalue()
            out.seek(0)
            out.truncate()
            if len(records) < EXPORT_BATCH:
                return
            records = batch(records[-1].sequence)

    return chunks()


@dataclass(frozen=True, slots=True)
class TargetChoice:
    """A target an administrator may pick: a role, or a PIM-enabled group's membership or
    ownership."""

    target_type: TargetType
    object_id: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.target_type.value}:{self.object_id}"


def target_choices(rt: Pimlico, *, actor: Actor) -> list[TargetChoice]:
    """Every role, then the membership and ownership of every PIM-enabled group, by name
    (of the kinds the caller may read). Needs ``pim.assignments.read``: the list it is for."""
    authorize(rt, actor, Perm.ASSIGNMENTS_READ)
    found_roles, groups = _readable_targets(rt, actor)
    found = [
        TargetChoice(TargetType.ROLE, r.id, r.name)
        for r in sorted(found_roles, key=lambda r: r.name.casefold())
    ]
    for g in sorted(groups, key=lambda g: g.display_name.casefold()):
        found.append(TargetChoice(TargetType.GROUP_MEMBER, g.id, g.display_name))
        found.append(TargetChoice(TargetType.GROUP_OWNER, g.id, g.display_name))
    return found


def audit_subject(rt: Pimlico, *, actor: Actor, text: str) -> str:
    """What an audit filter typed by a person stands for: the id of the user (``alex``),
    group (``group:NAME``), service account (``sa:NAME``) or role (``role:NAME``) it names,
    else the text itself (an id, ``system:cli``)."""
    authorize(rt, actor, Perm.AUDIT_READ)
    text = text.strip()
    head, sep, rest = text.partition(":")
    try:
        if sep and head.strip().lower() == "role":
            return resolve_role(rt, rest).id
        if sep and head.strip().lower() not in PRINCIPAL_PREFIXES:
            return text
        return resolve_principal(rt, text).id
    except (NotFound, InvalidInput):
        return text
