"""The dispatcher's two short transactions: take due provisioning work, record what happened.

``claim`` marks up to ``batch`` due ``pending`` rows (of open mappings of enabled connectors)
as held by one dispatcher until a lease runs out, in a transaction of its own that takes no
revision (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so dispatchers of several processes take
disjoint work; on SQLite the statement holds the database's write lock, and the re-read after
the ``UPDATE`` keeps only what this dispatcher really holds). It returns what the downstream
calls need — the connector, the object, the principal's names — so the dispatcher calls out
with no transaction open.

``record`` writes every outcome in one ``rt.writing``: a row changes only if this dispatcher
still holds it *and* its generation is the one it worked on (a decision that changed the
desired state meanwhile leaves the row pending, due now, for the next pass); successes become
``provisioned`` / ``revoked`` (one audit event per object and direction); failures are retried
at ``base_delay * 2**(attempts-1)`` plus up to 10 % jitter, or, after
``provisioning_max_attempts`` or a non-retryable error, become ``failed`` with the downstream
error, an audit event and an administrator alert (``ProvisioningFailed``).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from pimlico.db.audit import WriteContext
from pimlico.db.tables import (
    ConnectorMappingRow,
    ConnectorRow,
    ProvisioningRow,
    ServiceAccountRow,
    UserRow,
)
from pimlico.jobs.outbox import enqueue
from pimlico.services.provisioning import FAILED, PENDING, PROVISIONED, REVOKED
from pimlico.services.runtime import Actor, Pimlico

log = logging.getLogger(__name__)

ALERT_JOB = "provisioning.alert"
"""The outbox job that carries a ``ProvisioningFailed`` alert to administrators."""
_ERROR_LENGTH = 4000
_random = random.Random()  # noqa: S311 (jitter, not a secret)


@dataclass(frozen=True, slots=True)
class Work:
    """One claimed row and what calling downstream for it needs."""

    id: str
    generation: int
    mapping_id: str
    connector_id: str
    obj: str
    principal_id: str
    present: bool
    attempts: int
    user_name: str
    email: str | None
    display_name: str | None
    identity: str | None = None
    """The identity downstream recorded when the access was last granted, if it was."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one piece of work: ``error`` is ``None`` on success."""

    work: Work
    identity: str | None = None
    error: str | None = None
    retryable: bool = True


@dataclass(frozen=True, slots=True)
class ProvisioningFailed:
    """Administrators' alert: downstream access could not be granted or revoked."""

    connector: str
    downstream_object: str
    principal_id: str
    present: bool
    attempts: int
    error: str
    at: datetime


def claim(rt: Pimlico, *, name: str, now: datetime, lease: timedelta, batch: int) -> list[Work]:
    """Hold up to ``batch`` due rows for ``lease``; what they need, due order."""
    postgres = rt.engine.dialect.name == "postgresql"
    until = now + lease
    due = (
        select(ProvisioningRow.id)
        .join(ConnectorMappingRow, ConnectorMappingRow.id == ProvisioningRow.mapping_id)
        .join(ConnectorRow, ConnectorRow.id == ConnectorMappingRow.connector_id)
        .where(
            ProvisioningRow.status == PENDING,
            ProvisioningRow.due_at <= now,
            (ProvisioningRow.claimed_until.is_(None)) | (ProvisioningRow.claimed_until <= now),
            ConnectorMappingRow.ended_at.is_(None),
            ConnectorRow.enabled.is_(True),
        )
        .order_by(ProvisioningRow.due_at)
        .limit(batch)
    )
    if postgres:
        due = due.with_for_update(of=ProvisioningRow, skip_locked=True)
    with rt.sessions() as s, s.begin():
        ids = list(s.scalars(due))
        if not ids:
            return []
        s.execute(
            update(ProvisioningRow)
            .where(
                ProvisioningRow.id.in_(ids),
                (ProvisioningRow.claimed_until.is_(None)) | (ProvisioningRow.claimed_until <= now),
            )
            .values(claimed_by=name, claimed_until=until)
        )
        rows = s.execute(
            select(
                ProvisioningRow,
                ConnectorMappingRow.connector_id,
                ConnectorMappingRow.downstream_object,
            )
            .join(ConnectorMappingRow, ConnectorMappingRow.id == ProvisioningRow.mapping_id)
            .where(
                ProvisioningRow.id.in_(ids),
                ProvisioningRow.claimed_by == name,
                ProvisioningRow.claimed_until == until,
            )
            .order_by(ProvisioningRow.due_at)
        )
        held = list(rows)
        names = principal_names(s, {r.principal_id for r, _, _ in held})
    work = []
    for r, connector_id, obj in held:
        user_name, email, display = names.get(r.principal_id, (r.principal_id, None, None))
        work.append(
            Work(
                r.id,
                r.generation,
                r.mapping_id,
                connector_id,
                obj,
                r.principal_id,
                r.present,
                r.attempts,
                user_name,
                email,
                display,
                r.identity,
            )
        )
    return work


