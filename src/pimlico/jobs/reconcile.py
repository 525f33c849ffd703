"""Reconciliation: make every managed downstream object match what is in force now.

For each open mapping of an enabled connector, the desired identities are those of the
principals who hold the mapped target now (the decision index: any assignment, static
membership or nested group), ``resolve``\\ d by the connector; the current ones come from
``list_current``. What is missing is granted and what Pimlico does not back is revoked — in
``authoritative`` mode; in ``report_only`` mode, with ``dry_run``, or for a connector that
cannot list its members (``list_current`` is ``None``), nothing is changed and the
differences are only reported.

Like the dispatcher, it calls downstream systems with no store transaction open (reads first,
then the calls, then one write), and every correction — made or only reported — is written to
the audit log in that one write (``reconcile.grant``, ``reconcile.revoke``,
``reconcile.drift`` for a reported one; nothing at all on a dry run). Runs at the
dispatcher's start, every ``reconcile_interval``, and on demand (``pimlico reconcile``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import select

from pimlico.connectors import registry
from pimlico.connectors.base import Connector, ConnectorError, Member
from pimlico.db.tables import ConnectorMappingRow, ConnectorRow, ProvisioningRow
from pimlico.domain.catalogue import Perm
from pimlico.services import connectors as connector_config
from pimlico.services.decisions import authorize
from pimlico.services.provisioning import FAILED, PROVISIONED
from pimlico.services.provisioning_work import principal_names
from pimlico.services.runtime import Actor, Pimlico

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Correction:
    """One difference found: ``action`` ``grant`` / ``revoke`` (``applied`` if it was made),
    ``unlisted`` (the connector cannot list members) or ``error`` (``detail`` says which)."""

    connector: str
    mapping_id: str
    downstream_object: str
    action: str
    identity: str | None = None
    principal_id: str | None = None
    applied: bool = False
    detail: str | None = None


def reconcile(
    rt: Pimlico, *, actor: Actor, dry_run: bool = False, connector: str | None = None
) -> list[Correction]:
    """Reconcile every managed object (of ``connector`` only, if named); the corrections."""
    authorize(rt, actor, Perm.CONNECTORS_READ if dry_run else Perm.CONNECTORS_WRITE)
    with rt.reading() as s:
        query = (
            select(ConnectorMappingRow, ConnectorRow)
            .join(ConnectorRow, ConnectorRow.id == ConnectorMappingRow.connector_id)
            .where(ConnectorMappingRow.ended_at.is_(None), ConnectorRow.enabled.is_(True))
            .order_by(ConnectorRow.name, ConnectorMappingRow.created_at)
        )
        if connector is not None:
            query = query.where(ConnectorRow.id == connector_config.by_name(s, connector).id)
        pairs = list(s.execute(query))
        s.expunge_all()
    by_connector: dict[str, list[ConnectorMappingRow]] = defaultdict(list)
    rows = {}
    for m, c in pairs:
        by_connector[c.id].append(m)
        rows[c.id] = c
    found: list[Correction] = []
    for connector_id, mappings in by_connector.items():
        row = rows[connector_id]
        apply = not dry_run and row.mode == connector_config.AUTHORITATIVE
        try:
            built = registry.build(row.kind, row.config, connector_config.open_secret(rt, row))
        except Exception as error:
            found += [_error(row.name, m, error) for m in mappings]
            continue
        try:
            for m in mappings:
                found += _one(rt, built, row.name, m, apply=apply)
        finally:
            built.close()
    if not dry_run and found:
        _audit(rt, actor, found)
    return found


def _desired(rt: Pimlico, built: Connector, m: ConnectorMappingRow) -> dict[str, str]:
    """Identity → principal of those who hold ``m``'s target now."""
    index = rt.decisions.current()
    holders = index.holders(m.target_type, m.object_id, m.scope, rt.clock.now())
    with rt.reading() as s:
        names = principal_names(s, holders)
    members = [Member(p, *names.get(p, (p, None, None))) for p in sorted(holders)]
    return {i: p for p, i in built.resolve(members).items() if i is not None}


def _one(
    rt: Pimlico, built: Connector, connector: str, m: ConnectorMappingRow, *, apply: bool
) -> list[Correction]:
    """Reconcile one object. The current members are listed *before* the desired ones are
    worked out, so a grant the dispatcher makes meanwhile is seen as desired, never revoked
    as drift; and what was granted is checked again afterwards, so access that ended while
    this ran is not left granted (it is revoked again at once)."""
    obj = m.downstream_object
    try:
        current = built.list_current(obj)
        if current is None:
            return [Correction(connector, m.id, obj, "unlisted", detail="cannot list members")]
        desired = _desired(rt, built, m)
        missing = sorted(set(desired) - current)
        extra = sorted(current - set(desired))
        if apply and missing:
            built.grant(obj, missing)
            stale = sorted(set(missing) - set(_desired(rt, built, m)))
            if stale:
                built.revoke(obj, stale)
                missing = [i for i in missing if i not in stale]
        if apply and extra:
            built.revoke(obj, extra)
    except ConnectorError as error:
        return [_error(connector, m, error)]
    return [
        *(Correction(connector, m.id, obj, "grant", i, desired[i], apply) for i in missing),
        *(Correction(connector, m.id, obj, "revoke", i, None, apply) for i in extra),
    ]


def _error(connector: str, m: ConnectorMappingRow, error: Exception) -> Correction:
    log.warning("reconcile of %s in %s failed: %s", m.downstream_object, connector, error)
    return Correction(connector, m.id, m.downstream_object, "error", detail=str(error))


def _audit(rt: Pimlico, actor: Actor, found: list[Correction]) -> None:
    """Every correction in the audit log, one write; rows that had ``failed`` and are now
    right downstream are marked done."""
    with rt.writing(actor) as w:
        for c in found:
            if c.action in ("grant", "revoke"):
                action = f"reconcile.{c.action}" if c.applied else "reconcile.drift"
            else:
                action = f"reconcile.{c.action}"
            w.record(
                action=action,
                target_type="connector_mapping",
                target_id=c.mapping_id,
                before=None,
                after={
                    "connector": c.connector,
                    "downstream_object": c.downstream_object,
                    "change": c.action,
                    "identity": c.identity,
                    "principal_id": c.principal_id,
                    "applied": c.applied,
                    "detail": c.detail,
                },
            )
        healed = [c for c in found if c.applied and c.action == "grant" and c.principal_id]
        for c in healed:
            row = w.session.scalars(
                select(ProvisioningRow).where(
                    ProvisioningRow.mapping_id == c.mapping_id,
                    ProvisioningRow.principal_id == c.principal_id,
                    ProvisioningRow.status == FAILED,
                    ProvisioningRow.present.is_(True),
                )
            ).first()
            if row is not None:
                row.status, row.identity, row.last_error = PROVISIONED, c.identity, None
                row.updated_at = w.at
