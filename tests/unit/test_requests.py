"""Requests: the status state machine, its history, cancel, schedules and outcome events."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pimlico.domain.model import AssignmentKind, PrincipalRef, PrincipalType, Target, Window
from pimlico.domain.requests import (
    TERMINAL,
    TRANSITIONS,
    ExpirationType,
    Request,
    RequestAction,
    RequestApproved,
    RequestCanceled,
    RequestDenied,
    RequestExpired,
    RequestNotCancelable,
    RequestStatus,
    RequestSubmitted,
    Schedule,
    StatusChange,
)
from pimlico.errors import Conflict, InvalidInput
from tests.factories import HOUR, T0

S = RequestStatus
ALEX = PrincipalRef(PrincipalType.USER, "alex")
READER = Target.role("security-reader")


def request_in(
    status: RequestStatus, action: RequestAction = RequestAction.SELF_ACTIVATE
) -> Request:
    """A request that has reached ``status`` by a legal path."""
    needs_approval = status in (S.PENDING_APPROVAL, S.DENIED, S.EXPIRED)
    request, _ = Request.submit(
        id="r1",
        action=action,
        kind=AssignmentKind.ACTIVE,
        principal=ALEX,
        target=READER,
        requested_by="alex",
        now=T0,
        needs_approval=needs_approval,
    )
    if status not in (S.PENDING_APPROVAL, S.GRANTED):
        request.move_to(status, at=T0 + HOUR, by="system")
    return request


# Sorted: every xdist worker must collect the same tests in the same order.
LEGAL = [(a, b) for a, targets in TRANSITIONS.items() for b in sorted(targets)]
ILLEGAL = [
    (a, b)
    for a in RequestStatus
    for b in RequestStatus
    if b not in TRANSITIONS[a] and b != S.CANCELED
]


def action_for(*statuses: RequestStatus) -> RequestAction:
    """A removal when one of ``statuses`` is revoked (only removals end so), else activation."""
    if S.REVOKED in statuses:
        return RequestAction.SELF_DEACTIVATE
    return RequestAction.SELF_ACTIVATE


# --- submission -----------------------------------------------------------------------------


def test_a_request_needing_approval_enters_pending_and_says_so_in_its_event() -> None:
    request, event = Request.submit(
        id="r1",
        action=RequestAction.SELF_ACTIVATE,
        kind=AssignmentKind.ACTIVE,
        principal=ALEX,
        target=READER,
        requested_by="alex",
        now=T0,
        needs_approval=True,
        idempotency_key="k-1",
    )
    assert request.status is S.PENDING_APPROVAL
    assert request.history == [StatusChange(S.PENDING_APPROVAL, T0, "alex", "submitted")]
    assert request.idempotency_key == "k-1"
    assert event == RequestSubmitted(
        "r1", RequestAction.SELF_ACTIVATE, AssignmentKind.ACTIVE, ALEX, READER, "alex", T0,
        S.PENDING_APPROVAL,
    )  # fmt: skip


def test_a_request_needing_no_approval_enters_granted() -> None:
    assert request_in(S.GRANTED).status is S.GRANTED


def test_only_removals_and_self_service_actions_say_what_they_are() -> None:
    assert {a for a in RequestAction if a.removes} == {
        RequestAction.ADMIN_REMOVE,
        RequestAction.SELF_DEACTIVATE,
    }
    assert sum(a.is_self_service for a in RequestAction) == 4


# --- the state machine ----------------------------------------------------------------------


@pytest.mark.parametrize(("source", "target"), LEGAL)
def test_every_allowed_transition_is_made_and_kept_in_the_history(
    source: RequestStatus, target: RequestStatus
) -> None:
    request = request_in(source, action_for(target))
    before = len(request.history)
    request.move_to(target, at=T0 + 2 * HOUR, by="bob", reason="because")
    assert request.status is target
    assert len(request.history) == before + 1
    assert request.history[-1] == StatusChange(target, T0 + 2 * HOUR, "bob", "because")


@pytest.mark.parametrize(("source", "target"), ILLEGAL)
def test_every_other_transition_is_refused_with_a_conflict_naming_both_statuses(
    source: RequestStatus, target: RequestStatus
) -> None:
    request = request_in(source, action_for(source))
    history = list(request.history)
    with pytest.raises(Conflict) as caught:
        request.move_to(target, at=T0 + 2 * HOUR, by="bob")
    assert caught.value.code == "Conflict"
    assert source.value in caught.value.message
    assert target.value in caught.value.message
    assert request.status is source
    assert request.history == history


def test_terminal_statuses_are_exactly_those_with_no_way_out() -> None:
    assert {S.PROVISIONED, S.DENIED, S.CANCELED, S.REVOKED, S.FAILED, S.EXPIRED} == TERMINAL


def test_a_removal_ends_revoked_and_can_never_be_provisioned() -> None:
    removal = request_in(S.GRANTED, RequestAction.ADMIN_REMOVE)
    with pytest.raises(Conflict, match="granted to provisioned"):
        removal.move_to(S.PROVISIONED, at=T0, by="system")
    removal.move_to(S.REVOKED, at=T0, by="system")
    assert removal.status is S.REVOKED


def test_an_activation_is_provisioned_and_can_never_be_revoked() -> None:
    activation = request_in(S.GRANTED)
    with pytest.raises(Conflict, match="granted to revoked"):
        activation.move_to(S.REVOKED, at=T0, by="system")


# --- cancel ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [S.PENDING_APPROVAL, S.GRANTED])
def test_a_request_not_yet_started_can_be_canceled(status: RequestStatus) -> None:
    request = request_in(status)
    event = request.cancel(at=T0 + HOUR, by="alex", reason="no longer needed")
    assert event == RequestCanceled("r1", T0 + HOUR, "alex", "no longer needed")
    assert request.status is S.CANCELED
    assert request.history[-1] == StatusChange(S.CANCELED, T0 + HOUR, "alex", "no longer needed")


@pytest.mark.parametrize("status", sorted(TERMINAL))
def test_cancelling_a_started_or_finished_request_is_refused_with_400(
    status: RequestStatus,
) -> None:
    request = request_in(status, action_for(status))
    with pytest.raises(RequestNotCancelable) as caught:
        request.cancel(at=T0 + 2 * HOUR, by="alex")
    assert (caught.value.code, caught.value.status) == ("RequestNotCancelable", 400)
    assert isinstance(caught.value, Conflict)
    assert status.value in caught.value.message
    assert request.status is status


# --- outcomes of an approval ----------------------------------------------------------------


def test_an_approval_grants_a_denial_denies_and_an_expiry_expires() -> None:
    approved, denied, expired = (request_in(S.PENDING_APPROVAL) for _ in range(3))
    approved.apply(RequestApproved("r1", T0 + HOUR, "bob"))
    denied.apply(RequestDenied("r1", T0 + HOUR, "bob", 0, "not today"))
    expired.apply(RequestExpired("r1", T0 + 24 * HOUR, 0))
    assert (approved.status, denied.status, expired.status) == (S.GRANTED, S.DENIED, S.EXPIRED)
    assert denied.history[-1] == StatusChange(S.DENIED, T0 + HOUR, "bob", "not today")
    assert expired.history[-1] == StatusChange(
        S.EXPIRED, T0 + 24 * HOUR, None, "approval stage 1 timed out"
    )


def test_an_event_about_another_request_is_refused() -> None:
    with pytest.raises(ValueError, match="not about request r1"):
        request_in(S.PENDING_APPROVAL).apply(RequestApproved("r2", T0, "bob"))


# --- schedules ------------------------------------------------------------------------------


def test_a_schedule_without_a_start_starts_now_and_a_duration_counts_from_there() -> None:
    assert Schedule(duration=2 * HOUR).resolve(T0) == Window(T0, T0 + 2 * HOUR)


def test_a_later_start_is_kept_and_a_past_start_means_now() -> None:
    later = Schedule(start=T0 + HOUR, duration=HOUR)
    assert later.resolve(T0) == Window(T0 + HOUR, T0 + 2 * HOUR)
    assert Schedule(start=T0 - HOUR, duration=HOUR).resolve(T0) == Window(T0, T0 + HOUR)


def test_an_end_or_no_expiration_gives_that_end_or_none() -> None:
    until = Schedule(expiration=ExpirationType.AFTER_DATETIME, end=T0 + 3 * HOUR)
    assert until.resolve(T0) == Window(T0, T0 + 3 * HOUR)
    assert Schedule(expiration=ExpirationType.NO_EXPIRATION).resolve(T0) == Window(T0, None)


def test_a_missing_duration_takes_the_default_given() -> None:
    assert Schedule().resolve(T0, default_duration=8 * HOUR) == Window(T0, T0 + 8 * HOUR)
    with pytest.raises(InvalidInput, match="give a duration"):
        Schedule().resolve(T0)


def test_fields_that_disagree_with_the_expiration_type_are_each_named() -> None:
    schedule = Schedule(
        expiration=ExpirationType.NO_EXPIRATION, duration=-HOUR, end=T0 + timedelta(hours=1)
    )
    assert {(p.field, p.rule) for p in schedule.problems()} == {
        ("schedule.duration", "ExpirationRule"),
        ("schedule.end", "ExpirationRule"),
    }
    assert len(schedule.problems()) == 3
    missing_end = Schedule(expiration=ExpirationType.AFTER_DATETIME)
    assert [p.field for p in missing_end.problems()] == ["schedule.end"]
    with pytest.raises(InvalidInput):
        missing_end.resolve(T0)
