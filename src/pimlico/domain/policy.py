"""Role settings: the policy of one target (a role, a group's membership or its ownership).

Owns the shape of the settings, their defaults (those of Microsoft Entra PIM, PIM-REFERENCE.md
§1(b)) and every rule a consistent policy keeps: ``problems`` lists each broken rule with a
dotted field path, ``validated`` raises them together as ``InvalidPolicy``. It does not read
or write JSON (``policy_codec`` does), store anything, or judge requests against a policy.

Where Pimlico goes beyond Entra: an approval stage's timeout is configurable (Entra fixes it
at 24 hours), a stage may need a quorum of several approvers, and there may be up to five
stages.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta

from pimlico.domain.durations import format_duration
from pimlico.domain.model import MINIMUM_DURATION
from pimlico.errors import FieldError, InvalidPolicy

ACTIVATION_DURATION_RANGE = (MINIMUM_DURATION, timedelta(hours=24))
"""Bounds of ``activation.maximum_duration``, both inclusive."""
ASSIGNMENT_DURATION_RANGE = (MINIMUM_DURATION, timedelta(days=3650))
"""Bounds of ``assignment.eligible_maximum_duration`` and ``active_maximum_duration``."""
STAGE_TIMEOUT_RANGE = (MINIMUM_DURATION, timedelta(days=30))
"""Bounds of an approval stage's ``timeout``."""
QUORUM_RANGE = (1, 25)
STAGE_COUNT_RANGE = (1, 5)
"""How many approval stages a policy that requires approval may have."""
MAX_ADDITIONAL_RECIPIENTS = 1000
"""Extra addresses per notification rule (Entra's limit per event)."""
MAX_EMAIL_LENGTH = 254

_EMAIL = re.compile(r"[^@\s;,<>]+@[^@\s;,<>.]+(?:\.[^@\s;,<>.]+)+")


class ApproverType(enum.StrEnum):
    USER = "user"
    GROUP = "group"


class NotificationLevel(enum.StrEnum):
    """``critical`` sends only the mails that need someone to act."""

    NONE = "none"
    CRITICAL = "critical"
    ALL = "all"


class NotificationEvent(enum.StrEnum):
    ELIGIBLE_ASSIGNMENT = "eligible_assignment"
    ACTIVE_ASSIGNMENT = "active_assignment"
    ACTIVATION = "activation"


class NotificationRecipient(enum.StrEnum):
    ADMIN = "admin"
    REQUESTOR = "requestor"
    APPROVER = "approver"


@dataclass(frozen=True, slots=True)
class ActivationRules:
    """What the holder of an eligible assignment must do to activate it, and for how long."""

    maximum_duration: timedelta = timedelta(hours=8)
    require_mfa: bool = True
    require_justification: bool = True
    require_ticket: bool = False
    """The ticket is recorded for the audit trail, never checked against a ticketing system."""
    authentication_context_enabled: bool = False
    authentication_context_claim: str | None = None
    """The claim the session must carry; required when the context is enabled."""


@dataclass(frozen=True, slots=True)
class ApproverRef:
    """A user or a group (any of whose members may approve), by id."""

    type: ApproverType
    id: str

    @classmethod
    def user(cls, user_id: str) -> ApproverRef:
        return cls(ApproverType.USER, user_id)

    @classmethod
    def group(cls, group_id: str) -> ApproverRef:
        return cls(ApproverType.GROUP, group_id)


@dataclass(frozen=True, slots=True)
class ApprovalStage:
    """One stage of approval: ``quorum`` of ``approvers`` must approve within ``timeout``.

    No approvers means the administrators who hold ``pim.requests.approve``. When escalation
    is enabled and nobody has decided after ``escalation_after``, the escalation approvers
    are asked too.
    """

    approvers: tuple[ApproverRef, ...] = ()
    quorum: int = 1
    timeout: timedelta = timedelta(days=1)
    approver_justification_required: bool = True
    escalation_enabled: bool = False
    escalation_approvers: tuple[ApproverRef, ...] = ()
    escalation_after: timedelta = timedelta(0)


@dataclass(frozen=True, slots=True)
class ApprovalRules:
    """Whether an activation (or an extension) needs approval, and by whom, stage by stage."""

    required: bool = False
    required_for_extension: bool = False
    requestor_justification_required: bool = True
    stages: tuple[ApprovalStage, ...] = (ApprovalStage(),)


@dataclass(frozen=True, slots=True)
class AssignmentRules:
    """How long administrators may grant eligible and active assignments, and what they owe."""

    allow_permanent_eligible: bool = False
    eligible_maximum_duration: timedelta = timedelta(days=365)
    allow_permanent_active: bool = False
    active_maximum_duration: timedelta = timedelta(days=180)
    active_require_mfa: bool = False
    active_require_justification: bool = True
    eligible_require_mfa: bool = False
    eligible_require_justification: bool = False


