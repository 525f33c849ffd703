"""Self-service requests judged against role settings: every rule code, alone and together."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from pimlico.domain.model import (
    Assignment,
    AssignmentKind,
    PrincipalRef,
    PrincipalType,
    Target,
    Window,
)
from pimlico.domain.policy import (
    ActivationRules,
    ApprovalRules,
    ApprovalStage,
    ApproverRef,
    RoleSettings,
)
from pimlico.domain.request_rules import (
    DEFAULT_APPROVAL_STAGE,
    RequestPlan,
    approval_stages,
    plan,
    problems,
)
from pimlico.domain.requests import (
    ExpirationType,
    Request,
    RequestAction,
    RequestStatus,
    Schedule,
    Ticket,
)
from pimlico.errors import (
    ActiveDurationTooShort,
    FieldError,
    PolicyViolation,
    RoleAssignmentDoesNotExist,
    RoleAssignmentExists,
)
from tests.factories import HOUR, T0

DAY = timedelta(days=1)
MINUTE = timedelta(minutes=1)
ALEX = PrincipalRef(PrincipalType.USER, "alex")
READER = Target.role("security-reader")
SP_PIM = Target.group_member("sp-pim")
A = RequestAction
ELIGIBLE, ACTIVE = AssignmentKind.ELIGIBLE, AssignmentKind.ACTIVE

SECURITY_READER = replace(
    RoleSettings.default(),
    activation=ActivationRules(maximum_duration=8 * HOUR, require_justification=False),
)
"""DESIGN.md: up to 8 h, MFA required, no justification, no approval."""
BOB_APPROVES = ApprovalStage(approvers=(ApproverRef.user("bob"),))
SEARCH_AND_PURGE_PIM = replace(
    RoleSettings.default(),
    activation=ActivationRules(maximum_duration=2 * HOUR, require_ticket=True),
    approval=ApprovalRules(required=True, stages=(BOB_APPROVES,)),
)
"""DESIGN.md: MFA, a justification, a ticket, and approval by a named approver (Bob)."""


def assignment(
    kind: AssignmentKind = ELIGIBLE,
    *,
    start: datetime = T0 - 30 * DAY,
    end: datetime | None = T0 + 300 * DAY,
    ended_at: datetime | None = None,
    target: Target = READER,
) -> Assignment:
    return Assignment(
        id=f"{kind.value}-1",
        kind=kind,
        principal=ALEX,
        target=target,
        start=start,
        end=end,
        created_at=start,
        ended_at=ended_at,
    )


def request(
    action: RequestAction = A.SELF_ACTIVATE,
    *,
    kind: AssignmentKind = ACTIVE,
    schedule: Schedule | None = None,
    justification: str | None = None,
    ticket: Ticket | None = None,
    target: Target = READER,
) -> Request:
    made, _ = Request.submit(
        id="r1",
        action=action,
        kind=kind,
        principal=ALEX,
        target=target,
        requested_by="alex",
        now=T0,
        needs_approval=False,
        schedule=schedule,
        justification=justification,
        ticket=ticket,
    )
    return made


def judge(
    req: Request,
    settings: RoleSettings = SECURITY_READER,
    *,
    eligible: Assignment | None = None,
    active: Assignment | None = None,
    mfa_fresh: bool = True,
    now: datetime = T0,
) -> RequestPlan:
    return plan(settings, req, now=now, eligible=eligible, active=active, mfa_fresh=mfa_fresh)


def rules(result: RequestPlan) -> set[str]:
    return {p.rule for p in result.problems}


def for_hours(hours: float) -> Schedule:
    return Schedule(duration=timedelta(hours=hours))


# --- the seeds of DESIGN.md -----------------------------------------------------------------


def test_alex_activates_security_reader_with_mfa_and_no_justification_without_approval() -> None:
    result = judge(request(schedule=for_hours(8)), eligible=assignment())
    assert result.valid
    assert result.window == Window(T0, T0 + 8 * HOUR)
    assert not result.needs_approval
    assert result.initial_status is RequestStatus.GRANTED
    result.raise_for_problems()


def test_alex_cannot_activate_security_reader_without_a_fresh_mfa_verification() -> None:
    result = judge(request(schedule=for_hours(1)), eligible=assignment(), mfa_fresh=False)
    assert result.problems == (
        FieldError("mfa", "MfaRule", "activating this target needs a fresh MFA verification"),
    )


def test_alex_requests_search_and_purge_pim_with_everything_and_waits_for_bob() -> None:
    req = request(
        schedule=for_hours(2),
        justification="purge the phishing mail of INC-42",
        ticket=Ticket("ServiceNow", "INC-42"),
        target=SP_PIM,
    )
    result = judge(req, SEARCH_AND_PURGE_PIM, eligible=assignment(target=SP_PIM))
    assert result.valid
    assert result.stages == (BOB_APPROVES,)
    assert result.initial_status is RequestStatus.PENDING_APPROVAL


def test_search_and_purge_pim_without_mfa_justification_or_ticket_names_all_three() -> None:
    result = judge(
        request(schedule=for_hours(2), target=SP_PIM),
        SEARCH_AND_PURGE_PIM,
        eligible=assignment(target=SP_PIM),
        mfa_fresh=False,
    )
    assert rules(result) == {"MfaRule", "JustificationRule", "TicketingRule"}
    assert sum(p.rule == "JustificationRule" for p in result.problems) == 1
    with pytest.raises(PolicyViolation) as caught:
        result.raise_for_problems()
    assert caught.value.rules == ["JustificationRule", "MfaRule", "TicketingRule"]


# --- activation -----------------------------------------------------------------------------


def test_activating_without_an_eligible_assignment_fails_the_eligibility_rule() -> None:
    assert rules(judge(request(schedule=for_hours(1)))) == {"EligibilityRule"}
    expired = assignment(end=T0 - HOUR)
    assert rules(judge(request(schedule=for_hours(1)), eligible=expired)) == {"EligibilityRule"}


def test_a_later_start_needs_the_eligibility_in_force_then() -> None:
    later = Schedule(start=T0 + 2 * DAY, duration=HOUR)
    not_yet = assignment(start=T0 + 3 * DAY, end=None)
    assert "EligibilityRule" in rules(judge(request(schedule=later), eligible=not_yet))


def test_activating_what_is_already_active_is_role_assignment_exists_alone() -> None:
    result = judge(
        request(schedule=for_hours(1)),
        eligible=assignment(),
        active=assignment(ACTIVE, start=T0 - HOUR, end=T0 + HOUR),
    )
    assert rules(result) == {"RoleAssignmentExists"}
    with pytest.raises(RoleAssignmentExists, match="already active"):
        result.raise_for_problems()


def test_an_ended_activation_does_not_block_a_new_one() -> None:
    old = assignment(ACTIVE, start=T0 - 3 * HOUR, end=T0 - HOUR)
    assert judge(request(schedule=for_hours(1)), eligible=assignment(), active=old).valid


@pytest.mark.parametrize(
    "schedule",
    [
        for_hours(9),
        Schedule(duration=4 * MINUTE),
        Schedule(expiration=ExpirationType.AFTER_DATETIME, end=T0 + 2 * MINUTE),
        Schedule(expiration=ExpirationType.NO_EXPIRATION),
        Schedule(expiration=ExpirationType.AFTER_DATETIME),
    ],
    ids=["too-long", "too-short", "end-too-soon", "never-ends", "no-end-given"],
)
def test_an_activation_outside_the_allowed_length_fails_the_expiration_rule(
    schedule: Schedule,
) -> None:
    assert rules(judge(request(schedule=schedule), eligible=assignment())) == {"ExpirationRule"}


def test_an_activation_past_the_eligibilitys_end_is_refused_naming_the_latest_end() -> None:
    short = assignment(end=T0 + 2 * HOUR)
    result = judge(request(schedule=for_hours(3)), eligible=short)
    assert rules(result) == {"ExpirationRule"}
    assert (T0 + 2 * HOUR).isoformat() in result.problems[0].message


def test_no_duration_means_the_longest_allowed_bounded_by_the_eligibility() -> None:
    assert judge(request(), eligible=assignment()).window == Window(T0, T0 + 8 * HOUR)
    short = judge(request(), eligible=assignment(end=T0 + 3 * HOUR))
    assert short.valid
    assert short.window == Window(T0, T0 + 3 * HOUR)


def test_approval_alone_can_require_the_requesters_justification() -> None:
    settings = replace(
        SEARCH_AND_PURGE_PIM, activation=ActivationRules(require_justification=False)
    )
    req = request(schedule=for_hours(1), ticket=Ticket("Jira", "SEC-1"), target=SP_PIM)
    result = judge(req, settings, eligible=assignment(target=SP_PIM))
    assert result.problems == (
        FieldError("justification", "JustificationRule", "the approvers need a justification"),
    )


def test_a_blank_ticket_number_fails_the_ticketing_rule() -> None:
    settings = replace(SECURITY_READER, activation=ActivationRules(require_ticket=True))
    req = request(schedule=for_hours(1), justification="why", ticket=Ticket("Jira", "  "))
    assert rules(judge(req, settings, eligible=assignment())) == {"TicketingRule"}


def test_an_authentication_context_needs_mfa_even_when_mfa_is_not_required() -> None:
    settings = replace(
        SECURITY_READER,
        activation=ActivationRules(
            require_mfa=False,
            require_justification=False,
            authentication_context_enabled=True,
            authentication_context_claim="c1",
        ),
    )
    req = request(schedule=for_hours(1))
    assert rules(judge(req, settings, eligible=assignment(), mfa_fresh=False)) == {"MfaRule"}


def test_many_failures_are_named_at_once() -> None:
    settings = replace(SECURITY_READER, activation=ActivationRules(require_ticket=True))
    result = judge(request(schedule=for_hours(9)), settings, mfa_fresh=False)
    assert rules(result) == {
        "EligibilityRule",
        "ExpirationRule",
        "JustificationRule",
        "TicketingRule",
        "MfaRule",
    }


# --- deactivation ---------------------------------------------------------------------------


def test_deactivating_ends_the_assignment_now() -> None:
    active = assignment(ACTIVE, start=T0 - HOUR, end=T0 + HOUR)
    result = judge(request(A.SELF_DEACTIVATE), active=active, mfa_fresh=False)
    assert result.valid
    assert result.window == Window(T0, T0)
    assert not result.needs_approval


def test_deactivating_nothing_is_role_assignment_does_not_exist() -> None:
    result = judge(request(A.SELF_DEACTIVATE))
    assert rules(result) == {"RoleAssignmentDoesNotExist"}
    with pytest.raises(RoleAssignmentDoesNotExist):
        result.raise_for_problems()


def test_deactivating_within_five_minutes_of_the_start_is_active_duration_too_short() -> None:
    active = assignment(ACTIVE, start=T0 - 4 * MINUTE, end=T0 + HOUR)
    result = judge(request(A.SELF_DEACTIVATE), active=active)
    assert rules(result) == {"ActiveDurationTooShort"}
    with pytest.raises(ActiveDurationTooShort):
        result.raise_for_problems()
    assert judge(request(A.SELF_DEACTIVATE), active=active, now=T0 + MINUTE).valid


# --- extend and renew -----------------------------------------------------------------------


def extend(kind: AssignmentKind = ELIGIBLE) -> Request:
    schedule = Schedule(duration=90 * DAY)
    return request(A.SELF_EXTEND, kind=kind, schedule=schedule, justification="still on call")


def test_extending_an_eligibility_ending_within_14_days_needs_the_default_approvers() -> None:
    ending = assignment(end=T0 + 10 * DAY)
    result = judge(extend(), eligible=ending)
    assert result.valid
    assert result.window == Window(ending.start, T0 + 90 * DAY)
    assert result.stages == (DEFAULT_APPROVAL_STAGE,)


def test_extending_uses_the_policys_stages_when_approval_is_required_for_extension() -> None:
    settings = replace(
        SECURITY_READER,
        approval=ApprovalRules(required_for_extension=True, stages=(BOB_APPROVES,)),
    )
    assert approval_stages(settings, A.SELF_EXTEND) == (BOB_APPROVES,)
    assert approval_stages(settings, A.SELF_RENEW) == (BOB_APPROVES,)
    assert approval_stages(settings, A.SELF_ACTIVATE) == ()
    assert approval_stages(SEARCH_AND_PURGE_PIM, A.SELF_DEACTIVATE) == ()


def test_extending_more_than_14_days_before_the_end_fails_the_expiration_rule() -> None:
    result = judge(extend(), eligible=assignment(end=T0 + 15 * DAY))
    assert rules(result) == {"ExpirationRule"}
    assert "within 14 days" in result.problems[0].message


def test_extending_beyond_the_policys_maximum_fails_the_expiration_rule() -> None:
    req = request(
        A.SELF_EXTEND,
        kind=ELIGIBLE,
        schedule=Schedule(duration=400 * DAY),
        justification="why",
    )
    assert rules(judge(req, eligible=assignment(end=T0 + DAY))) == {"ExpirationRule"}


def test_extending_needs_a_justification_and_something_to_extend() -> None:
    bare = request(A.SELF_EXTEND, kind=ELIGIBLE, schedule=Schedule(duration=DAY))
    assert rules(judge(bare)) == {"JustificationRule", "RoleAssignmentDoesNotExist"}


def test_a_permanent_or_removed_assignment_cannot_be_extended() -> None:
    permanent = assignment(end=None)
    removed = assignment(end=T0 + DAY, ended_at=T0 - DAY)
    for existing in (permanent, removed):
        assert rules(judge(extend(), eligible=existing)) == {"RoleAssignmentDoesNotExist"}


def test_an_expired_assignment_is_renewed_not_extended() -> None:
    expired = assignment(end=T0 - DAY)
    assert "renew it" in judge(extend(), eligible=expired).problems[0].message
    renew = request(A.SELF_RENEW, kind=ELIGIBLE, schedule=Schedule(duration=90 * DAY))
    renew.justification = "back on call"
    result = judge(renew, eligible=expired)
    assert result.valid
    assert result.window == Window(T0, T0 + 90 * DAY)
    assert result.needs_approval


def test_renewing_before_expiry_fails_and_long_after_expiry_is_refused() -> None:
    renew = request(A.SELF_RENEW, kind=ACTIVE, schedule=for_hours(1), justification="why")
    running = assignment(ACTIVE, start=T0 - HOUR, end=T0 + HOUR)
    assert rules(judge(renew, active=running)) == {"ExpirationRule"}
    long_gone = assignment(ACTIVE, start=T0 - 60 * DAY, end=T0 - 31 * DAY)
    assert rules(judge(renew, active=long_gone)) == {"RoleAssignmentDoesNotExist"}


def test_the_plain_problems_list_matches_the_plan() -> None:
    req = request(schedule=for_hours(9))
    assert problems(SECURITY_READER, req, now=T0, eligible=None, active=None, mfa_fresh=True) == [
        *judge(req).problems
    ]


def test_administrators_actions_are_not_judged_here() -> None:
    with pytest.raises(ValueError, match="assignment_rules"):
        judge(request(A.ADMIN_ASSIGN))