def principal_names(s: Session, ids: set[str]) -> dict[str, tuple[str, str | None, str | None]]:
    """Each principal's user name, email and display name (a service account's name)."""
    found: dict[str, tuple[str, str | None, str | None]] = {}
    listed = sorted(ids)
    for start in range(0, len(listed), 1000):
        chunk = listed[start : start + 1000]
        users = select(UserRow.id, UserRow.user_name, UserRow.email, UserRow.display_name)
        for pid, user_name, email, display in s.execute(users.where(UserRow.id.in_(chunk))):
            found[pid] = (user_name, email, display)
        accounts = select(
            ServiceAccountRow.id, ServiceAccountRow.name, ServiceAccountRow.display_name
        )
        for pid, account, display in s.execute(accounts.where(ServiceAccountRow.id.in_(chunk))):
            found[pid] = (account, None, display)
    return found


def record(
    rt: Pimlico, *, name: str, outcomes: list[Outcome], connector_names: dict[str, str]
) -> None:
    """Write every outcome in one write (see the module docstring)."""
    if not outcomes:
        return
    settings = rt.settings
    with rt.writing(Actor.operator(f"dispatcher:{name}")) as w:
        by_id = {
            r.id: r
            for r in w.session.scalars(
                select(ProvisioningRow).where(ProvisioningRow.id.in_([o.work.id for o in outcomes]))
            )
        }
        done: dict[tuple[str, bool], list[Outcome]] = {}
        for outcome in outcomes:
            row = by_id.get(outcome.work.id)
            if row is None or row.claimed_by != name:
                continue  # taken over since (our lease ran out): theirs to record
            row.claimed_by = row.claimed_until = None
            row.updated_at = w.at
            if row.generation != outcome.work.generation or row.status != PENDING:
                row.due_at = w.at  # the desired state changed meanwhile: do it again now
                continue
            if outcome.error is None:
                row.status = PROVISIONED if row.present else REVOKED
                row.identity, row.last_error = outcome.identity, None
                row.attempts = outcome.work.attempts + 1
                done.setdefault((row.mapping_id, row.present), []).append(outcome)
                continue
            row.attempts = outcome.work.attempts + 1
            row.last_error = outcome.error[:_ERROR_LENGTH]
            if outcome.retryable and row.attempts < settings.provisioning_max_attempts:
                delay = settings.provisioning_base_delay * 2 ** (row.attempts - 1)
                jitter = 1 + _random.uniform(0, 0.1)
                row.due_at = w.at + timedelta(seconds=delay * jitter)
                continue
            row.status = FAILED
            _fail(w, row, outcome, connector_names.get(outcome.work.connector_id, "?"))
        for (mapping_id, present), succeeded in done.items():
            w.record(
                action="provisioning.grant" if present else "provisioning.revoke",
                target_type="connector_mapping",
                target_id=mapping_id,
                before=None,
                after={
                    "downstream_object": succeeded[0].work.obj,
                    "principals": sorted(o.work.principal_id for o in succeeded),
                    "identities": sorted(o.identity or "" for o in succeeded),
                },
            )


def _fail(w: WriteContext, row: ProvisioningRow, outcome: Outcome, connector: str) -> None:
    log.error(
        "provisioning failed for good: %s in %s of %s: %s",
        row.principal_id,
        outcome.work.obj,
        connector,
        outcome.error,
    )
    w.record(
        action="provisioning.fail",
        target_type="connector_mapping",
        target_id=row.mapping_id,
        before=None,
        after={
            "downstream_object": outcome.work.obj,
            "principal_id": row.principal_id,
            "present": row.present,
            "attempts": row.attempts,
            "error": row.last_error,
        },
    )
    alert = ProvisioningFailed(
        connector,
        outcome.work.obj,
        row.principal_id,
        row.present,
        row.attempts,
        row.last_error or "",
        w.at,
    )
    enqueue(
        w,
        kind=ALERT_JOB,
        payload={"type": "ProvisioningFailed", "data": encode_alert(alert)},
        due_at=w.at,
        dedupe_key=f"{ALERT_JOB}:{row.id}:{row.generation}",
    )


def encode_alert(alert: ProvisioningFailed) -> dict[str, Any]:
    return {
        "connector": alert.connector,
        "downstream_object": alert.downstream_object,
        "principal_id": alert.principal_id,
        "present": alert.present,
        "attempts": alert.attempts,
        "error": alert.error,
        "at": alert.at.isoformat(),
    }
