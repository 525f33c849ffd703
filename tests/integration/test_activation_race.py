"""Fifty simultaneous self-activations of one role by one user, on PostgreSQL: the write lock
lets exactly one through, with or without an idempotency key.

The threads share one runtime, as a server's request threads do, and start together on a
barrier; each runs the whole use case (its reads, the write, the index follow). Fifty is more
than the runtime's pool holds (5 + 10): the writers queued behind the lock hold all of it, so
these tests also show that the write holding the lock never needs another of its connections
(the decision index reads through its own). SQLite is left out: its writers queue on the
database file, so the race these tests are about is PostgreSQL's row lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from pimlico.db import audit
from pimlico.db.audit import current_revision
from pimlico.db.tables import AssignmentRow, RequestRow
from pimlico.domain.catalogue import SECURITY_READER
from pimlico.domain.model import AssignmentKind, Target, TargetType
from pimlico.domain.requests import RequestAction, RequestStatus, Schedule
from pimlico.errors import RoleAssignmentExists
from pimlico.services import assignments, decisions, requests, role_settings
from pimlico.services.request_records import RequestView
from pimlico.services.runtime import Actor, Pimlico, Written
from tests.integration.world import OPERATOR, user

pytestmark = pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)

THREADS = 50
READER = Target(TargetType.ROLE, SECURITY_READER.id, "/")


def eligible_alex(rt: Pimlico) -> Actor:
    """Alex, eligible for Security Reader, whose activation asks for nothing else."""
    alex = user(rt, "alex")
    assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ELIGIBLE,
        principal=alex,
        target=READER,
        duration=timedelta(days=90),
    )
    role_settings.update_policy(
        rt,
        actor=OPERATOR,
        target_type=READER.type,
        object_id=READER.object_id,
        changes={"activation": {"require_mfa": False, "require_justification": False}},
    )
    return Actor.principal(alex.id)


def race(call: Callable[[], Written[RequestView]]) -> tuple[list[str], list[Exception]]:
    """``call`` on ``THREADS`` threads released together: the request ids it returned, and
    whatever it raised."""
    barrier = threading.Barrier(THREADS)
    lock = threading.Lock()
    ids: list[str] = []
    errors: list[Exception] = []

    def run() -> None:
        barrier.wait()
        try:
            request_id = call().value.request.id
        except Exception as error:  # every outcome is counted; the test says which are right
            with lock:
                errors.append(error)
        else:
            with lock:
                ids.append(request_id)

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a submit never returned"
    return ids, errors


def activation(
    rt: Pimlico, alex: Actor, key: str | None = None
) -> Callable[[], Written[RequestView]]:
    def submit() -> Written[RequestView]:
        return requests.submit(
            rt,
            actor=alex,
            action=RequestAction.SELF_ACTIVATE,
            kind=AssignmentKind.ACTIVE,
            target=READER,
            schedule=Schedule(duration=timedelta(hours=1)),
            idempotency_key=key,
        )

    return submit


def stored(rt: Pimlico, alex: Actor) -> tuple[int, list[str], int]:
    """Alex's current active Security Reader assignments, the statuses of his activation
    requests, and the store's revision; and the audit chain must verify."""
    with rt.reading() as s:
        active = s.scalar(
            select(func.count())
            .select_from(AssignmentRow)
            .where(
                AssignmentRow.kind == AssignmentKind.ACTIVE.value,
                AssignmentRow.principal_id == alex.name,
                AssignmentRow.target_id == READER.object_id,
                AssignmentRow.ended_at.is_(None),
            )
        )
        statuses = list(
            s.scalars(
                select(RequestRow.status).where(
                    RequestRow.action == RequestAction.SELF_ACTIVATE.value,
                    RequestRow.requested_by == alex.name,
                )
            )
        )
        assert audit.verify(s) is None
        return active or 0, statuses, current_revision(s)


def test_fifty_simultaneous_activations_make_one_assignment_and_forty_nine_refusals(
    rt: Pimlico,
) -> None:
    alex = eligible_alex(rt)
    with rt.reading() as s:
        before = current_revision(s)

    ids, errors = race(activation(rt, alex))

    assert len(ids) == 1
    assert [type(e) for e in errors] == [RoleAssignmentExists] * (THREADS - 1)
    active, statuses, revision = stored(rt, alex)
    assert active == 1
    assert statuses == [RequestStatus.PROVISIONED.value]
    assert revision == before + 1, "the refused writes rolled back without using a revision"
    assert decisions.check(
        rt,
        actor=None,
        principal_id=alex.name,
        permission="security.read",
        scope="/",
        at_least_revision=revision,
    ).allowed


def test_fifty_simultaneous_activations_with_one_idempotency_key_return_one_request(
    rt: Pimlico,
) -> None:
    alex = eligible_alex(rt)
    with rt.reading() as s:
        before = current_revision(s)

    ids, errors = race(activation(rt, alex, key="activate-once"))

    assert errors == []
    assert len(ids) == THREADS
    assert len(set(ids)) == 1
    active, statuses, revision = stored(rt, alex)
    assert active == 1
    assert statuses == [RequestStatus.PROVISIONED.value]
    assert revision == before + 1
