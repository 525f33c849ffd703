"""Connector configuration use cases: connectors and their mappings, audited, one write each.

A connector is a unique name, a kind (``ldap``, ``postgres``, ``scim``, ``webhook``), its
configuration (validated by the kind's own model, ``connectors.registry``), a secret (sealed
with Fernet under the settings' key, bound to the connector's id; never returned, never in
the audit log: the audit records only whether there is one), a mode (``authoritative`` or
``report_only``) and whether it is enabled. A mapping says which Pimlico target (a group's
membership or ownership, or a role at a scope) drives which downstream object. Connectors are
disabled and mappings ended, never deleted.

Every use case is keyword-only, takes the ``Actor`` and checks ``pim.connectors.*`` itself, so
the API, the CLI and tests call the same thing. Adding a mapping also records what must now be
true downstream for everyone who holds its target (``services.provisioning.settle``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pimlico.connectors import registry
from pimlico.db.audit import WriteContext
from pimlico.db.tables import ConnectorMappingRow, ConnectorRow, GroupRow, RoleRow
from pimlico.domain.catalogue import Perm
from pimlico.domain.model import Target, TargetType, new_id
from pimlico.domain.scopes import validate_scope
from pimlico.errors import (
    AlreadyExists,
    Conflict,
    FieldError,
    InvalidInput,
    NotFound,
    SecretKeyNotConfigured,
)
from pimlico.services import provisioning
from pimlico.services.decisions import authorize
from pimlico.services.lookups import check_name, check_text, get_row
from pimlico.services.runtime import Actor, Pimlico, Written
from pimlico.settings import SecretKeyMissing

AUTHORITATIVE, REPORT_ONLY = "authoritative", "report_only"
MODES = (AUTHORITATIVE, REPORT_ONLY)


@dataclass(frozen=True, slots=True)
class ConnectorInfo:
    """A connector as callers see it: everything but the secret (only whether one is set)."""

    id: str
    name: str
    kind: str
    config: dict[str, Any]
    mode: str
    enabled: bool
    has_secret: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class MappingInfo:
    id: str
    connector_id: str
    connector: str
    target: Target
    downstream_object: str
    created_at: datetime
    ended_at: datetime | None


def info(row: ConnectorRow) -> ConnectorInfo:
    return ConnectorInfo(
        row.id,
        row.name,
        row.kind,
        dict(row.config),
        row.mode,
        row.enabled,
        row.secret is not None,
        row.created_at,
        row.updated_at,
    )


def _snapshot(row: ConnectorRow) -> dict[str, object]:
    """What the audit log records of a connector: never the secret."""
    return {
        "name": row.name,
        "kind": row.kind,
        "config": dict(row.config),
        "mode": row.mode,
        "enabled": row.enabled,
        "has_secret": row.secret is not None,
    }


def _fernet(rt: Pimlico) -> Fernet:
    try:
        return Fernet(rt.settings.encryption_key())
    except SecretKeyMissing as error:
        raise SecretKeyNotConfigured(str(error)) from None


def open_secret(rt: Pimlico, row: ConnectorRow) -> str | None:
    """The connector's secret in clear, for building it (dispatchers only)."""
    if row.secret is None:
        return None
    try:
        plain = _fernet(rt).decrypt(row.secret.encode("ascii")).decode()
    except InvalidToken:
        raise SecretKeyNotConfigured(
            f"the secret key cannot decrypt connector {row.name}'s secret: was it changed?"
        ) from None
    owner, _, secret = plain.partition(":")
    if owner != row.id:
        raise SecretKeyNotConfigured(f"connector {row.name}'s secret belongs to another")
    return secret


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        message = f"mode must be one of {', '.join(MODES)}"
        raise InvalidInput(message, [FieldError("mode", "Known", message)])
    return mode


