"""Self-activations submitted together share one write (group commit), on SQLite and
PostgreSQL; each is judged, stored and audited exactly as if it had been submitted alone."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import pyotp
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from pimlico.clock import FixedClock
from pimlico.db import audit
from pimlico.db.tables import AssignmentRow, AuditEventRow, PimStateRow
from pimlico.domain.catalogue import SECURITY_READER
from pimlico.domain.decisions import Access
from pimlico.domain.model import AssignmentKind, PrincipalRef, Target, TargetType
from pimlico.domain.requests import RequestAction, RequestStatus, Schedule
from pimlico.errors import PolicyViolation, RoleAssignmentExists
from pimlico.jobs.events import published
from pimlico.services import (
    activations,
    assignments,
    mfa,
    request_effects,
    requests,
    role_settings,
)
from pimlico.services.activations import Activation, submit_together
from pimlico.services.request_records import RequestView
from pimlico.services.runtime import Actor, Pimlico, Written
from pimlico.settings import Settings
from tests.integration.world import OPERATOR, user

KEY = "q5wqT0Vf0mB3rXy2kZ8nN4pL7sD1gH6jC9vE2aR5tYU="
READER = Target(TargetType.ROLE, SECURITY_READER.id, "/")
HOUR = Schedule(duration=timedelta(hours=1))


@pytest.fixture
def settings(migrated_url: str) -> Settings:
    return Settings(database_url=migrated_url, secret_key=SecretStr(KEY), mfa_freshness=600)


@pytest.fixture(autouse=True)
def reader_needs_nothing(rt: Pimlico) -> None:
    settings_of(rt, {"activation": {"require_mfa": False, "require_justification": False}})


def settings_of(rt: Pimlico, changes: dict[str, object]) -> None:
    role_settings.update_policy(
        rt, actor=OPERATOR, target_type=TargetType.ROLE, object_id=READER.object_id, changes=changes
    )


def eligible_user(rt: Pimlico, name: str) -> PrincipalRef:
    holder = user(rt, name)
    assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ELIGIBLE,
        principal=holder,
        target=READER,
        duration=timedelta(days=30),
    )
    return holder


def asked(rt: Pimlico, holder: PrincipalRef, **alone: Any) -> Activation:
    """An activation of Security Reader for an hour; alone, it goes the general way."""

    def submit_alone() -> Written[RequestView]:
        return requests.submit(
            rt,
            actor=Actor.principal(holder.id),
            action=RequestAction.SELF_ACTIVATE,
            kind=AssignmentKind.ACTIVE,
            target=READER,
            schedule=HOUR,
            idempotency_key=f"alone-{holder.id}",  # keyed: never batched
            **alone,
        )

    return Activation(holder.id, READER, HOUR, None, None, submit_alone)


def revision(rt: Pimlico) -> int:
    with rt.reading() as s:
        return s.scalar(select(PimStateRow.revision)) or 0


def active_count(rt: Pimlico, holder: PrincipalRef) -> int:
    with rt.reading() as s:
        return (
            s.scalar(
                select(func.count())
                .select_from(AssignmentRow)
                .where(
                    AssignmentRow.principal_id == holder.id,
                    AssignmentRow.kind == AssignmentKind.ACTIVE.value,
                )
            )
            or 0
        )


def stored(answer: object) -> Written[RequestView]:
    assert isinstance(answer, Written), answer
    return answer


def events_of(rt: Pimlico, request_id: str) -> list[AuditEventRow]:
    with rt.reading() as s:
        rows = s.scalars(
            select(AuditEventRow)
            .where(AuditEventRow.request_id == request_id)
            .order_by(AuditEventRow.sequence)
        )
        return list(rows)


def test_activations_submitted_together_share_one_write_each_audited_as_its_own(
    rt: Pimlico,
) -> None:
    people = [eligible_user(rt, name) for name in ("alex", "bob", "carol")]
    before = revision(rt)
    answers = [stored(a) for a in submit_together(rt, [asked(rt, p) for p in people])]
    assert {a.revision for a in answers} == {before + 1}
    assert revision(rt) == before + 1
    for person, answer in zip(people, answers, strict=True):
        assert answer.value.request.status is RequestStatus.PROVISIONED
        assert answer.value.request.requested_by == person.id
        assert active_count(rt, person) == 1
        events = events_of(rt, answer.value.request.id)
        assert [e.action for e in events] == [
            "request.self_activate.submit",
            "assignment.active.assign",
            "request.provisioned",
        ]
        assert {e.actor for e in events} == {person.id}
        assert {e.revision for e in events} == {before + 1}
    with rt.reading() as s:
        assert audit.verify(s) is None


def test_a_second_identical_activation_in_the_same_batch_is_refused(rt: Pimlico) -> None:
    alex = eligible_user(rt, "alex")
    first, second = submit_together(rt, [asked(rt, alex), asked(rt, alex)])
    assert stored(first).value.request.status is RequestStatus.PROVISIONED
    assert isinstance(second, RoleAssignmentExists)
    assert active_count(rt, alex) == 1


def test_a_refused_activation_writes_nothing_and_leaves_its_batch_be(rt: Pimlico) -> None:
    alex = eligible_user(rt, "alex")
    dana = user(rt, "dana")  # not eligible
    before = revision(rt)
    refused, granted = submit_together(rt, [asked(rt, dana), asked(rt, alex)])
    assert isinstance(refused, PolicyViolation)
    assert refused.rules == ["EligibilityRule"]
    assert stored(granted).revision == before + 1
    assert active_count(rt, dana) == 0
    assert active_count(rt, alex) == 1


def test_a_batch_whose_every_activation_is_refused_makes_no_write(rt: Pimlico) -> None:
    dana, erin = user(rt, "dana"), user(rt, "erin")
    before = revision(rt)
    answers = submit_together(rt, [asked(rt, dana), asked(rt, erin)])
    assert all(isinstance(a, PolicyViolation) for a in answers)
    assert revision(rt) == before


def test_each_requester_s_own_fresh_mfa_counts(rt: Pimlico, clock: FixedClock) -> None:
    settings_of(rt, {"activation": {"require_mfa": True}})
    alex, bob = eligible_user(rt, "alex"), eligible_user(rt, "bob")
    me = Actor.principal(alex.id)
    secret = mfa.enroll(rt, actor=me, user_id=alex.id).secret
    mfa.confirm(rt, actor=me, user_id=alex.id, code=pyotp.TOTP(secret).at(clock.now()))
    clock.advance(timedelta(seconds=30))
    verified = mfa.verify(rt, actor=me, user_id=alex.id, code=pyotp.TOTP(secret).at(clock.now()))
    granted, refused = submit_together(rt, [asked(rt, alex), asked(rt, bob)])
    assert stored(granted).value.request.mfa_verified_at == verified.verified_at
    assert isinstance(refused, PolicyViolation)
    assert refused.rules == ["MfaRule"]


def test_an_activation_needing_approval_goes_alone_and_waits(rt: Pimlico) -> None:
    approver = user(rt, "bob")
    settings_of(
        rt,
        {
            "approval": {
                "required": True,
                "requestor_justification_required": False,
                "stages": [{"approvers": [{"type": "user", "id": approver.id}]}],
            }
        },
    )
    alex = eligible_user(rt, "alex")
    before = revision(rt)
    assert submit_together(rt, [asked(rt, alex)]) == [None]
    assert revision(rt) == before  # nothing of it was kept
    view = activations.activate(rt, asked(rt, alex)).value
    assert view.request.status is RequestStatus.PENDING_APPROVAL
    assert active_count(rt, alex) == 0


def test_when_writing_a_batch_fails_each_activation_goes_again_alone(
    rt: Pimlico, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    alex = eligible_user(rt, "alex")
    real = request_effects.activate_now
    calls: list[str] = []

    def fails_once(*args: Any, **kwargs: Any) -> Any:
        calls.append("called")
        if len(calls) == 1:
            raise RuntimeError("the disk is full")
        return real(*args, **kwargs)

    monkeypatch.setattr(activations, "activate_now", fails_once)
    before = revision(rt)
    with caplog.at_level(logging.ERROR, logger="pimlico.services.activations"):
        answer = activations.activate(rt, asked(rt, alex))
    assert "submitting each alone" in caplog.text
    assert answer.value.request.status is RequestStatus.PROVISIONED
    assert answer.revision == before + 1  # the failed batch kept nothing
    assert active_count(rt, alex) == 1


def loads(text: str | None) -> object:
    return None if text is None else json.loads(text)


def shape(rt: Pimlico, answer: Written[RequestView]) -> list[tuple[Any, ...]]:
    """What a stored activation wrote, its ids, instants and people left out."""
    view = answer.value
    ids = {view.request.id, view.assignment_id, view.request.requested_by}

    def plain(value: object) -> object:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items() if k not in {"activated_from"}}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return "<id>" if value in ids else value

    rows = events_of(rt, view.request.id)
    with rt.reading() as s:
        kinds = [
            type(e).__name__
            for e in published(s)
            if getattr(e, "request_id", None) == view.request.id
            or getattr(getattr(e, "assignment", None), "assignment_id", None) == view.assignment_id
        ]
    return [
        *(
            (e.action, e.target_type, plain(loads(e.before)), plain(loads(e.after)), e.reason)
            for e in rows
        ),
        (tuple(kinds),),
    ]


def test_an_activation_in_a_batch_is_stored_exactly_as_one_submitted_alone(
    rt: Pimlico,
) -> None:
    alex, bob = eligible_user(rt, "alex"), eligible_user(rt, "bob")
    alone = asked(rt, alex).alone()  # the general path: an idempotency key
    (together,) = submit_together(rt, [asked(rt, bob)])
    assert shape(rt, stored(together)) == shape(rt, alone)
    assert len(shape(rt, alone)[-1][0]) >= 3  # submitted, created, activated at least


def test_the_index_that_followed_a_batch_agrees_with_one_built_from_the_store(
    rt: Pimlico, settings: Settings, clock: FixedClock
) -> None:
    people = [eligible_user(rt, name) for name in ("alex", "bob")]
    answers = submit_together(rt, [asked(rt, p) for p in people])
    written = max(stored(a).revision for a in answers)
    followed = rt.decisions.at_least(written)  # fed the new activations from memory
    with Pimlico(settings, clock=clock) as fresh:
        built = fresh.decisions.at_least(written)  # read every row from the store
        for person in people:
            for at in (clock.now(), clock.now() + timedelta(minutes=59, seconds=59)):
                assert plain(followed.effective_access(person.id, at)) == plain(
                    built.effective_access(person.id, at)
                )
            ended = clock.now() + timedelta(hours=1)
            assert followed.effective_access(person.id, ended).roles == ()
            assert followed.effective_access(person.id, clock.now()).roles != ()


def plain(access: Access) -> tuple[object, ...]:
    """What an answer says, comparable (a ``Grant`` compares by identity)."""
    roles = sorted(
        (g.assignment_id, g.role_id, g.scope, g.holder_id, g.chain, g.start, g.end)
        for g in access.roles
    )
    return (tuple(roles), access.groups, access.eligible, access.permissions)
