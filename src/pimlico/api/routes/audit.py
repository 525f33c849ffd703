"""The audit log: query it (filters, cursor paging), export it (JSON lines or CSV, streamed),
and verify its hash chain.

Each operation calls one ``services.audit`` use case, which checks the caller holds
``pim.audit.read``. The log is too long to sort in memory, so paging here is by sequence (the
log's own order): the cursor is the last sequence of the page. An export streams: the use
case writes into a bounded pipe from a thread of its own while the response sends what it
wrote, so memory stays flat however long the log; the first chunk is awaited before the
response starts, so a refusal is still a problem, not a broken stream.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import queue
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Literal, TextIO, cast

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from pimlico.api.deps import CallerDep, Page, PagingDep, RuntimeDep, decode_cursor, encode_cursor
from pimlico.clock import as_utc
from pimlico.domain.audit import AuditRecord
from pimlico.errors import FieldError, InvalidInput
from pimlico.services import audit

log = logging.getLogger(__name__)
router = APIRouter(tags=["audit"])

MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
_CHUNK = 64 * 1024
"""Characters the export gathers before handing them to the response."""
_CHUNKS_AHEAD = 16
"""Chunks the export may run ahead of a slow client before it waits for it."""

Actor = Annotated[
    str | None, Query(max_length=256, description="Who acted: a principal id, `system:cli`, …")
]
Since = Annotated[datetime | None, Query(description="RFC 3339; events at or after this instant.")]
Until = Annotated[datetime | None, Query(description="RFC 3339; events before this instant.")]


class AuditEventOut(BaseModel):
    """One audited change, as stored: ``before``/``after`` are the entity's snapshots, and
    ``hash`` chains the event to the one before it (``prev_hash``)."""

    sequence: int = Field(examples=[42])
    revision: int = Field(description="The store revision of the write that made it.")
    occurred_at: datetime
    actor: str | None = Field(examples=["system:cli"])
    action: str = Field(examples=["assignment.create"])
    target_type: str = Field(examples=["assignment"])
    target_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    reason: str | None
    request_id: str | None
    prev_hash: str
    hash: str

    @classmethod
    def of(cls, record: AuditRecord) -> AuditEventOut:
        return cls(
            sequence=record.sequence,
            revision=record.revision,
            occurred_at=record.occurred_at,
            actor=record.actor,
            action=record.action,
            target_type=record.target_type,
            target_id=record.target_id,
            before=None if record.before is None else json.loads(record.before),
            after=None if record.after is None else json.loads(record.after),
            reason=record.reason,
            request_id=record.request_id,
            prev_hash=record.prev_hash,
            hash=record.hash,
        )


class BrokenLinkOut(BaseModel):
    sequence: int = Field(description="The first event that does not verify.")
    reason: str = Field(examples=["event 7 was edited: its hash does not match its content"])
    details: dict[str, str]


class VerificationOut(BaseModel):
    """Whether the chain verifies up to the recorded head, and where it first breaks."""

    intact: bool
    events: int = Field(description="How many events the recorded head names.")
    broken: BrokenLinkOut | None = None


@router.get(
    "/audit/events",
    response_model=Page[AuditEventOut],
    summary="Audit events matching every filter given, oldest first",
)
def list_events(
    caller: CallerDep,
    rt: RuntimeDep,
    paging: PagingDep,
    actor: Actor = None,
    action: Annotated[str | None, Query(max_length=128, examples=["request.submit"])] = None,
    target_type: Annotated[str | None, Query(max_length=32, examples=["user"])] = None,
    target_id: Annotated[str | None, Query(max_length=256)] = None,
    since: Since = None,
    until: Until = None,
) -> Page[AuditEventOut]:
    after = None if paging.cursor is None else _sequence_of(paging.cursor)
    found = audit.list_events(
        rt,
        actor=caller,
        by=actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
        since=None if since is None else as_utc(since),
        until=None if until is None else as_utc(until),
        limit=paging.limit + 1,
        after_sequence=after,
    )
    chosen = found[: paging.limit]
    more = len(found) > paging.limit
    return Page[AuditEventOut](
        items=[AuditEventOut.of(r) for r in chosen],
        next_cursor=_cursor_of(chosen[-1].sequence) if more else None,
    )


@router.get(
    "/audit/export",
    response_class=StreamingResponse,
    summary="The matching events as JSON lines or CSV, every field, hashes included",
    responses={
        200: {
            "description": "JSON lines (lossless: re-verifiable) or CSV with a header row.",
            "content": {
                MEDIA_TYPES["jsonl"]: {"schema": {"type": "string"}},
                MEDIA_TYPES["csv"]: {"schema": {"type": "string"}},
            },
        }
    },
)
def export(
    caller: CallerDep,
    rt: RuntimeDep,
    format: Annotated[Literal["jsonl", "csv"], Query(description="`jsonl` or `csv`.")] = "jsonl",
    actor: Actor = None,
    since: Since = None,
    until: Until = None,
) -> StreamingResponse:
    pipe = _Pipe()

    def run() -> None:
        try:
            audit.export_log(
                rt,
                cast(TextIO, pipe),  # (a text stream; the export only writes to it)
                actor=caller,
                format=format,
                since=None if since is None else as_utc(since),
                until=None if until is None else as_utc(until),
                by=actor,
            )
        except _Gone:
            return
        except BaseException as error:
            pipe.fail(error)
        else:
            pipe.finish()

    threading.Thread(target=run, name="audit-export", daemon=True).start()
    first = pipe.first()  # a refusal raises here, before any byte is sent
    return StreamingResponse(
        pipe.rest(first),
        media_type=MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="pimlico-audit.{format}"'},
    )


@router.get(
    "/audit/verify",
    response_model=VerificationOut,
    response_model_exclude_none=True,
    summary="Verify the whole hash chain; the first edited, deleted or reordered event",
)
def verify(caller: CallerDep, rt: RuntimeDep) -> VerificationOut:
    checked = audit.verify_log(rt, actor=caller)
    broken = checked.broken
    return VerificationOut(
        intact=checked.intact,
        events=checked.events,
        broken=None
        if broken is None
        else BrokenLinkOut(sequence=broken.sequence, reason=broken.reason, details=broken.details),
    )


# -- paging by sequence -----------------------------------------------------------------------


def _cursor_of(sequence: int) -> str:
    return encode_cursor([sequence])


def _sequence_of(cursor: str) -> int:
    value = decode_cursor(cursor)
    if not (len(value) == 1 and type(value[0]) is int):
        raise InvalidInput(
            "cursor: not a cursor of this list",
            [FieldError("cursor", "cursor", "pass back a next_cursor of this list unchanged")],
        )
    sequence: int = value[0]
    return sequence


# -- streaming an export -----------------------------------------------------------------------


class _Gone(Exception):
    """The client went away: the export stops writing."""


_DONE = object()


class _Pipe(io.TextIOBase):
    """A text stream the export writes and the response reads, in chunks, through a bounded
    queue: the writer waits when the reader is ``_CHUNKS_AHEAD`` chunks behind, and fails
    (``_Gone``) once the reader has stopped."""

    def __init__(self) -> None:
        self._chunks: queue.Queue[object] = queue.Queue(maxsize=_CHUNKS_AHEAD)
        self._buffer: list[str] = []
        self._size = 0
        self._gone = threading.Event()

    def write(self, text: str) -> int:
        self._buffer.append(text)
        self._size += len(text)
        if self._size >= _CHUNK:
            self._send()
        return len(text)

    def finish(self) -> None:
        with contextlib.suppress(_Gone):
            self._send()
            self._put(_DONE)

    def fail(self, error: BaseException) -> None:
        with contextlib.suppress(_Gone):
            self._put(error)

    def first(self) -> object:
        """The first chunk (or the end); the export's error if it failed before either."""
        item = self._chunks.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def rest(self, first: object) -> Iterator[bytes]:
        item = first
        try:
            while item is not _DONE:
                if isinstance(item, BaseException):
                    # The response has started: all a client can be told is that the stream
                    # broke off (no final chunk), and the log says why.
                    log.error("audit export failed mid-stream", exc_info=item)
                    raise item
                assert isinstance(item, str)
                yield item.encode()
                item = self._chunks.get()
        finally:
            self._gone.set()
            while not self._chunks.empty():  # unblock a writer waiting for room
                self._chunks.get_nowait()

    def _send(self) -> None:
        if self._buffer:
            text = "".join(self._buffer)
            self._buffer, self._size = [], 0
            self._put(text)

    def _put(self, item: object) -> None:
        while not self._gone.is_set():
            try:
                self._chunks.put(item, timeout=0.5)
                return
            except queue.Full:
                continue
        raise _Gone
