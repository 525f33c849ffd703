"""Audit log use cases for entry points: verify the chain, list events, export them.

Thin: each opens one reading session, checks the caller holds ``pim.audit.read``, and calls
``pimlico.db.audit``, which owns the chain and the export formats. Nothing here writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TextIO

from sqlalchemy import select

from pimlico.db import audit
from pimlico.db.tables import PimStateRow
from pimlico.domain.audit import AuditRecord
from pimlico.domain.catalogue import Perm
from pimlico.errors import BrokenLink, FieldError, InvalidInput
from pimlico.services.decisions import authorize
from pimlico.services.runtime import Actor, Pimlico

ExportFormat = Literal["jsonl", "csv"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("jsonl", "csv")
MAX_LIST = 10_000
"""The most events one ``list_events`` call returns; export streams any number."""


@dataclass(frozen=True, slots=True)
class ChainCheck:
    """The outcome of verifying the log: how many events the head names, and the first break."""

    events: int
    broken: BrokenLink | None

    @property
    def intact(self) -> bool:
        return self.broken is None


def export_format(value: str) -> ExportFormat:
    """``value`` as an export format; ``InvalidInput`` naming the choices otherwise."""
    if value not in EXPORT_FORMATS:
        raise InvalidInput(
            "unknown export format",
            [
                FieldError(
                    "format", "Choice", f"must be one of {', '.join(EXPORT_FORMATS)}, not {value!r}"
                )
            ],
        )
    return value


def verify_log(rt: Pimlico, *, actor: Actor) -> ChainCheck:
    """Check the whole hash chain against the recorded head."""
    authorize(rt, actor, Perm.AUDIT_READ)
    with rt.reading() as s:
        head = s.execute(select(PimStateRow.audit_sequence).where(PimStateRow.id == 1))
        events = head.scalar_one_or_none() or 0
        return ChainCheck(events, audit.verify(s))


def list_events(
    rt: Pimlico,
    *,
    actor: Actor,
    by: str | None = None,
    action: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    after_sequence: int | None = None,
    before_sequence: int | None = None,
    newest_first: bool = False,
) -> list[AuditRecord]:
    """Events matching every filter given, oldest first unless ``newest_first`` (``by``: the
    acting principal; the cursor is ``after_sequence``, or ``before_sequence`` newest
    first)."""
    authorize(rt, actor, Perm.AUDIT_READ)
    if not 1 <= limit <= MAX_LIST:
        raise InvalidInput(
            "invalid limit",
            [FieldError("limit", "Range", f"must be between 1 and {MAX_LIST}, not {limit}")],
        )
    with rt.reading() as s:
        return audit.query(
            s,
            since=since,
            until=until,
            actor=by,
            action=action,
            target_type=target_type,
            target_id=target_id,
            limit=limit,
            after_sequence=after_sequence,
            before_sequence=before_sequence,
            newest_first=newest_first,
        )


def export_log(
    rt: Pimlico,
    out: TextIO,
    *,
    actor: Actor,
    format: str,
    since: datetime | None = None,
    until: datetime | None = None,
    by: str | None = None,
) -> int:
    """Write the matching events to ``out`` as JSON lines or CSV; returns how many."""
    authorize(rt, actor, Perm.AUDIT_READ)
    chosen = export_format(format)
    with rt.reading() as s:
        return audit.export(s, out, format=chosen, since=since, until=until, actor=by)