@dataclass(frozen=True, slots=True)
class NotificationRule:
    """Which mails one kind of recipient gets for one event, and who else gets a copy."""

    level: NotificationLevel = NotificationLevel.ALL
    default_recipients: bool = True
    additional_recipients: tuple[str, ...] = ()
    """Extra email addresses; at most ``MAX_ADDITIONAL_RECIPIENTS``, no duplicates."""


@dataclass(frozen=True, slots=True)
class NotificationRules:
    """The nine notification rules, one per event and recipient; complete by construction.

    Read one with ``rule(event, recipient)``, walk them with ``items()`` and change one with
    ``with_rule``; the fields are named ``{event}_{recipient}``.
    """

    eligible_assignment_admin: NotificationRule = NotificationRule()
    eligible_assignment_requestor: NotificationRule = NotificationRule()
    eligible_assignment_approver: NotificationRule = NotificationRule()
    active_assignment_admin: NotificationRule = NotificationRule()
    active_assignment_requestor: NotificationRule = NotificationRule()
    active_assignment_approver: NotificationRule = NotificationRule()
    activation_admin: NotificationRule = NotificationRule()
    activation_requestor: NotificationRule = NotificationRule()
    activation_approver: NotificationRule = NotificationRule()

    def rule(
        self, event: NotificationEvent | str, recipient: NotificationRecipient | str
    ) -> NotificationRule:
        """The rule for ``event`` and ``recipient``; ``ValueError`` if either is unknown."""
        rule: NotificationRule = getattr(self, _rule_name(event, recipient))
        return rule

    def items(self) -> Iterator[tuple[NotificationEvent, NotificationRecipient, NotificationRule]]:
        """All nine rules, events and recipients in declaration order."""
        for event in NotificationEvent:
            for recipient in NotificationRecipient:
                yield event, recipient, self.rule(event, recipient)

    def with_rule(
        self,
        event: NotificationEvent | str,
        recipient: NotificationRecipient | str,
        rule: NotificationRule,
    ) -> NotificationRules:
        """A copy with the rule for ``event`` and ``recipient`` replaced."""
        changes: dict[str, NotificationRule] = {_rule_name(event, recipient): rule}
        return replace(self, **changes)


def _rule_name(event: NotificationEvent | str, recipient: NotificationRecipient | str) -> str:
    return f"{NotificationEvent(event).value}_{NotificationRecipient(recipient).value}"


@dataclass(frozen=True, slots=True)
class RoleSettings:
    """The whole policy of one target. Build with ``default()`` and ``dataclasses.replace``."""

    activation: ActivationRules = ActivationRules()
    approval: ApprovalRules = ApprovalRules()
    assignment: AssignmentRules = AssignmentRules()
    notifications: NotificationRules = NotificationRules()

    @classmethod
    def default(cls) -> RoleSettings:
        """Entra PIM's defaults for a directory role."""
        return cls()


def problems(settings: RoleSettings) -> list[FieldError]:
    """Every rule ``settings`` breaks, each with a dotted field path; empty when valid."""
    found: list[FieldError] = []
    _check_activation(settings.activation, found)
    _check_approval(settings.approval, found)
    for name in ("eligible_maximum_duration", "active_maximum_duration"):
        value: timedelta = getattr(settings.assignment, name)
        _check_duration(value, ASSIGNMENT_DURATION_RANGE, f"assignment.{name}", found)
    for event, recipient, rule in settings.notifications.items():
        _check_notification(rule, f"notifications.{event.value}.{recipient.value}", found)
    return found


def validated(settings: RoleSettings) -> RoleSettings:
    """``settings`` itself when it keeps every rule; ``InvalidPolicy`` naming all broken ones."""
    found = problems(settings)
    if found:
        raise InvalidPolicy(describe(found), found)
    return settings


def describe(found: list[FieldError]) -> str:
    """The one-line message of an ``InvalidPolicy`` carrying ``found``."""
    count = len(found)
    return f"the role settings break {count} rule{'s' if count != 1 else ''}"


def _show(value: timedelta) -> str:
    if value < timedelta(0):
        return "-" + format_duration(-value)
    return format_duration(value)


def _check_duration(
    value: timedelta, bounds: tuple[timedelta, timedelta], path: str, found: list[FieldError]
) -> None:
    low, high = bounds
    if not low <= value <= high:
        found.append(
            FieldError(
                path,
                "Range",
                f"must be between {_show(low)} and {_show(high)} inclusive, not {_show(value)}",
            )
        )


