"""Domain events from the writes that cause them to the consumers that follow them.

``publish`` puts an event in the outbox (an ``event.publish`` job, due at once) inside the
write that caused it: a rolled-back change publishes nothing; ``publish_many`` does so for
many events in one statement, and ``publish_all`` for events made as they are published (the
worker's batch handlers use it, so that on PostgreSQL the database stores the first while the
handler makes the next). The worker fans each published event out to every consumer it was
started with — one ``event.deliver`` job per consumer, so a failing consumer is retried on its
own without repeating the others, all the deliveries of a batch of published events enqueued
in one statement — and the delivery job calls the consumer. With no consumers, the fan-out
does nothing. Delivery is at least once; consumers act idempotently. The jobs stay in the
outbox once done, so published events can be read back (``published``).

Events travel as JSON: ``{"type": <class name>, "data": {…}}`` (``encode``/``decode``, by
pydantic from the dataclasses of ``pimlico.domain.events`` and ``pimlico.domain.requests``),
published with the write's revision and their place in it. In bulk, each event is serialised
once, by pydantic straight to JSON text, and a fan-out passes a published event's text on to
its deliveries as it was stored, without decoding it: when a shift ends, ten thousand events
are published at once, and building each as a dict to dump it again cost more than its insert.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import select
from sqlalchemy.orm import Session

from pimlico.db.audit import WriteContext
from pimlico.db.tables import JobRow
from pimlico.domain import events, requests
from pimlico.domain.events import DomainEvent
from pimlico.jobs.claims import JSONPayload
from pimlico.jobs.outbox import (
    EncodedJob,
    encode_payload,
    enqueue,
    enqueue_encoded,
    enqueue_streamed,
)
from pimlico.jobs.worker import Batched, Handler, Job
from pimlico.services.runtime import Pimlico

PUBLISH_JOB = "event.publish"
_INDEX = "pimlico.events.index"
DELIVER_JOB = "event.deliver"

_TYPES: tuple[type[Any], ...] = (
    requests.RequestSubmitted,
    requests.RequestApproved,
    requests.RequestDenied,
    requests.RequestCanceled,
    requests.RequestExpired,
    requests.ApprovalStageCompleted,
    requests.ApprovalEscalated,
    events.AssignmentCreated,
    events.AssignmentActivated,
    events.AssignmentExpiringSoon,
    events.AssignmentEnded,
)
_ADAPTERS: dict[str, TypeAdapter[Any]] = {t.__name__: TypeAdapter(t) for t in _TYPES}
_SERIALIZERS = {name: adapter.serializer for name, adapter in _ADAPTERS.items()}
"""Each type's serialiser, called directly in bulk: ``TypeAdapter.dump_json`` passes a dozen
keyword arguments on to it, which took a third of the time of serialising an event."""

Consumer = Callable[[Pimlico, WriteContext, DomainEvent], None]
"""Follows one event inside the delivery job's write (whose changes commit with it)."""


def encode(event: DomainEvent) -> dict[str, Any]:
    name = type(event).__name__
    return {"type": name, "data": _ADAPTERS[name].dump_python(event, mode="json")}


def decode(payload: Mapping[str, Any]) -> DomainEvent:
    adapter = _ADAPTERS.get(str(payload.get("type")))
    if adapter is None:
        raise ValueError(f"unknown event type {payload.get('type')!r}")
    event: DomainEvent = adapter.validate_python(payload["data"])
    return event


def publish(w: WriteContext, event: DomainEvent) -> None:
    """Publish ``event`` with the write ``w``: delivered after it commits, never if not.

    The payload carries the write's ``revision`` and the event's ``index`` within the write,
    which order events as they happened. (Enqueued one by one, so a use case's events are
    inserted with its other jobs, in one statement: see ``outbox.enqueue``.)"""
    payload = {**encode(event), "revision": w.revision, "index": _indices(w, 1)}
    enqueue(w, kind=PUBLISH_JOB, payload=payload, due_at=w.at)


def publish_many(w: WriteContext, events: Sequence[DomainEvent]) -> None:
    """Publish ``events``, in this order, with the write ``w``, in one statement."""
    publish_all(w, events)


def publish_all(w: WriteContext, events: Iterable[DomainEvent]) -> None:
    """``publish_many`` for events made as they are published (a generator): each is
    serialised as it comes and, on PostgreSQL, sent to the database, which stores it while
    the caller makes the next."""
    first = w.session.info.get(_INDEX, 0)
    count = enqueue_streamed(
        w,
        (
            EncodedJob(PUBLISH_JOB, _encoded(event, w.revision, first + i), due_at=w.at)
            for i, event in enumerate(events)
        ),
    )
    w.session.info[_INDEX] = first + count


def _indices(w: WriteContext, count: int) -> int:
    """The index of the first of ``count`` events published next in ``w``."""
    index: int = w.session.info.get(_INDEX, 0)
    w.session.info[_INDEX] = index + count
    return index


def _encoded(event: DomainEvent, revision: int, index: int) -> str:
    """``encode(event)`` with its ``revision`` and ``index``, as JSON text (what ``publish``
    stores, serialised once)."""
    name = type(event).__name__
    data = _SERIALIZERS[name].to_json(event).decode()
    return f'{{"type":"{name}","data":{data},"revision":{revision},"index":{index}}}'


def published(s: Session) -> list[DomainEvent]:
    """Every event published so far, in the order they happened, delivered or not."""
    rows = s.scalars(select(JobRow.payload).where(JobRow.kind == PUBLISH_JOB))
    ordered = sorted(rows, key=lambda payload: (payload["revision"], payload["index"]))
    return [decode(payload) for payload in ordered]


def handlers(consumers: Mapping[str, Consumer]) -> dict[str, Handler]:
    """The worker's handlers for events: fan out to ``consumers`` (by name), deliver."""

    def fan_out(rt: Pimlico, w: WriteContext, jobs: Sequence[Job]) -> None:
        if not consumers:
            return
        names = {name: json.dumps(name) for name in consumers}
        deliveries = [
            EncodedJob(
                DELIVER_JOB,
                f'{{"consumer":{quoted},"event":{_text(job)}}}',
                due_at=w.at,
                dedupe_key=f"{DELIVER_JOB}:{job.id}:{name}",
            )
            for job in jobs
            for name, quoted in names.items()
        ]
        enqueue_encoded(w, deliveries)

    def deliver(rt: Pimlico, w: WriteContext, job: Job) -> None:
        consumer = consumers.get(str(job.payload["consumer"]))
        if consumer is None:
            raise LookupError(f"no consumer {job.payload['consumer']!r} in this worker")
        consumer(rt, w, decode(job.payload["event"]))

    return {PUBLISH_JOB: Batched(fan_out), DELIVER_JOB: deliver}


def _text(job: Job) -> str:
    """The job's payload as JSON text: as it was stored when the worker read it so."""
    if isinstance(job.payload, JSONPayload):
        return job.payload.text
    return encode_payload(job.payload)
