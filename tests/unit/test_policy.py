"""Role settings: Entra's defaults, every rule and bound, the dict codec and partial patches."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pimlico.domain.policy import (
    ActivationRules,
    ApprovalRules,
    ApprovalStage,
    ApproverRef,
    ApproverType,
    AssignmentRules,
    NotificationEvent,
    NotificationLevel,
    NotificationRecipient,
    NotificationRule,
    NotificationRules,
    RoleSettings,
    problems,
    validated,
)
from pimlico.domain.policy_codec import from_dict, to_dict, with_changes
from pimlico.errors import FieldError, InvalidInput, InvalidPolicy

MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)
DEFAULT = RoleSettings.default()


def broken(settings: RoleSettings) -> set[tuple[str, str]]:
    """The (field, rule) pairs ``settings`` breaks."""
    return {(e.field, e.rule) for e in problems(settings)}


def with_stage(stage: ApprovalStage, *, required: bool = True) -> RoleSettings:
    return replace(DEFAULT, approval=ApprovalRules(required=required, stages=(stage,)))


def with_recipients(*addresses: str) -> RoleSettings:
    rule = NotificationRule(additional_recipients=addresses)
    notifications = DEFAULT.notifications.with_rule("activation", "approver", rule)
    return replace(DEFAULT, notifications=notifications)


def decode_errors(data: object, base: RoleSettings | None = None) -> set[tuple[str, str]]:
    with pytest.raises(InvalidPolicy) as caught:
        from_dict(data, base)  # type: ignore[arg-type]  # callers may pass any parsed JSON
    return {(e.field, e.rule) for e in caught.value.errors}


ALICE, BOB, CAROL = ApproverRef.user("alice"), ApproverRef.user("bob"), ApproverRef.user("carol")
ADMINS = ApproverRef.group("admins")


# --- defaults -------------------------------------------------------------------------------


def test_activation_defaults_are_entras() -> None:
    assert DEFAULT.activation == ActivationRules(
        maximum_duration=timedelta(hours=8),
        require_mfa=True,
        require_justification=True,
        require_ticket=False,
        authentication_context_enabled=False,
        authentication_context_claim=None,
    )


def test_approval_defaults_are_entras_single_stage_with_a_one_day_timeout() -> None:
    approval = DEFAULT.approval
    assert approval.required is False
    assert approval.required_for_extension is False
    assert approval.requestor_justification_required is True
    assert approval.stages == (
        ApprovalStage(
            approvers=(),
            quorum=1,
            timeout=timedelta(days=1),
            approver_justification_required=True,
            escalation_enabled=False,
            escalation_approvers=(),
            escalation_after=timedelta(0),
        ),
    )


def test_assignment_defaults_are_entras() -> None:
    assert DEFAULT.assignment == AssignmentRules(
        allow_permanent_eligible=False,
        eligible_maximum_duration=timedelta(days=365),
        allow_permanent_active=False,
        active_maximum_duration=timedelta(days=180),
        active_require_mfa=False,
        active_require_justification=True,
        eligible_require_mfa=False,
        eligible_require_justification=False,
    )


def test_all_nine_notification_rules_default_to_all_mails_to_the_default_recipients() -> None:
    rules = list(DEFAULT.notifications.items())
    assert len(rules) == 9
    assert {(event, recipient) for event, recipient, _ in rules} == {
        (e, r) for e in NotificationEvent for r in NotificationRecipient
    }
    for _, _, rule in rules:
        assert rule == NotificationRule(NotificationLevel.ALL, True, ())


def test_the_default_settings_break_no_rule() -> None:
    assert problems(DEFAULT) == []
    assert validated(DEFAULT) is DEFAULT


def test_settings_are_frozen_and_hashable() -> None:
    with pytest.raises(AttributeError):
        DEFAULT.activation.require_mfa = False  # type: ignore[misc]
    assert hash(DEFAULT) == hash(RoleSettings.default())


# --- bounds ---------------------------------------------------------------------------------


def activation_max(value: timedelta) -> RoleSettings:
    return replace(DEFAULT, activation=ActivationRules(maximum_duration=value))


def eligible_max(value: timedelta) -> RoleSettings:
    return replace(DEFAULT, assignment=AssignmentRules(eligible_maximum_duration=value))


def active_max(value: timedelta) -> RoleSettings:
    return replace(DEFAULT, assignment=AssignmentRules(active_maximum_duration=value))


def stage_timeout(value: timedelta) -> RoleSettings:
    return with_stage(ApprovalStage(timeout=value))


DURATION_BOUNDS = [
    (activation_max, "activation.maximum_duration", 5 * MINUTE, timedelta(hours=24)),
    (eligible_max, "assignment.eligible_maximum_duration", 5 * MINUTE, timedelta(days=3650)),
    (active_max, "assignment.active_maximum_duration", 5 * MINUTE, timedelta(days=3650)),
    (stage_timeout, "approval.stages[0].timeout", 5 * MINUTE, timedelta(days=30)),
]


@pytest.mark.parametrize(("build", "path", "low", "high"), DURATION_BOUNDS)
def test_a_duration_at_either_end_of_its_range_is_accepted(
    build: Callable[[timedelta], RoleSettings], path: str, low: timedelta, high: timedelta
) -> None:
    assert broken(build(low)) == set()
    assert broken(build(high)) == set()


@pytest.mark.parametrize(("build", "path", "low", "high"), DURATION_BOUNDS)
def test_a_duration_just_outside_its_range_is_rejected_at_both_ends(
    build: Callable[[timedelta], RoleSettings], path: str, low: timedelta, high: timedelta
) -> None:
    assert broken(build(low - SECOND)) == {(path, "Range")}
    assert broken(build(high + SECOND)) == {(path, "Range")}


def test_a_range_error_says_what_the_range_is() -> None:
    (error,) = problems(activation_max(timedelta(hours=25)))
    assert error == FieldError(
        "activation.maximum_duration",
        "Range",
        "must be between PT5M and P1D inclusive, not P1DT1H",
    )


def test_a_negative_duration_is_out_of_range() -> None:
    assert broken(activation_max(-MINUTE)) == {("activation.maximum_duration", "Range")}


@pytest.mark.parametrize("quorum", [1, 25])
def test_a_quorum_at_either_end_of_its_range_is_accepted(quorum: int) -> None:
    assert broken(with_stage(ApprovalStage(quorum=quorum))) == set()


@pytest.mark.parametrize("quorum", [0, 26, -1])
def test_a_quorum_outside_one_to_twenty_five_is_rejected(quorum: int) -> None:
    assert broken(with_stage(ApprovalStage(quorum=quorum))) == {
        ("approval.stages[0].quorum", "Range")
    }


@pytest.mark.parametrize("count", [1, 5])
def test_approval_may_have_one_to_five_stages(count: int) -> None:
    settings = replace(
        DEFAULT, approval=ApprovalRules(required=True, stages=(ApprovalStage(),) * count)
    )
    assert broken(settings) == set()


@pytest.mark.parametrize("required", [True, False])
def test_six_stages_are_too_many_even_when_approval_is_off(required: bool) -> None:
    settings = replace(
        DEFAULT, approval=ApprovalRules(required=required, stages=(ApprovalStage(),) * 6)
    )
    assert broken(settings) == {("approval.stages", "Range")}


def test_required_approval_without_stages_is_rejected() -> None:
    settings = replace(DEFAULT, approval=ApprovalRules(required=True, stages=()))
    assert broken(settings) == {("approval.stages", "Range")}


def test_no_stages_are_fine_while_approval_is_not_required() -> None:
    assert broken(replace(DEFAULT, approval=ApprovalRules(required=False, stages=()))) == set()


# --- activation rules -----------------------------------------------------------------------


@pytest.mark.parametrize("claim", [None, "", "   "])
def test_an_enabled_authentication_context_needs_a_claim(claim: str | None) -> None:
    rules = ActivationRules(authentication_context_enabled=True, authentication_context_claim=claim)
    assert broken(replace(DEFAULT, activation=rules)) == {
        ("activation.authentication_context_claim", "Required")
    }


def test_an_enabled_authentication_context_with_a_claim_is_accepted() -> None:
    rules = ActivationRules(authentication_context_enabled=True, authentication_context_claim="c1")
    assert broken(replace(DEFAULT, activation=rules)) == set()


def test_a_disabled_authentication_context_needs_no_claim() -> None:
    rules = ActivationRules(authentication_context_enabled=False, authentication_context_claim=None)
    assert broken(replace(DEFAULT, activation=rules)) == set()


# --- approval rules -------------------------------------------------------------------------


def test_quorum_larger_than_the_user_approvers_is_rejected() -> None:
    stage = ApprovalStage(approvers=(ALICE, BOB), quorum=3)
    assert broken(with_stage(stage)) == {("approval.stages[0].quorum", "Quorum")}


def test_quorum_equal_to_the_user_approvers_is_accepted() -> None:
    assert broken(with_stage(ApprovalStage(approvers=(ALICE, BOB, CAROL), quorum=3))) == set()


def test_quorum_is_not_bounded_by_the_approvers_when_a_group_is_among_them() -> None:
    assert broken(with_stage(ApprovalStage(approvers=(ALICE, ADMINS), quorum=5))) == set()


def test_quorum_is_not_bounded_when_the_administrators_approve() -> None:
    assert broken(with_stage(ApprovalStage(approvers=(), quorum=5))) == set()


def test_a_user_appearing_twice_in_a_stage_is_rejected() -> None:
    stage = ApprovalStage(approvers=(ALICE, BOB, ALICE))
    assert broken(with_stage(stage)) == {("approval.stages[0].approvers[2]", "Duplicate")}


def test_a_duplicate_approver_does_not_count_twice_towards_the_quorum() -> None:
    stage = ApprovalStage(approvers=(ALICE, ALICE), quorum=2)
    assert broken(with_stage(stage)) == {
        ("approval.stages[0].approvers[1]", "Duplicate"),
        ("approval.stages[0].quorum", "Quorum"),
    }


def test_an_escalation_approver_who_is_already_an_approver_of_the_stage_is_rejected() -> None:
    stage = ApprovalStage(
        approvers=(ALICE,),
        escalation_enabled=True,
        escalation_approvers=(BOB, ALICE),
        escalation_after=timedelta(hours=4),
    )
    assert broken(with_stage(stage)) == {
        ("approval.stages[0].escalation_approvers[1]", "Duplicate")
    }


def test_the_same_user_may_approve_in_two_different_stages() -> None:
    stages = (ApprovalStage(approvers=(ALICE,)), ApprovalStage(approvers=(ALICE,)))
    settings = replace(DEFAULT, approval=ApprovalRules(required=True, stages=stages))
    assert broken(settings) == set()


def test_a_user_and_a_group_that_share_an_id_are_different_approvers() -> None:
    stage = ApprovalStage(approvers=(ApproverRef.user("x"), ApproverRef.group("x")))
    assert broken(with_stage(stage)) == set()


@pytest.mark.parametrize("approver_id", ["", "  "])
def test_an_approver_needs_an_id(approver_id: str) -> None:
    stage = ApprovalStage(approvers=(ApproverRef(ApproverType.USER, approver_id),))
    assert broken(with_stage(stage)) == {("approval.stages[0].approvers[0].id", "Required")}


def test_escalation_needs_escalation_approvers() -> None:
    stage = ApprovalStage(escalation_enabled=True, escalation_after=timedelta(hours=4))
    assert broken(with_stage(stage)) == {("approval.stages[0].escalation_approvers", "Required")}


@pytest.mark.parametrize("after", [timedelta(0), timedelta(days=1), timedelta(days=2)])
def test_escalation_must_happen_after_some_time_and_before_the_stage_times_out(
    after: timedelta,
) -> None:
    stage = ApprovalStage(
        escalation_enabled=True, escalation_approvers=(BOB,), escalation_after=after
    )
    assert broken(with_stage(stage)) == {("approval.stages[0].escalation_after", "Range")}


@pytest.mark.parametrize("after", [SECOND, timedelta(days=1) - SECOND])
def test_escalation_just_inside_the_stage_timeout_is_accepted(after: timedelta) -> None:
    stage = ApprovalStage(
        escalation_enabled=True, escalation_approvers=(BOB,), escalation_after=after
    )
    assert broken(with_stage(stage)) == set()


def test_escalation_settings_are_not_checked_while_escalation_is_off() -> None:
    stage = ApprovalStage(escalation_enabled=False, escalation_after=timedelta(days=9))
    assert broken(with_stage(stage)) == set()


def test_a_negative_escalation_delay_is_rejected_even_while_escalation_is_off() -> None:
    stage = ApprovalStage(escalation_enabled=False, escalation_after=-MINUTE)
    assert broken(with_stage(stage)) == {("approval.stages[0].escalation_after", "Range")}


def test_stage_rules_are_checked_in_every_stage_even_while_approval_is_off() -> None:
    stages = (ApprovalStage(), ApprovalStage(quorum=0))
    settings = replace(DEFAULT, approval=ApprovalRules(required=False, stages=stages))
    assert broken(settings) == {("approval.stages[1].quorum", "Range")}


# --- notification rules ---------------------------------------------------------------------

RECIPIENTS = "notifications.activation.approver.additional_recipients"


def test_additional_recipients_that_are_email_addresses_are_accepted() -> None:
    assert broken(with_recipients("secops@contoso.com", "a.b+pim@mail.example.org")) == set()


@pytest.mark.parametrize(
    "address",
    ["secops", "@contoso.com", "secops@", "secops@contoso", "a b@contoso.com", "a@b.com;c@d.com"],
)
def test_an_additional_recipient_that_is_not_an_email_address_is_rejected(address: str) -> None:
    assert broken(with_recipients("ok@contoso.com", address)) == {
        (f"{RECIPIENTS}[1]", "EmailFormat")
    }


def test_an_overlong_email_address_is_rejected() -> None:
    address = "a" * 250 + "@x.io"
    assert broken(with_recipients(address)) == {(f"{RECIPIENTS}[0]", "EmailFormat")}


def test_the_same_recipient_twice_is_rejected_whatever_its_case() -> None:
    settings = with_recipients("secops@contoso.com", "SecOps@Contoso.com")
    assert broken(settings) == {(f"{RECIPIENTS}[1]", "Duplicate")}


def test_a_thousand_additional_recipients_are_accepted_and_one_more_is_not() -> None:
    addresses = [f"user{i}@example.com" for i in range(1001)]
    assert broken(with_recipients(*addresses[:1000])) == set()
    assert broken(with_recipients(*addresses)) == {(RECIPIENTS, "Range")}


def test_a_notification_rule_is_read_and_replaced_by_event_and_recipient() -> None:
    critical = NotificationRule(level=NotificationLevel.CRITICAL)
    rules = NotificationRules().with_rule(
        NotificationEvent.ELIGIBLE_ASSIGNMENT, NotificationRecipient.ADMIN, critical
    )
    assert rules.rule("eligible_assignment", "admin") == critical
    assert rules.eligible_assignment_admin == critical
    others = [r for e, p, r in rules.items() if (e, p) != ("eligible_assignment", "admin")]
    assert others == [NotificationRule()] * 8


def test_an_unknown_notification_event_or_recipient_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="sms"):
        NotificationRules().rule("activation", "sms")
    with pytest.raises(ValueError, match="renewal"):
        NotificationRules().rule("renewal", "admin")


# --- all at once ----------------------------------------------------------------------------


def messy() -> RoleSettings:
    return RoleSettings(
        activation=ActivationRules(
            maximum_duration=timedelta(hours=48), authentication_context_enabled=True
        ),
        approval=ApprovalRules(
            required=True, stages=(ApprovalStage(approvers=(ALICE, ALICE), quorum=30),)
        ),
        assignment=AssignmentRules(eligible_maximum_duration=timedelta(days=4000)),
        notifications=with_recipients("nope").notifications,
    )


def test_problems_reports_every_broken_rule_at_once() -> None:
    assert broken(messy()) == {
        ("activation.maximum_duration", "Range"),
        ("activation.authentication_context_claim", "Required"),
        ("approval.stages[0].quorum", "Range"),
        ("approval.stages[0].quorum", "Quorum"),
        ("approval.stages[0].approvers[1]", "Duplicate"),
        ("assignment.eligible_maximum_duration", "Range"),
        (f"{RECIPIENTS}[0]", "EmailFormat"),
    }


def test_validated_raises_invalid_policy_carrying_every_problem() -> None:
    with pytest.raises(InvalidPolicy) as caught:
        validated(messy())
    assert caught.value.errors == problems(messy())
    assert caught.value.code == "InvalidPolicy"
    assert caught.value.status == 400
    assert isinstance(caught.value, InvalidInput)
    assert "7 rules" in caught.value.message


# --- to_dict / from_dict --------------------------------------------------------------------


def rich() -> RoleSettings:
    """Valid settings that differ from the defaults in every section."""
    stage = ApprovalStage(
        approvers=(ALICE, ADMINS),
        quorum=2,
        timeout=timedelta(hours=12),
        approver_justification_required=False,
        escalation_enabled=True,
        escalation_approvers=(BOB,),
        escalation_after=timedelta(hours=2, minutes=30),
    )
    return RoleSettings(
        activation=ActivationRules(
            maximum_duration=timedelta(hours=1, minutes=45),
            require_mfa=False,
            require_ticket=True,
            authentication_context_enabled=True,
            authentication_context_claim="c1",
        ),
        approval=ApprovalRules(required=True, stages=(stage, ApprovalStage(approvers=(CAROL,)))),
        assignment=AssignmentRules(
            allow_permanent_eligible=True, active_maximum_duration=timedelta(days=30)
        ),
        notifications=NotificationRules().with_rule(
            "activation",
            "approver",
            NotificationRule(NotificationLevel.CRITICAL, False, ("secops@contoso.com",)),
        ),
    )


def test_to_dict_is_json_ready_with_iso_durations_lists_and_nested_notifications() -> None:
    data = to_dict(rich())
    assert json.loads(json.dumps(data)) == data
    assert data["activation"] == {
        "maximum_duration": "PT1H45M",
        "require_mfa": False,
        "require_justification": True,
        "require_ticket": True,
        "authentication_context_enabled": True,
        "authentication_context_claim": "c1",
    }
    approval = data["approval"]
    assert isinstance(approval, dict)
    assert approval["stages"][0] == {
        "approvers": [{"type": "user", "id": "alice"}, {"type": "group", "id": "admins"}],
        "quorum": 2,
        "timeout": "PT12H",
        "approver_justification_required": False,
        "escalation_enabled": True,
        "escalation_approvers": [{"type": "user", "id": "bob"}],
        "escalation_after": "PT2H30M",
    }
    notifications = data["notifications"]
    assert isinstance(notifications, dict)
    assert list(notifications) == ["eligible_assignment", "active_assignment", "activation"]
    assert notifications["activation"]["approver"] == {
        "level": "critical",
        "default_recipients": False,
        "additional_recipients": ["secops@contoso.com"],
    }
    assert notifications["activation"]["admin"]["level"] == "all"


def test_the_defaults_as_a_dict_say_p365d_p180d_and_pt8h() -> None:
    data = to_dict(DEFAULT)
    assert data["activation"]["maximum_duration"] == "PT8H"  # type: ignore[index]
    assert data["assignment"]["eligible_maximum_duration"] == "P365D"  # type: ignore[index]
    assert data["assignment"]["active_maximum_duration"] == "P180D"  # type: ignore[index]
    assert data["approval"]["stages"][0]["timeout"] == "P1D"  # type: ignore[index]


@pytest.mark.parametrize("settings", [DEFAULT, rich()], ids=["default", "rich"])
def test_settings_survive_a_round_trip_through_a_dict(settings: RoleSettings) -> None:
    assert from_dict(to_dict(settings)) == settings
    assert from_dict(json.loads(json.dumps(to_dict(settings)))) == settings


def test_a_whole_document_does_not_depend_on_the_base() -> None:
    assert from_dict(to_dict(DEFAULT), base=rich()) == DEFAULT


refs = st.builds(
    ApproverRef,
    st.sampled_from(ApproverType),
    st.text("abcdef0123456789-", min_size=1, max_size=8),
)
durations_within = st.integers(min_value=5 * 60, max_value=24 * 3600).map(
    lambda s: timedelta(seconds=s)
)
stages = st.builds(
    ApprovalStage,
    approvers=st.lists(refs, max_size=4, unique=True).map(tuple),
    quorum=st.just(1),
    timeout=st.timedeltas(min_value=timedelta(minutes=5), max_value=timedelta(days=30)),
    approver_justification_required=st.booleans(),
)
emails = st.lists(st.from_regex(r"[a-z]{1,8}@[a-z]{1,8}\.org", fullmatch=True), unique=True)
settings_strategy = st.builds(
    RoleSettings,
    activation=st.builds(
        ActivationRules,
        maximum_duration=durations_within,
        require_mfa=st.booleans(),
        require_ticket=st.booleans(),
        authentication_context_claim=st.none() | st.text(min_size=1, max_size=5),
    ),
    approval=st.builds(
        ApprovalRules,
        required=st.booleans(),
        required_for_extension=st.booleans(),
        stages=st.lists(stages, min_size=1, max_size=5).map(tuple),
    ),
    assignment=st.builds(
        AssignmentRules,
        allow_permanent_active=st.booleans(),
        eligible_maximum_duration=st.timedeltas(
            min_value=timedelta(minutes=5), max_value=timedelta(days=3650)
        ),
    ),
    notifications=st.builds(
        NotificationRules,
        activation_approver=st.builds(
            NotificationRule, st.sampled_from(NotificationLevel), st.booleans(), emails.map(tuple)
        ),
    ),
)


@given(settings_strategy)
def test_any_valid_settings_survive_a_round_trip_through_json(settings: RoleSettings) -> None:
    assert problems(settings) == []
    assert from_dict(json.loads(json.dumps(to_dict(settings)))) == settings


# --- partial documents ----------------------------------------------------------------------


def test_a_patch_changes_only_what_it_names() -> None:
    patched = from_dict({"activation": {"maximum_duration": "PT2H"}}, base=rich())
    assert patched == replace(
        rich(), activation=replace(rich().activation, maximum_duration=timedelta(hours=2))
    )


def test_an_empty_document_is_the_base() -> None:
    assert from_dict({}) == DEFAULT
    assert from_dict({}, base=rich()) == rich()


def test_with_changes_applies_a_patch_to_the_given_settings() -> None:
    patch = {"assignment": {"allow_permanent_active": True}}
    assert with_changes(rich(), patch) == from_dict(patch, base=rich())
    assert with_changes(rich(), patch).assignment.allow_permanent_active is True
    assert with_changes(rich(), patch).activation == rich().activation


def test_a_patch_to_one_notification_rule_keeps_the_rest_of_that_rule_and_the_others() -> None:
    patched = with_changes(
        rich(), {"notifications": {"activation": {"approver": {"level": "all"}}}}
    )
    rule = patched.notifications.rule("activation", "approver")
    assert rule == NotificationRule(NotificationLevel.ALL, False, ("secops@contoso.com",))
    assert patched.notifications.rule("activation", "admin") == NotificationRule()
    assert patched.activation == rich().activation


def test_a_list_in_a_patch_replaces_the_whole_list_and_its_items_start_from_defaults() -> None:
    patched = with_changes(rich(), {"approval": {"stages": [{"quorum": 1}]}})
    assert patched.approval.stages == (ApprovalStage(),)
    assert patched.approval.required is True


def test_the_str_timedelta_form_is_accepted_in_a_document() -> None:
    patched = from_dict({"activation": {"maximum_duration": "5:00:00"}})
    assert patched.activation.maximum_duration == timedelta(hours=5)


def test_null_clears_an_optional_setting() -> None:
    patched = with_changes(rich(), {"activation": {"authentication_context_enabled": False}})
    cleared = with_changes(patched, {"activation": {"authentication_context_claim": None}})
    assert cleared.activation.authentication_context_claim is None


def test_a_patch_that_breaks_a_rule_is_rejected_after_merging() -> None:
    errors = decode_errors({"activation": {"authentication_context_enabled": True}})
    assert errors == {("activation.authentication_context_claim", "Required")}
    assert decode_errors({"approval": {"required": True, "stages": []}}) == {
        ("approval.stages", "Range")
    }


def test_a_decoded_duration_out_of_range_is_reported_as_a_range_error() -> None:
    assert decode_errors({"activation": {"maximum_duration": "P2D"}}) == {
        ("activation.maximum_duration", "Range")
    }


# --- documents that cannot be read ----------------------------------------------------------


def test_unknown_fields_are_reported_with_their_dotted_path() -> None:
    document = {
        "color": "red",
        "activation": {"max_duration": "PT1H"},
        "approval": {"stages": [{"approvers": [{"type": "user", "id": "a", "role": "x"}]}]},
        "notifications": {"renewal": {}, "activation": {"sms": {}, "admin": {"loud": True}}},
    }
    assert decode_errors(document) == {
        ("color", "UnknownField"),
        ("activation.max_duration", "UnknownField"),
        ("approval.stages[0].approvers[0].role", "UnknownField"),
        ("notifications.renewal", "UnknownField"),
        ("notifications.activation.sms", "UnknownField"),
        ("notifications.activation.admin.loud", "UnknownField"),
    }


@pytest.mark.parametrize(
    ("document", "path"),
    [
        ({"activation": "PT8H"}, "activation"),
        ({"activation": {"require_mfa": 1}}, "activation.require_mfa"),
        ({"activation": {"require_mfa": "true"}}, "activation.require_mfa"),
        ({"activation": {"require_mfa": None}}, "activation.require_mfa"),
        ({"activation": {"maximum_duration": 3600}}, "activation.maximum_duration"),
        (
            {"activation": {"authentication_context_claim": 1}},
            "activation.authentication_context_claim",
        ),
        ({"approval": {"stages": {"quorum": 1}}}, "approval.stages"),
        ({"approval": {"stages": "one"}}, "approval.stages"),
        ({"approval": {"stages": [{"quorum": True}]}}, "approval.stages[0].quorum"),
        ({"approval": {"stages": [{"quorum": 1.0}]}}, "approval.stages[0].quorum"),
        ({"approval": {"stages": [{"quorum": "2"}]}}, "approval.stages[0].quorum"),
        ({"approval": {"stages": ["alice"]}}, "approval.stages[0]"),
        (
            {"approval": {"stages": [{"approvers": [{"type": "user", "id": 7}]}]}},
            "approval.stages[0].approvers[0].id",
        ),
        ({"notifications": []}, "notifications"),
        ({"notifications": {"activation": "all"}}, "notifications.activation"),
        (
            {"notifications": {"activation": {"admin": {"level": 2}}}},
            "notifications.activation.admin.level",
        ),
        (
            {"notifications": {"activation": {"admin": {"additional_recipients": "a@b.org"}}}},
            "notifications.activation.admin.additional_recipients",
        ),
    ],
)
def test_a_value_of_the_wrong_type_is_reported_with_its_dotted_path(
    document: dict[str, object], path: str
) -> None:
    assert decode_errors(document) == {(path, "Type")}


def test_a_document_that_is_not_an_object_is_a_type_error() -> None:
    assert decode_errors(["activation"]) == {("", "Type")}


@pytest.mark.parametrize("text", ["PT0.5H", "P1M", "8 hours", "-PT1H", ""])
def test_an_unreadable_duration_is_reported_with_its_dotted_path(text: str) -> None:
    errors = decode_errors({"approval": {"stages": [{}, {"timeout": text}]}})
    assert errors == {("approval.stages[1].timeout", "DurationFormat")}


def test_a_value_outside_an_enumeration_is_reported_with_the_choices() -> None:
    with pytest.raises(InvalidPolicy) as caught:
        from_dict({"notifications": {"activation": {"admin": {"level": "Critical"}}}})
    (error,) = caught.value.errors
    assert error.field == "notifications.activation.admin.level"
    assert error.rule == "Choice"
    assert "none, critical, all" in error.message


def test_an_approver_without_a_type_or_an_id_is_reported() -> None:
    document: dict[str, object] = {"approval": {"stages": [{"approvers": [{}]}]}}
    assert decode_errors(document) == {
        ("approval.stages[0].approvers[0].type", "Required"),
        ("approval.stages[0].approvers[0].id", "Required"),
    }


def test_every_problem_of_a_document_is_reported_together() -> None:
    document = {
        "activation": {"maximum_duration": "soon", "require_mfa": "yes", "bogus": 1},
        "assignment": {"active_maximum_duration": "P1Y"},
    }
    assert decode_errors(document) == {
        ("activation.maximum_duration", "DurationFormat"),
        ("activation.require_mfa", "Type"),
        ("activation.bogus", "UnknownField"),
        ("assignment.active_maximum_duration", "DurationFormat"),
    }


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
section_keys = st.sampled_from(["activation", "approval", "assignment", "notifications", "x"])


@given(st.dictionaries(section_keys, json_values, max_size=4))
def test_any_json_document_either_decodes_or_raises_invalid_policy(
    document: dict[str, object],
) -> None:
    outcome: RoleSettings | InvalidPolicy
    try:
        outcome = from_dict(document)
    except InvalidPolicy as error:
        outcome = error
    if isinstance(outcome, InvalidPolicy):
        assert outcome.errors
    else:
        assert problems(outcome) == []
