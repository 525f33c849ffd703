"""Mapping use cases: which Pimlico target drives which downstream object of a connector.

A mapping ties a target (a group's membership or ownership, or a role at a scope) to one
object of a connector (a PostgreSQL role, an LDAP group, …). Adding one records at once what
must be true downstream for everyone who holds the target (``provisioning.settle``); ending
one stops managing the object (its members downstream are left as they are). Mappings are
ended, never deleted; every change is audited and guarded by ``pim.connectors.*``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from pimlico.db.audit import WriteContext
from pimlico.db.tables import ConnectorMappingRow, ConnectorRow, GroupRow, RoleRow
from pimlico.domain.catalogue import Perm
from pimlico.domain.model import Target, TargetType, new_id
from pimlico.domain.scopes import validate_scope
from pimlico.errors import AlreadyExists, Conflict
from pimlico.services import provisioning
from pimlico.services.connectors import by_name, open_mappings
from pimlico.services.decisions import authorize
from pimlico.services.lookups import check_text, get_row
from pimlico.services.runtime import Actor, Pimlico, Written


@dataclass(frozen=True, slots=True)
class MappingInfo:
    id: str
    connector_id: str
    connector: str
    target: Target
    downstream_object: str
    created_at: datetime
    ended_at: datetime | None


def _check_target(session: Session, target: Target) -> None:
    if target.type is TargetType.ROLE:
        validate_scope(target.scope)
        get_row(session, RoleRow, target.object_id, "role")
    else:
        get_row(session, GroupRow, target.object_id, "group")


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
        for other in open_mappings(s, row.id):
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
