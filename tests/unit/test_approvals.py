"""Approvals: who may decide, quorum, stages, denial, escalation, timeout and ``due_at``."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pimlico.domain.approvals import AlreadyDecided, Approval, ApprovalStatus, Decision
from pimlico.domain.model import AssignmentKind, PrincipalRef, PrincipalType, Target
from pimlico.domain.policy import ApprovalStage, ApproverRef
from pimlico.domain.requests import (
    ApprovalEscalated,
    ApprovalStageCompleted,
    Request,
    RequestAction,
    RequestApproved,
    RequestDenied,
    RequestEvent,
    RequestExpired,
    RequestStatus,
)
from pimlico.errors import InvalidInput, PermissionDenied
from tests.factories import HOUR, T0

DAY = timedelta(days=1)
GROUPS = {"approvers": {"alex", "bob", "dana"}, "leads": {"erin", "alex"}}


def members_of(group_id: str) -> set[str]:
    return GROUPS.get(group_id, set())


def admins(user_id: str) -> bool:
    """The holders of ``pim.requests.approve`` in these tests: Alex and Zoe."""
    return user_id in {"alex", "zoe"}


def approval(*stages: ApprovalStage) -> Approval:
    return Approval.start(request_id="r1", requester_id="alex", stages=stages, now=T0)


def stage(*approvers: ApproverRef, **kwargs: object) -> ApprovalStage:
    return ApprovalStage(approvers=approvers, **kwargs)  # type: ignore[arg-type]


def decide(
    a: Approval, who: str, approve: bool = True, at: datetime = T0 + HOUR, why: str | None = "ok"
) -> list[RequestEvent]:
    return a.decide(who, approve, why, at, members_of, admins)


BOB, CAROL, DANA = ApproverRef.user("bob"), ApproverRef.user("carol"), ApproverRef.user("dana")
APPROVERS, LEADS = ApproverRef.group("approvers"), ApproverRef.group("leads")


# --- the seed: Bob approves, Alex cannot ----------------------------------------------------


def test_bob_approves_alexs_request_and_the_request_is_granted() -> None:
    a = approval(stage(BOB))
    events = decide(a, "bob", why="INC-42 checked")
    assert events == [
        ApprovalStageCompleted("r1", 0, T0 + HOUR, ("bob",), None),
        RequestApproved("r1", T0 + HOUR, "bob"),
    ]
    assert a.status is ApprovalStatus.APPROVED
    assert a.decisions == [Decision(0, "bob", True, T0 + HOUR, "INC-42 checked")]
    assert a.due_at() is None
    request, _ = Request.submit(
        id="r1",
        action=RequestAction.SELF_ACTIVATE,
        kind=AssignmentKind.ACTIVE,
        principal=PrincipalRef(PrincipalType.USER, "alex"),
        target=Target.group_member("sp-pim"),
        requested_by="alex",
        now=T0,
        needs_approval=True,
    )
    for event in events:
        request.apply(event)
    assert request.status is RequestStatus.GRANTED


@pytest.mark.parametrize(
    "approvers",
    [(ApproverRef.user("alex"),), (APPROVERS,), (BOB, LEADS)],
    ids=["named", "group-member", "other-group-member"],
)
def test_alex_cannot_approve_his_own_request_however_he_is_listed(
    approvers: tuple[ApproverRef, ...],
) -> None:
    a = approval(stage(*approvers, quorum=1))
    with pytest.raises(PermissionDenied, match="your own request"):
        decide(a, "alex")
    assert a.decisions == []


def test_alex_cannot_approve_his_own_request_as_an_administrator_or_escalation_approver() -> None:
    a = approval(
        stage(),
        stage(
            BOB,
            escalation_enabled=True,
            escalation_approvers=(ApproverRef.user("alex"),),
            escalation_after=HOUR,
        ),
    )
    with pytest.raises(PermissionDenied, match="your own request"):
        decide(a, "alex")
    decide(a, "zoe")
    with pytest.raises(PermissionDenied, match="your own request"):
        decide(a, "alex", at=T0 + 5 * HOUR)


def test_someone_who_is_no_approver_of_the_stage_is_refused() -> None:
    a = approval(stage(BOB))
    with pytest.raises(PermissionDenied, match="carol is not an approver of stage 1"):
        decide(a, "carol")


def test_a_group_is_expanded_when_the_decision_is_made() -> None:
    a = approval(stage(APPROVERS))
    seen: list[str] = []

    def counting(group_id: str) -> set[str]:
        seen.append(group_id)
        return {"dana"}

    assert seen == []
    a.decide("dana", True, "ok", T0 + HOUR, counting, admins)
    assert seen == ["approvers"]
    assert a.status is ApprovalStatus.APPROVED


def test_a_stage_with_no_approvers_is_decided_by_the_holders_of_the_approve_permission() -> None:
    a = approval(stage())
    with pytest.raises(PermissionDenied):
        decide(a, "bob")
    decide(a, "zoe")
    assert a.status is ApprovalStatus.APPROVED


def test_the_administrators_do_not_decide_a_stage_that_names_its_approvers() -> None:
    with pytest.raises(PermissionDenied):
        decide(approval(stage(BOB)), "zoe")


def test_a_required_justification_is_named_when_missing() -> None:
    a = approval(stage(BOB))
    with pytest.raises(InvalidInput) as caught:
        decide(a, "bob", why="   ")
    assert [e.field for e in caught.value.errors] == ["justification"]
    assert a.decisions == []
    relaxed = approval(stage(BOB, approver_justification_required=False))
    decide(relaxed, "bob", why=None)
    assert relaxed.status is ApprovalStatus.APPROVED


# --- quorum, stages and denial --------------------------------------------------------------


def two_stages() -> Approval:
    return approval(stage(BOB, CAROL, DANA, quorum=2, timeout=DAY), stage(LEADS, timeout=DAY))


def test_two_stages_need_a_quorum_of_two_then_one_and_the_second_clock_starts_then() -> None:
    a = two_stages()
    assert decide(a, "bob") == []
    assert a.status is ApprovalStatus.PENDING
    with pytest.raises(AlreadyDecided, match="bob already decided stage 1"):
        decide(a, "bob")
    completed = decide(a, "dana", at=T0 + 20 * HOUR)
    assert completed == [ApprovalStageCompleted("r1", 0, T0 + 20 * HOUR, ("bob", "dana"), 1)]
    assert (a.current, a.stage_started_at, a.due_at()) == (1, T0 + 20 * HOUR, T0 + 44 * HOUR)
    with pytest.raises(PermissionDenied):
        decide(a, "carol", at=T0 + 21 * HOUR)
    events = decide(a, "erin", at=T0 + 30 * HOUR)
    assert events[-1] == RequestApproved("r1", T0 + 30 * HOUR, "erin")
    assert a.approvals_in(0) == ("bob", "dana")
    assert a.approvals_in(1) == ("erin",)


def test_a_denial_in_the_second_stage_denies_the_request() -> None:
    a = two_stages()
    decide(a, "bob")
    decide(a, "carol")
    events = decide(a, "erin", approve=False, at=T0 + 2 * HOUR, why="not needed")
    assert events == [RequestDenied("r1", T0 + 2 * HOUR, "erin", 1, "not needed")]
    assert a.status is ApprovalStatus.DENIED
    with pytest.raises(AlreadyDecided, match="denied"):
        decide(a, "dana", at=T0 + 3 * HOUR)


def test_one_denial_denies_even_after_an_approval_in_the_same_stage() -> None:
    a = two_stages()
    decide(a, "bob")
    assert isinstance(decide(a, "carol", approve=False)[0], RequestDenied)


# --- escalation, timeout and due_at ---------------------------------------------------------


def escalating() -> Approval:
    return approval(
        stage(
            BOB,
            timeout=DAY,
            escalation_enabled=True,
            escalation_approvers=(ApproverRef.user("frank"),),
            escalation_after=4 * HOUR,
        )
    )


def test_the_escalation_approver_may_decide_only_after_the_delay() -> None:
    a = escalating()
    assert a.due_at() == T0 + 4 * HOUR
    with pytest.raises(PermissionDenied):
        decide(a, "frank", at=T0 + 4 * HOUR - timedelta(microseconds=1))
    assert a.advance(T0 + 3 * HOUR) == []
    assert a.advance(T0 + 5 * HOUR) == [
        ApprovalEscalated("r1", 0, T0 + 4 * HOUR, (ApproverRef.user("frank"),))
    ]
    assert a.advance(T0 + 6 * HOUR) == []
    assert a.due_at() == T0 + DAY
    assert decide(a, "frank", at=T0 + 6 * HOUR)[-1] == RequestApproved("r1", T0 + 6 * HOUR, "frank")


def test_a_stage_nobody_completes_in_time_expires_and_later_decisions_are_refused() -> None:
    a = escalating()
    assert a.expire_if_due(T0 + DAY - timedelta(microseconds=1)) == []
    with pytest.raises(AlreadyDecided, match="timed out"):
        decide(a, "bob", at=T0 + DAY)
    assert a.advance(T0 + 2 * DAY) == [RequestExpired("r1", T0 + DAY, 0)]
    assert a.status is ApprovalStatus.EXPIRED
    assert a.due_at() is None
    with pytest.raises(AlreadyDecided) as caught:
        decide(a, "bob", at=T0 + 2 * DAY)
    assert (caught.value.code, caught.value.status) == ("AlreadyDecided", 409)


def test_due_at_is_the_timeout_without_escalation_and_follows_the_current_stage() -> None:
    a = approval(stage(BOB, timeout=2 * HOUR), stage(CAROL, timeout=3 * HOUR))
    assert a.due_at() == T0 + 2 * HOUR
    decide(a, "bob", at=T0 + HOUR)
    assert a.due_at() == T0 + 4 * HOUR
    assert a.expire_if_due(T0 + 4 * HOUR) == [RequestExpired("r1", T0 + 4 * HOUR, 1)]


def test_a_canceled_approval_has_nothing_due_and_takes_no_decision() -> None:
    a = approval(stage(BOB))
    a.cancel(T0 + HOUR)
    assert (a.status, a.due_at()) == (ApprovalStatus.CANCELED, None)
    with pytest.raises(AlreadyDecided):
        decide(a, "bob")
    with pytest.raises(AlreadyDecided):
        a.cancel(T0 + HOUR)


def test_an_approval_needs_a_stage() -> None:
    with pytest.raises(ValueError, match="at least one stage"):
        approval()


# --- property -------------------------------------------------------------------------------

PEOPLE = ["alex", "bob", "carol", "dana", "erin", "frank", "zoe"]


@given(
    quorums=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    moves=st.lists(
        st.tuples(st.sampled_from(PEOPLE), st.booleans(), st.integers(0, 60)), max_size=25
    ),
)
def test_random_decisions_never_approve_without_every_quorum_nor_let_the_requester_decide(
    quorums: list[int], moves: list[tuple[str, bool, int]]
) -> None:
    stages = tuple(
        stage(
            APPROVERS,
            BOB,
            CAROL,
            quorum=q,
            timeout=DAY,
            escalation_enabled=True,
            escalation_approvers=(LEADS,),
            escalation_after=HOUR,
        )
        for q in quorums
    )
    a = approval(*stages)
    now = T0
    for who, approve, minutes in moves:
        now += timedelta(minutes=minutes)
        a.advance(now)
        try:
            a.decide(who, approve, "why", now, members_of, admins)
        except (PermissionDenied, AlreadyDecided):
            continue
    assert all(d.approver_id != "alex" for d in a.decisions)
    for index in range(len(stages)):
        approvers = a.approvals_in(index)
        assert len(approvers) == len(set(approvers))
    if a.status is ApprovalStatus.APPROVED:
        assert all(len(a.approvals_in(i)) >= q for i, q in enumerate(quorums))
        assert all(d.approved for d in a.decisions)
    if a.status is ApprovalStatus.DENIED:
        assert not a.decisions[-1].approved