def by_name(session: Session, name: str, *, lock: bool = False) -> ConnectorRow:
    query = select(ConnectorRow).where(func.lower(ConnectorRow.name) == name.strip().lower())
    row = session.scalars(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFound(f"connector {name!r} does not exist")
    return row


def add_connector(
    rt: Pimlico,
    *,
    actor: Actor,
    name: str,
    kind: str,
    config: Mapping[str, object],
    secret: str | None = None,
    mode: str = AUTHORITATIVE,
    enabled: bool = True,
) -> Written[ConnectorInfo]:
    name = check_name(name, "name")
    _check_mode(mode)
    registry.validate(kind, config)
    with rt.writing(actor) as w:
        authorize(rt, actor, Perm.CONNECTORS_WRITE)
        s = w.session
        taken = s.scalar(
            select(ConnectorRow.id).where(func.lower(ConnectorRow.name) == name.lower())
        )
        if taken is not None:
            raise AlreadyExists(f"a connector named {name!r} exists")
        row = ConnectorRow(
            id=new_id(),
            name=name,
            kind=kind,
            config=dict(config),
            mode=mode,
            enabled=enabled,
            config_version=1,
            created_at=w.at,
            created_by=actor.name,
            updated_at=w.at,
            updated_by=actor.name,
        )
        if secret:
            row.secret = _fernet(rt).encrypt(f"{row.id}:{secret}".encode()).decode("ascii")
        s.add(row)
        s.flush()
        w.record(
            action="connector.create",
            target_type="connector",
            target_id=row.id,
            before=None,
            after=_snapshot(row),
        )
    return Written(info(row), w.revision)


def update_connector(
    rt: Pimlico,
    *,
    actor: Actor,
    name: str,
    config: Mapping[str, object] | None = None,
    secret: str | None = None,
    mode: str | None = None,
    enabled: bool | None = None,
    reason: str | None = None,
) -> Written[ConnectorInfo]:
    """Change what is given (``config`` replaces the whole configuration, ``secret`` the
    secret); the rest stays."""
    if mode is not None:
        _check_mode(mode)
    reason = check_text(reason, "reason")
    with rt.writing(actor) as w:
        authorize(rt, actor, Perm.CONNECTORS_WRITE)
        row = by_name(w.session, name, lock=True)
        before = _snapshot(row)
        if config is not None:
            registry.validate(row.kind, config)
            row.config = dict(config)
        if secret:
            row.secret = _fernet(rt).encrypt(f"{row.id}:{secret}".encode()).decode("ascii")
        if mode is not None:
            row.mode = mode
        if enabled is not None:
            row.enabled = enabled
        row.config_version += 1
        row.updated_at, row.updated_by = w.at, actor.name
        w.session.flush()
        w.record(
            action="connector.update",
            target_type="connector",
            target_id=row.id,
            before=before,
            after={**_snapshot(row), "secret_changed": bool(secret)},
            reason=reason,
        )
        if enabled:
            provisioning.settle(rt, w, mappings=_open_mappings(w.session, row.id))
    return Written(info(row), w.revision)


def disable_connector(
    rt: Pimlico, *, actor: Actor, name: str, reason: str | None = None
) -> Written[ConnectorInfo]:
    """Stop provisioning into and reconciling this connector; its configuration stays."""
    return update_connector(rt, actor=actor, name=name, enabled=False, reason=reason)


def list_connectors(rt: Pimlico, *, actor: Actor) -> list[ConnectorInfo]:
    authorize(rt, actor, Perm.CONNECTORS_READ)
    with rt.reading() as s:
        return [info(r) for r in s.scalars(select(ConnectorRow).order_by(ConnectorRow.name))]


def _check_target(session: Session, target: Target) -> None:
    if target.type is TargetType.ROLE:
        validate_scope(target.scope)
        get_row(session, RoleRow, target.object_id, "role")
    else:
        get_row(session, GroupRow, target.object_id, "group")


def _open_mappings(session: Session, connector_id: str) -> list[ConnectorMappingRow]:
    return list(
        session.scalars(
            select(ConnectorMappingRow).where(
                ConnectorMappingRow.connector_id == connector_id,
                ConnectorMappingRow.ended_at.is_(None),
            )
        )
    )


def _mapping_info(row: ConnectorMappingRow, connector: str) -> MappingInfo:
    target = Target(TargetType(row.target_type), row.object_id, row.scope)
    return MappingInfo(
        row.id,
        row.connector_id,
        connector,
        target,
        row.downstream_object,
        row.created_at,
        row.ended_at,
    )


def add_mapping(
    rt: Pimlico, *, actor: Actor, connector: str, target: Target, downstream_object: str
) -> Written[MappingInfo]:
    """``target`` now drives ``downstream_object`` of ``connector``; whoever holds the target
    is provisioned there (and reconciliation manages the object)."""
    obj = check_text(downstream_object, "downstream_object", required=True)
    assert obj is not None
    with rt.writing(actor) as w:
        authorize(rt, actor, Perm.CONNECTORS_WRITE)
        s = w.session
        row = by_name(s, connector, lock=True)
        _check_target(s, target)
        for other in _open_mappings(s, row.id):
            if other.downstream_object == obj and (
                other.target_type,
                other.object_id,
                other.scope,
            ) == (target.type.value, target.object_id, target.scope):
                raise AlreadyExists(f"{target} already drives {obj!r} of {row.name}")
        mapping = ConnectorMappingRow(
            id=new_id(),
            connector_id=row.id,
            target_type=target.type.value,
            object_id=target.object_id,
            scope=target.scope,
            downstream_object=obj,
            created_at=w.at,
            created_by=actor.name,
        )
        s.add(mapping)
        s.flush()
        _record_mapping(w, "connector_mapping.create", mapping, row.name, before=None)
        if row.enabled:
            provisioning.settle(rt, w, mappings=[mapping])
    return Written(_mapping_info(mapping, row.name), w.revision)


def end_mapping(
    rt: Pimlico, *, actor: Actor, mapping_id: str, reason: str | None = None
) -> Written[MappingInfo]:
    """Stop managing the mapping's object (its members downstream are left as they are)."""
    reason = check_text(reason, "reason")
    with rt.writing(actor) as w:
        authorize(rt, actor, Perm.CONNECTORS_WRITE)
        mapping = get_row(w.session, ConnectorMappingRow, mapping_id, "mapping", lock=True)
        if mapping.ended_at is not None:
            raise Conflict(f"mapping {mapping_id} was already ended")
        connector = get_row(w.session, ConnectorRow, mapping.connector_id, "connector")
        before = _mapping_snapshot(mapping, connector.name)
        mapping.ended_at, mapping.ended_by, mapping.end_reason = w.at, actor.name, reason
        w.session.flush()
        _record_mapping(w, "connector_mapping.end", mapping, connector.name, before, reason)
    return Written(_mapping_info(mapping, connector.name), w.revision)


def list_mappings(
    rt: Pimlico, *, actor: Actor, connector: str | None = None, include_ended: bool = False
) -> list[MappingInfo]:
    authorize(rt, actor, Perm.CONNECTORS_READ)
    with rt.reading() as s:
        query = select(ConnectorMappingRow, ConnectorRow.name).join(
            ConnectorRow, ConnectorRow.id == ConnectorMappingRow.connector_id
        )
        if connector is not None:
            query = query.where(ConnectorRow.id == by_name(s, connector).id)
        if not include_ended:
            query = query.where(ConnectorMappingRow.ended_at.is_(None))
        query = query.order_by(ConnectorRow.name, ConnectorMappingRow.created_at)
        return [_mapping_info(m, name) for m, name in s.execute(query)]


def _mapping_snapshot(mapping: ConnectorMappingRow, connector: str) -> dict[str, object]:
    return {
        "connector": connector,
        "target_type": mapping.target_type,
        "object_id": mapping.object_id,
        "scope": mapping.scope,
        "downstream_object": mapping.downstream_object,
        "ended_at": None if mapping.ended_at is None else mapping.ended_at.isoformat(),
    }


def _record_mapping(
    w: WriteContext,
    action: str,
    mapping: ConnectorMappingRow,
    connector: str,
    before: dict[str, object] | None,
    reason: str | None = None,
) -> None:
    w.record(
        action=action,
        target_type="connector_mapping",
        target_id=mapping.id,
        before=before,
        after=_mapping_snapshot(mapping, connector),
        reason=reason,
    )
