"""Domain events from the writes that cause them to the consumers that follow them.

``publish`` puts an event in the outbox (an ``event.publish`` job, due at once) inside the
write that caused it: a rolled-back change publishes nothing; ``publish_many`` does so for
many events in one statement (the worker's batch handlers use it). The worker fans each
published event out to every consumer it was started with — one ``event.deliver`` job per
consumer, so a failing consumer is retried on its own without repeating the others, all the
deliveries of a batch of published events enqueued in one statement — and the delivery job
calls the consumer. With no consumers, the fan-out does nothing. Delivery is at least once;
consumers act idempotently. The jobs stay in the outbox once done, so published events can be
read back (``published``).

Events travel as JSON: ``{"type": <class name>, "data": {…}}`` (``encode``/``decode``, by
pydantic from the dataclasses of ``pimlico.domain.events`` and ``pimlico.domain.requests``),
published with the write's revision and their place in it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import select
from sqlalchemy.orm import Session

from pimlico.db.audit import WriteContext
from pimlico.db.tables import JobRow
from pimlico.domain import events, requests
from pimlico.domain.events import DomainEvent
from pimlico.jobs.outbox import NewJob, enqueue, enqueue_many
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
    which order events as they happened. (Added to the session, so a use case's events are
    inserted with its other rows, in one statement.)"""
    (payload,) = _payloads(w, [event])
    enqueue(w, kind=PUBLISH_JOB, payload=payload, due_at=w.at)


def publish_many(w: WriteContext, events: Sequence[DomainEvent]) -> None:
    """Publish ``events``, in this order, with the write ``w``, in one statement."""
    enqueue_many(w, [NewJob(PUBLISH_JOB, p, due_at=w.at) for p in _payloads(w, events)])


def _payloads(w: WriteContext, events: Sequence[DomainEvent]) -> list[dict[str, Any]]:
    index = w.session.info.get(_INDEX, 0)
    w.session.info[_INDEX] = index + len(events)
    return [
        {**encode(event), "revision": w.revision, "index": index + i}
        for i, event in enumerate(events)
    ]


def published(s: Session) -> list[DomainEvent]:
    """Every event published so far, in the order they happened, delivered or not."""
    rows = s.scalars(select(JobRow.payload).where(JobRow.kind == PUBLISH_JOB))
    ordered = sorted(rows, key=lambda payload: (payload["revision"], payload["index"]))
    return [decode(payload) for payload in ordered]


def handlers(consumers: Mapping[str, Consumer]) -> dict[str, Handler]:
    """The worker's handlers for events: fan out to ``consumers`` (by name), deliver."""

    def fan_out(rt: Pimlico, w: WriteContext, jobs: Sequence[Job]) -> None:
        deliveries = [
            NewJob(
                DELIVER_JOB,
                {"consumer": name, "event": dict(job.payload)},
                due_at=w.at,
                dedupe_key=f"{DELIVER_JOB}:{job.id}:{name}",
            )
            for job in jobs
            for name in consumers
        ]
        if deliveries:
            enqueue_many(w, deliveries)

    def deliver(rt: Pimlico, w: WriteContext, job: Job) -> None:
        consumer = consumers.get(str(job.payload["consumer"]))
        if consumer is None:
            raise LookupError(f"no consumer {job.payload['consumer']!r} in this worker")
        consumer(rt, w, decode(job.payload["event"]))

    return {PUBLISH_JOB: Batched(fan_out), DELIVER_JOB: deliver}
