"""Connector configuration use cases: connectors and their mappings, audited, one write each.

A connector is a unique name, a kind (``ldap``, ``postgres``, ``scim``, ``webhook``), its
configuration (validated by the kind's own model, ``connectors.registry``), a secret (sealed
with Fernet under the settings' key, bound to the connector's id; never returned, never in
the audit log: the audit records only whether there is one), a mode (``authoritative`` or
``report_only``) and whether it is enabled. Connectors are disabled, never deleted; their
mappings are ``connector_mappings``'.

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
from pimlico.db.tables import ConnectorMappingRow, ConnectorRow
from pimlico.domain.catalogue import Perm
from pimlico.domain.model import new_id
from pimlico.errors import (
    AlreadyExists,
    FieldError,
    InvalidInput,
    NotFound,
    SecretKeyNotConfigured,
)
from pimlico.services import provisioning
from pimlico.services.decisions import authorize
from pimlico.services.lookups import check_name, check_text
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
            provisioning.settle(rt, w, mappings=open_mappings(w.session, row.id))
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


def open_mappings(session: Session, connector_id: str) -> list[ConnectorMappingRow]:
    """The connector's mappings that have not ended."""
    return list(
        session.scalars(
            select(ConnectorMappingRow).where(
                ConnectorMappingRow.connector_id == connector_id,
                ConnectorMappingRow.ended_at.is_(None),
            )
        )
    )