def _check_activation(rules: ActivationRules, found: list[FieldError]) -> None:
    _check_duration(
        rules.maximum_duration, ACTIVATION_DURATION_RANGE, "activation.maximum_duration", found
    )
    claim = rules.authentication_context_claim
    if rules.authentication_context_enabled and not (claim and claim.strip()):
        found.append(
            FieldError(
                "activation.authentication_context_claim",
                "Required",
                "name the authentication context claim (such as 'c1') or turn "
                "authentication_context_enabled off",
            )
        )


def _check_approval(rules: ApprovalRules, found: list[FieldError]) -> None:
    low, high = STAGE_COUNT_RANGE
    count = len(rules.stages)
    if count > high or (rules.required and count < low):
        needed = f"between {low} and {high}" if rules.required else f"at most {high}"
        found.append(FieldError("approval.stages", "Range", f"needs {needed} stages, not {count}"))
    for index, stage in enumerate(rules.stages):
        _check_stage(stage, f"approval.stages[{index}]", found)


def _check_stage(stage: ApprovalStage, path: str, found: list[FieldError]) -> None:
    low, high = QUORUM_RANGE
    if not low <= stage.quorum <= high:
        found.append(
            FieldError(
                f"{path}.quorum",
                "Range",
                f"must be between {low} and {high} inclusive, not {stage.quorum}",
            )
        )
    users = {a.id for a in stage.approvers if a.type == ApproverType.USER}
    only_users = all(a.type == ApproverType.USER for a in stage.approvers)
    if stage.approvers and only_users and stage.quorum > len(users):
        found.append(
            FieldError(
                f"{path}.quorum",
                "Quorum",
                f"a quorum of {stage.quorum} can never be met by the {len(users)} user "
                "approver(s) of this stage; lower it, add approvers or name a group",
            )
        )
    _check_duration(stage.timeout, STAGE_TIMEOUT_RANGE, f"{path}.timeout", found)
    _check_approvers(stage, path, found)
    if stage.escalation_enabled:
        if not stage.escalation_approvers:
            found.append(
                FieldError(
                    f"{path}.escalation_approvers",
                    "Required",
                    "name at least one escalation approver or turn escalation_enabled off",
                )
            )
        if not timedelta(0) < stage.escalation_after < stage.timeout:
            found.append(
                FieldError(
                    f"{path}.escalation_after",
                    "Range",
                    f"must be more than PT0S and less than the stage timeout "
                    f"({_show(stage.timeout)}), not {_show(stage.escalation_after)}",
                )
            )
    elif stage.escalation_after < timedelta(0):
        found.append(FieldError(f"{path}.escalation_after", "Range", "must not be negative"))


def _check_approvers(stage: ApprovalStage, path: str, found: list[FieldError]) -> None:
    """Every approver has an id, and nobody appears twice in one stage, escalation included."""
    seen: dict[tuple[ApproverType, str], str] = {}
    lists = (("approvers", stage.approvers), ("escalation_approvers", stage.escalation_approvers))
    for name, approvers in lists:
        for index, ref in enumerate(approvers):
            where = f"{path}.{name}[{index}]"
            if not ref.id.strip():
                found.append(FieldError(f"{where}.id", "Required", "an approver needs an id"))
                continue
            key = (ref.type, ref.id)
            if key in seen:
                found.append(
                    FieldError(
                        where,
                        "Duplicate",
                        f"{ref.type} {ref.id!r} already appears in this stage "
                        f"at {seen[key]}; name each approver once per stage",
                    )
                )
            else:
                seen[key] = f"{name}[{index}]"


def _check_notification(rule: NotificationRule, path: str, found: list[FieldError]) -> None:
    recipients = rule.additional_recipients
    if len(recipients) > MAX_ADDITIONAL_RECIPIENTS:
        found.append(
            FieldError(
                f"{path}.additional_recipients",
                "Range",
                f"at most {MAX_ADDITIONAL_RECIPIENTS} addresses, not {len(recipients)}",
            )
        )
    seen: dict[str, int] = {}
    for index, address in enumerate(recipients):
        where = f"{path}.additional_recipients[{index}]"
        if len(address) > MAX_EMAIL_LENGTH or not _EMAIL.fullmatch(address):
            found.append(
                FieldError(
                    where,
                    "EmailFormat",
                    f"{address[:MAX_EMAIL_LENGTH]!r} is not an email address such as "
                    "secops@example.com (one address per entry)",
                )
            )
            continue
        # Mail systems treat addresses case-insensitively in practice; two spellings of one
        # address would send every mail twice.
        key = address.casefold()
        if key in seen:
            found.append(
                FieldError(
                    where,
                    "Duplicate",
                    f"{address!r} already appears at additional_recipients[{seen[key]}]",
                )
            )
        else:
            seen[key] = index
