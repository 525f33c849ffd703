"""Role settings use cases: read a target's policy (its default when none is set) and change it.

Changes are partial documents (``{"activation": {"maximum_duration": "PT2H"}}``) applied over
the current policy and validated whole. ``version`` is the ETag: an update that names the
version it read is refused if someone changed the policy since.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from pimlico.db.audit import WriteContext
from pimlico.db.tables import GroupRow, RoleRow, RoleSettingsRow
from pimlico.domain.catalogue import Perm
from pimlico.domain.model import TargetType, new_id
from pimlico.domain.policy import RoleSettings
from pimlico.domain.policy_codec import from_dict, to_dict, with_changes
from pimlico.errors import Conflict, PreconditionRequired
from pimlico.services.decisions import authorize
from pimlico.services.lookups import get_row
from pimlico.services.runtime import Actor, Pimlico, Written


class PreconditionFailed(Conflict):
    code = "PreconditionFailed"
    status = 412


@dataclass(frozen=True, slots=True)
class Policy:
    """A target's settings and their version (0: never set, the defaults apply)."""

    target_type: TargetType
    object_id: str
    settings: RoleSettings
    version: int


_DECODED_MAX = 10_000
_decoded: dict[str, tuple[dict[str, Any], RoleSettings]] = {}
"""Row id → (the stored document, as decoded; the settings it decodes to)."""


def _decode(row: RoleSettingsRow) -> RoleSettings:
    """``from_dict(row.settings)``, reused while the row's document is equal to the one
    decoded (compared whole, so a document changed behind ``update_policy``'s back is
    decoded again)."""
    known = _decoded.get(row.id)
    if known is not None and known[0] == row.settings:
        return known[1]
    settings = from_dict(row.settings)
    if len(_decoded) >= _DECODED_MAX:
        _decoded.clear()
    _decoded[row.id] = (copy.deepcopy(row.settings), settings)
    return settings


def _check_target(session: Session, target_type: TargetType, object_id: str) -> None:
    if target_type is TargetType.ROLE:
        get_row(session, RoleRow, object_id, "role")
    else:
        get_row(session, GroupRow, object_id, "group")


_BY_TARGET = select(RoleSettingsRow).where(
    RoleSettingsRow.target_type == bindparam("target_type"),
    RoleSettingsRow.object_id == bindparam("object_id"),
)
"""Built once: every activation runs it under the write lock."""


def _row(session: Session, target_type: TargetType, object_id: str) -> RoleSettingsRow | None:
    return session.scalars(
        _BY_TARGET, {"target_type": target_type.value, "object_id": object_id}
    ).one_or_none()


def load_policy(session: Session, target_type: TargetType, object_id: str) -> Policy:
    """The policy in force for a target, for use cases that judge against it."""
    row = _row(session, target_type, object_id)
    if row is None:
        return Policy(target_type, object_id, RoleSettings.default(), 0)
    return Policy(target_type, object_id, _decode(row), row.version)


def get_policy(rt: Pimlico, *, actor: Actor, target_type: TargetType, object_id: str) -> Policy:
    authorize(rt, actor, Perm.POLICIES_READ)
    with rt.reading() as s:
        _check_target(s, target_type, object_id)
        return load_policy(s, target_type, object_id)


def update_policy(
    rt: Pimlico,
    *,
    actor: Actor,
    target_type: TargetType,
    object_id: str,
    changes: Mapping[str, object],
    if_version: int | None = None,
    version_required: bool = False,
) -> Written[Policy]:
    """Merge ``changes`` into a target's settings. ``if_version``: change them only if they
    are still at that version (``PreconditionFailed`` otherwise); ``version_required`` (the
    API's If-Match): refuse without one (``PreconditionRequired``) — after the permission
    check, so a caller who may not change settings learns only that."""
    with rt.writing(actor) as w:
        authorize(rt, actor, Perm.POLICIES_WRITE)
        if version_required and if_version is None:
            raise PreconditionRequired(
                "send If-Match with the ETag of the settings you read (GET them first)"
            )
        policy = change_settings(
            w, target_type=target_type, object_id=object_id, changes=changes, if_version=if_version
        )
    return Written(policy, w.revision)


def change_settings(
    w: WriteContext,
    *,
    target_type: TargetType,
    object_id: str,
    changes: Mapping[str, object],
    if_version: int | None = None,
) -> Policy:
    """``update_policy`` inside the write ``w``, its caller authorized."""
    s = w.session
    _check_target(s, target_type, object_id)
    current = load_policy(s, target_type, object_id)
    if if_version is not None and if_version != current.version:
        raise PreconditionFailed(
            f"the settings are at version {current.version}, not {if_version}: "
            "someone changed them; read them again"
        )
    settings = with_changes(current.settings, changes)
    row = _row(s, target_type, object_id)
    if row is None:
        row = RoleSettingsRow(
            id=new_id(), target_type=target_type.value, object_id=object_id, version=0
        )
        s.add(row)
    row.settings = to_dict(settings)
    row.version = current.version + 1
    row.updated_at = w.at
    row.updated_by = w.actor
    s.flush()
    w.record(
        action="role_settings.update",
        target_type="role_settings",
        target_id=f"{target_type.value}:{object_id}",
        before=to_dict(current.settings),
        after=row.settings,
    )
    return Policy(target_type, object_id, settings, row.version)
