"""The audit chain: canonical JSON, the hash of one event, and verification of a chain.

Every audited change is an ``AuditRecord`` whose ``hash`` is the SHA-256 of its own fields and
the hash of the event before it, so editing, deleting or reordering any event breaks the chain
from that event on. The first event links to ``GENESIS_HASH``.

This module is pure (standard library and ``pimlico.errors`` only). It does not read or write
the store: ``pimlico.db.audit`` does, and feeds records here to be checked.

What the chain does not do: the hash is unkeyed, so someone who can rewrite the whole table and
the head in ``pim_state`` can forge a consistent chain. Detecting that needs the head to be
kept somewhere else as well (an exported head, a log shipped off the machine).
"""

from __future__ import annotations

import enum
import functools
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from uuid import UUID

from pimlico.errors import BrokenLink

GENESIS_HASH = "0" * 64
"""The hash the first event links to: the head of an empty chain."""


@functools.lru_cache(maxsize=4096)
def format_instant(at: datetime) -> str:
    """RFC 3339 in UTC with microseconds and ``Z``: ``2026-01-01T08:00:00.000000Z``.

    Remembered: a write formats its own instant, and its assignments' start and end, in
    every event it records. (Equal instants format alike, whatever their zone.)"""
    if at.tzinfo is None:
        raise ValueError("naive datetime in audit data: instants must be aware (UTC)")
    utc = at.astimezone(UTC)
    if utc.year < 1000:  # isoformat pads the year to four digits, strftime does not
        return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _encode(value: object) -> object:
    if isinstance(value, datetime):
        return format_instant(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not allowed in audit data")


def canonical_json(value: object) -> str:
    """The one JSON text of ``value``: sorted keys, no spaces, UTF-8 kept, stable across runs.

    Datetimes become RFC 3339 UTC with microseconds and ``Z``; enums their value; tuples
    lists; dates ISO 8601; UUIDs their text. NaN and infinities are refused (not JSON).
    """
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_encode,
    )


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audited change as it is stored. ``before``/``after`` are canonical JSON text."""

    sequence: int
    revision: int
    occurred_at: datetime
    actor: str | None
    action: str
    target_type: str
    target_id: str
    before: str | None
    after: str | None
    reason: str | None
    request_id: str | None
    prev_hash: str
    hash: str

    def computed_hash(self) -> str:
        """The hash this record's content and ``prev_hash`` call for."""
        return _hash_of(self, sequence=self.sequence, prev_hash=self.prev_hash)

    def as_dict(self) -> dict[str, object]:
        """Every field, ``before``/``after`` parsed back into objects (for exports)."""
        return {
            "sequence": self.sequence,
            "revision": self.revision,
            "occurred_at": format_instant(self.occurred_at),
            "actor": self.actor,
            "action": self.action,
            "target_type": self.target_type,
            "target_id": self.target_id,
            "before": None if self.before is None else json.loads(self.before),
            "after": None if self.after is None else json.loads(self.after),
            "reason": self.reason,
            "request_id": self.request_id,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


def compute_hash(
    prev_hash: str,
    *,
    sequence: int,
    revision: int,
    occurred_at: datetime,
    actor: str | None,
    action: str,
    target_type: str,
    target_id: str,
    before: str | None,
    after: str | None,
    reason: str | None,
    request_id: str | None,
) -> str:
    """SHA-256 (hex) of the canonical JSON of every field of an event and ``prev_hash``."""
    content = {
        "prev_hash": prev_hash,
        "sequence": sequence,
        "revision": revision,
        "occurred_at": format_instant(occurred_at),
        "actor": actor,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "before": before,
        "after": after,
        "reason": reason,
        "request_id": request_id,
    }
    return hashlib.sha256(canonical_json(content).encode("utf-8")).hexdigest()


def _hash_of(record: AuditRecord, *, sequence: int, prev_hash: str) -> str:
    """The hash ``record``'s content would have at position ``sequence`` after ``prev_hash``."""
    return compute_hash(
        prev_hash,
        sequence=sequence,
        revision=record.revision,
        occurred_at=record.occurred_at,
        actor=record.actor,
        action=record.action,
        target_type=record.target_type,
        target_id=record.target_id,
        before=record.before,
        after=record.after,
        reason=record.reason,
        request_id=record.request_id,
    )


def verify_chain(
    records: Iterable[AuditRecord],
    start_hash: str = GENESIS_HASH,
    start_sequence: int = 1,
    *,
    expected_head: tuple[int, str] | None = None,
) -> BrokenLink | None:
    """Check a chain given in sequence order; name the first broken event, or ``None``.

    ``start_hash``/``start_sequence`` let a caller check a chain from a known good point on.
    ``expected_head`` is ``(last sequence, last hash)`` as recorded elsewhere (``pim_state``):
    without it a deleted last event cannot be told from a chain that simply ends there.
    Records are consumed one at a time (with one record of look-ahead), so a stream of any
    length is checked in constant memory.
    """
    expected_sequence = start_sequence
    prev_hash = start_hash
    stream: Iterator[AuditRecord] = iter(records)
    current = next(stream, None)
    while current is not None:
        following = next(stream, None)
        broken = _check(current, following, expected_sequence, prev_hash)
        if broken is not None:
            return broken
        expected_sequence += 1
        prev_hash = current.hash
        current = following
    if expected_head is None:
        return None
    return _check_head(expected_sequence - 1, prev_hash, expected_head)


def _check(
    record: AuditRecord,
    following: AuditRecord | None,
    expected_sequence: int,
    prev_hash: str,
) -> BrokenLink | None:
    details = {"expected_sequence": str(expected_sequence), "expected_prev_hash": prev_hash}
    ahead = record.sequence > expected_sequence
    if record.sequence < expected_sequence or (
        ahead and following is not None and following.sequence == expected_sequence
    ):
        return BrokenLink(
            expected_sequence,
            f"out of order: sequence {record.sequence} where {expected_sequence} was expected",
            details,
        )
    if ahead:
        missing = (
            f"sequence {expected_sequence} is missing (deleted)"
            if record.sequence == expected_sequence + 1
            else f"sequences {expected_sequence} to {record.sequence - 1} are missing (deleted)"
        )
        return BrokenLink(expected_sequence, missing, details)
    links = record.prev_hash == prev_hash
    matches = record.computed_hash() == record.hash
    if links and matches:
        return None
    if following is not None and _swapped(record, following, prev_hash):
        return BrokenLink(
            record.sequence,
            f"out of order: the content of event {following.sequence} belongs here (swapped)",
            details,
        )
    if not links:
        return BrokenLink(
            record.sequence,
            "does not link to the event before it (an event was removed, replaced or reordered)",
            {**details, "prev_hash": record.prev_hash},
        )
    return BrokenLink(
        record.sequence,
        "content does not match its hash (edited)",
        {**details, "hash": record.hash, "computed_hash": record.computed_hash()},
    )


def _swapped(record: AuditRecord, following: AuditRecord, prev_hash: str) -> bool:
    """Whether the next event's content, put at this position, is what was hashed here.

    Catches two neighbours whose rows were exchanged (the next one's content and chain fields
    now sit here) and whose content alone was exchanged (the chain fields stayed put).
    """
    here = _hash_of(following, sequence=record.sequence, prev_hash=prev_hash)
    return here in (record.hash, following.hash)


def _check_head(
    last_sequence: int, last_hash: str, expected_head: tuple[int, str]
) -> BrokenLink | None:
    head_sequence, head_hash = expected_head
    details = {"head_sequence": str(head_sequence), "head_hash": head_hash}
    if last_sequence < head_sequence:
        first_missing = last_sequence + 1
        reason = (
            f"sequence {first_missing} is missing (deleted)"
            if first_missing == head_sequence
            else f"sequences {first_missing} to {head_sequence} are missing (deleted)"
        )
        return BrokenLink(first_missing, f"{reason}: the chain ends before its head", details)
    if last_sequence > head_sequence:
        return BrokenLink(
            head_sequence + 1,
            f"event {head_sequence + 1} is beyond the recorded head (inserted)",
            details,
        )
    if last_hash != head_hash:
        return BrokenLink(
            last_sequence,
            "the last event does not match the recorded head hash (replaced)",
            {**details, "hash": last_hash},
        )
    return None
