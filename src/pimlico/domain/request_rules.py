"""The rules a self-service request must keep, judged against the target's role settings.

Pure: given the settings, the request, ``now``, the assignment the request acts on and whether
the requester's MFA verification is fresh, ``plan`` lists every broken rule at once (with the
codes Entra PIM uses, so scripts written for it read our answers alike) and says what would
happen: the resolved window, whether approval is needed and by which stages. The same plan
serves the dry run and the real submission. Administrators' requests are judged by
``assignment_rules``; nothing here stores, looks anything up or changes a request.

Choices the caller must know:

- **Too long is refused, never capped.** A duration above ``activation.maximum_duration``, or
  an end past the end of the eligibility, fails ``ExpirationRule`` with the latest allowed end
  in the message: silently shortening what someone asked for hides the policy from them (and
  from the script that asked). Only when no duration is given at all does the window take the
  longest allowed, bounded by the eligibility's end.
- **Extend and renew reuse ``ExpirationRule``** for "not within 14 days of the end" and "not
  yet expired": clients written for Entra know that code, and the message says which.
- **Self extend and renew always need approval**, as in Entra, where user extend/renew
  requests go to administrators: otherwise a holder could renew their eligibility forever on
  their own. With ``approval.required_for_extension`` the policy's stages decide; without it
  one default stage of the administrators holding ``pim.requests.approve`` does.
- **Activation MFA** is required when ``require_mfa`` is set and also when an authentication
  context is enabled (Entra's fallback when no conditional-access policy targets it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pimlico.domain.assignment_rules import window_problems
from pimlico.domain.durations import format_duration
from pimlico.domain.model import MINIMUM_DURATION, Assignment, AssignmentKind, Window
from pimlico.domain.policy import ApprovalStage, RoleSettings
from pimlico.domain.requests import ExpirationType, Request, RequestAction, RequestStatus
from pimlico.errors import (
    ActiveDurationTooShort,
    FieldError,
    PolicyViolation,
    RoleAssignmentDoesNotExist,
    RoleAssignmentExists,
)

EXTEND_WINDOW = timedelta(days=14)
"""A holder may ask to extend an assignment that ends within this long."""
RENEW_WINDOW = timedelta(days=30)
"""A holder may ask to renew an assignment that expired at most this long ago."""
DEFAULT_APPROVAL_STAGE = ApprovalStage()
"""No named approvers: the holders of ``pim.requests.approve`` decide within one day."""

_DEDICATED = {
    "RoleAssignmentExists": RoleAssignmentExists,
    "RoleAssignmentDoesNotExist": RoleAssignmentDoesNotExist,
    "ActiveDurationTooShort": ActiveDurationTooShort,
}


@dataclass(frozen=True, slots=True)
class RequestPlan:
    """What submitting the request would do — the answer of a dry run, too.

    ``window`` is ``None`` when the schedule could not be resolved or does not apply
    (deactivation ends the assignment at ``now``: its window is ``[now, now)``).
    ``stages`` is empty when no approval is needed.
    """

    problems: tuple[FieldError, ...]
    window: Window | None
    stages: tuple[ApprovalStage, ...]

    @property
    def valid(self) -> bool:
        return not self.problems

    @property
    def needs_approval(self) -> bool:
        return bool(self.stages)

    @property
    def initial_status(self) -> RequestStatus:
        if self.needs_approval:
            return RequestStatus.PENDING_APPROVAL
        return RequestStatus.GRANTED

    def raise_for_problems(self) -> None:
        """Raise the error for the problems, if any.

        A single refusal with a dedicated Entra code (``RoleAssignmentExists``,
        ``RoleAssignmentDoesNotExist``, ``ActiveDurationTooShort``) raises that error;
        anything else raises ``PolicyViolation`` naming every failed rule.
        """
        if not self.problems:
            return
        rules = {p.rule for p in self.problems}
        if len(rules) == 1 and (rule := rules.pop()) in _DEDICATED:
            raise _DEDICATED[rule]("; ".join(p.message for p in self.problems))
        raise PolicyViolation(list(self.problems))


def approval_stages(settings: RoleSettings, action: RequestAction) -> tuple[ApprovalStage, ...]:
    """The approval stages a request of ``action`` goes through; empty: none needed."""
    approval = settings.approval
    if action is RequestAction.SELF_ACTIVATE:
        return approval.stages if approval.required else ()
    if action in (RequestAction.SELF_EXTEND, RequestAction.SELF_RENEW):
        return approval.stages if approval.required_for_extension else (DEFAULT_APPROVAL_STAGE,)
    return ()


def plan(
    settings: RoleSettings,
    request: Request,
    *,
    now: datetime,
    eligible: Assignment | None,
    active: Assignment | None,
    mfa_fresh: bool,
) -> RequestPlan:
    """Judge a self-service ``request``: every broken rule, the window and the approval.

    ``eligible`` and ``active`` are the requester's assignments of the request's target
    (``None``: none). For extend and renew, the one of the request's ``kind`` is the one
    acted on; for renew it is the most recent expired one.
    """
    action = request.action
    if not action.is_self_service:
        raise ValueError(f"{action.value} is an administrator's action; see assignment_rules")
    found: list[FieldError] = []
    stages = approval_stages(settings, action)
    window: Window | None
    if action is RequestAction.SELF_ACTIVATE:
        window = _activation(settings, request, now, eligible, active, mfa_fresh, found)
    elif action is RequestAction.SELF_DEACTIVATE:
        window = _deactivation(now, active, found)
    else:
        existing = eligible if request.kind is AssignmentKind.ELIGIBLE else active
        window = _prolongation(settings, request, now, existing, found)
    asked = any(p.rule == "JustificationRule" for p in found)
    if stages and settings.approval.requestor_justification_required and not asked:
        _need_justification(request, found, "the approvers need a justification")
    return RequestPlan(tuple(dict.fromkeys(found)), window, stages)


def problems(
    settings: RoleSettings,
    request: Request,
    *,
    now: datetime,
    eligible: Assignment | None,
    active: Assignment | None,
    mfa_fresh: bool,
) -> list[FieldError]:
    """Every rule the self-service ``request`` breaks; empty when it may be submitted."""
    result = plan(settings, request, now=now, eligible=eligible, active=active, mfa_fresh=mfa_fresh)
    return list(result.problems)


def _need_justification(request: Request, found: list[FieldError], message: str) -> None:
    if not (request.justification and request.justification.strip()):
        found.append(FieldError("justification", "JustificationRule", message))


def _activation(
    settings: RoleSettings,
    request: Request,
    now: datetime,
    eligible: Assignment | None,
    active: Assignment | None,
    mfa_fresh: bool,
    found: list[FieldError],
) -> Window | None:
    rules = settings.activation
    schedule = request.schedule
    shape = schedule.problems()
    found.extend(shape)
    window: Window | None = None
    if not shape:
        if schedule.expiration is ExpirationType.NO_EXPIRATION:
            found.append(
                FieldError("schedule.expiration", "ExpirationRule", "an activation must end")
            )
        else:
            longest = rules.maximum_duration
            eligible_end = eligible.effective_end if eligible is not None else None
            if schedule.duration is None and eligible_end is not None:
                start = now if schedule.start is None else max(schedule.start, now)
                longest = max(min(longest, eligible_end - start), timedelta(0))
            window = schedule.resolve(now, longest)
    in_force = eligible is not None and eligible.in_force(window.start if window else now)
    if not in_force:
        found.append(
            FieldError(
                "target",
                "EligibilityRule",
                f"{request.principal} holds no eligible assignment of {request.target} "
                "in force when the activation would start",
            )
        )
    if active is not None and active.is_current_or_future(now):
        found.append(
            FieldError(
                "target",
                "RoleAssignmentExists",
                f"{request.target} is already active for {request.principal} "
                f"(assignment {active.id})",
            )
        )
    if window is not None and window.end is not None:
        length = window.end - window.start
        if length > rules.maximum_duration:
            found.append(
                FieldError(
                    "schedule",
                    "ExpirationRule",
                    f"activations of {request.target} last at most "
                    f"{format_duration(rules.maximum_duration)}, not {format_duration(length)}",
                )
            )
        if length < MINIMUM_DURATION:
            found.append(
                FieldError(
                    "schedule",
                    "ExpirationRule",
                    f"an activation lasts at least {format_duration(MINIMUM_DURATION)}",
                )
            )
        eligible_end = eligible.effective_end if eligible is not None else None
        # Past an eligibility not in force at all, EligibilityRule already says everything.
        if in_force and eligible_end is not None and window.end > eligible_end:
            found.append(
                FieldError(
                    "schedule",
                    "ExpirationRule",
                    f"the activation would end after the eligibility does; "
                    f"end it at {eligible_end.isoformat()} at the latest",
                )
            )
    if rules.require_justification:
        _need_justification(request, found, "activating this target needs a justification")
    ticket = request.ticket
    if rules.require_ticket and not (ticket and ticket.system.strip() and ticket.number.strip()):
        found.append(
            FieldError(
                "ticket", "TicketingRule", "activating this target needs a ticket system and number"
            )
        )
    if (rules.require_mfa or rules.authentication_context_enabled) and not mfa_fresh:
        found.append(
            FieldError("mfa", "MfaRule", "activating this target needs a fresh MFA verification")
        )
    return window


def _deactivation(
    now: datetime, active: Assignment | None, found: list[FieldError]
) -> Window | None:
    if active is None or not active.in_force(now):
        found.append(
            FieldError(
                "target", "RoleAssignmentDoesNotExist", "there is no active assignment to end"
            )
        )
        return None
    if now - active.start < MINIMUM_DURATION:
        found.append(
            FieldError(
                "target",
                "ActiveDurationTooShort",
                f"the active duration is too short; it can be ended from "
                f"{(active.start + MINIMUM_DURATION).isoformat()}",
            )
        )
    return Window(now, now)


def _prolongation(
    settings: RoleSettings,
    request: Request,
    now: datetime,
    existing: Assignment | None,
    found: list[FieldError],
) -> Window | None:
    """Extend (ends within 14 days, still in force) or renew (expired within 30 days).

    The schedule gives the new end (a duration counts from now). An extension keeps the
    assignment's start; a renewal starts at the schedule's start.
    """
    extend = request.action is RequestAction.SELF_EXTEND
    verb = "extend" if extend else "renew"
    _need_justification(request, found, f"a request to {verb} needs a justification")
    if existing is None:
        found.append(
            FieldError("target", "RoleAssignmentDoesNotExist", f"there is no assignment to {verb}")
        )
        return None
    end = existing.end
    removed = existing.ended_at is not None and (end is None or existing.ended_at < end)
    if removed or end is None:
        why = "was removed" if removed else "is permanent"
        found.append(
            FieldError("target", "RoleAssignmentDoesNotExist", f"assignment {existing.id} {why}")
        )
        return None
    if extend and end <= now:
        found.append(
            FieldError(
                "schedule", "ExpirationRule", f"assignment {existing.id} has expired; renew it"
            )
        )
    elif extend and end - now > EXTEND_WINDOW:
        found.append(
            FieldError(
                "schedule",
                "ExpirationRule",
                f"an assignment can be extended only within {EXTEND_WINDOW.days} days of its "
                f"end ({end.isoformat()})",
            )
        )
    elif not extend and end > now:
        found.append(
            FieldError(
                "schedule", "ExpirationRule", f"assignment {existing.id} has not expired; extend it"
            )
        )
    elif not extend and now - end > RENEW_WINDOW:
        found.append(
            FieldError(
                "target",
                "RoleAssignmentDoesNotExist",
                f"assignment {existing.id} expired more than {RENEW_WINDOW.days} days ago; "
                "ask an administrator for a new one",
            )
        )
    shape = request.schedule.problems()
    found.extend(shape)
    if shape:
        return None
    resolved = request.schedule.resolve(now, default_length(settings, request.kind))
    start = existing.start if extend else resolved.start
    window = Window(start, resolved.end)
    found.extend(
        window_problems(settings, kind=request.kind, start=start, end=window.end, measured_from=now)
    )
    if extend and window.end is not None and window.end <= end:
        found.append(
            FieldError(
                "schedule", "ExpirationRule", f"an extension must end after {end.isoformat()}"
            )
        )
    return window


def may_extend(end: datetime | None, now: datetime) -> bool:
    """May an assignment ending at ``end`` be extended at ``now`` (in force, ending within
    ``EXTEND_WINDOW``)? The rule ``_prolongation`` refuses by; for showing the action."""
    return end is not None and now < end and end - now <= EXTEND_WINDOW


def default_length(settings: RoleSettings, kind: AssignmentKind) -> timedelta:
    """How long an extension or renewal lasts when its request names no length: the
    longest the settings allow for ``kind``."""
    rules = settings.assignment
    if kind is AssignmentKind.ELIGIBLE:
        return rules.eligible_maximum_duration
    return rules.active_maximum_duration
