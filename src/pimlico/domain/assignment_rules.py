"""The rules an administrator's assignment must keep, judged against the target's settings.

Pure: given the policy, the proposed window and what the caller brought (justification, MFA),
list every rule broken, with the codes Entra PIM uses (``ExpirationRule``,
``JustificationRule``, ``MfaRule``) so that scripts written for it read our answers alike.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pimlico.domain.durations import format_duration
from pimlico.domain.model import MINIMUM_DURATION, AssignmentKind
from pimlico.domain.policy import RoleSettings
from pimlico.errors import FieldError


def resolve_end(
    start: datetime, end: datetime | None, duration: timedelta | None
) -> tuple[datetime | None, list[FieldError]]:
    """The end given directly or as a duration from ``start`` (neither: permanent)."""
    if end is not None and duration is not None:
        return end, [
            FieldError("duration", "ExpirationRule", "give an end or a duration, not both")
        ]
    if duration is not None:
        try:
            return start + duration, []
        except OverflowError:
            return None, [FieldError("duration", "ExpirationRule", "the duration is far too long")]
    return end, []


def window_problems(
    settings: RoleSettings,
    *,
    kind: AssignmentKind,
    start: datetime,
    end: datetime | None,
    measured_from: datetime,
) -> list[FieldError]:
    """Is ``[start, end)`` allowed for an assignment of ``kind``?

    The maximum is measured from ``measured_from`` (the start, or now for an extension).
    """
    rules = settings.assignment
    if kind is AssignmentKind.ELIGIBLE:
        allow_permanent, maximum = rules.allow_permanent_eligible, rules.eligible_maximum_duration
    else:
        allow_permanent, maximum = rules.allow_permanent_active, rules.active_maximum_duration
    if end is None:
        if allow_permanent:
            return []
        return [
            FieldError(
                "end",
                "ExpirationRule",
                f"permanent {kind.value} assignments are not allowed for this target; "
                f"give an end at most {format_duration(maximum)} away",
            )
        ]
    problems: list[FieldError] = []
    if end - start < MINIMUM_DURATION:
        problems.append(
            FieldError(
                "end",
                "ExpirationRule",
                f"an assignment lasts at least {format_duration(MINIMUM_DURATION)}",
            )
        )
    if end - max(start, measured_from) > maximum:
        problems.append(
            FieldError(
                "end",
                "ExpirationRule",
                f"{kind.value} assignments of this target last at most {format_duration(maximum)}",
            )
        )
    return problems


def caller_problems(
    settings: RoleSettings, *, kind: AssignmentKind, justification: str | None, mfa_verified: bool
) -> list[FieldError]:
    """What the administrator owes for any change to an assignment of ``kind``."""
    rules = settings.assignment
    if kind is AssignmentKind.ELIGIBLE:
        need_justification = rules.eligible_require_justification
        need_mfa = rules.eligible_require_mfa
    else:
        need_justification = rules.active_require_justification
        need_mfa = rules.active_require_mfa
    problems: list[FieldError] = []
    if need_justification and not justification:
        problems.append(
            FieldError("justification", "JustificationRule", "this target needs a justification")
        )
    if need_mfa and not mfa_verified:
        problems.append(
            FieldError("mfa", "MfaRule", "this target needs a fresh multi-factor verification")
        )
    return problems


def assignment_problems(
    settings: RoleSettings,
    *,
    kind: AssignmentKind,
    start: datetime,
    end: datetime | None,
    now: datetime,
    justification: str | None,
    mfa_verified: bool,
) -> list[FieldError]:
    """Every rule an administrator's new or changed assignment breaks."""
    problems = window_problems(settings, kind=kind, start=start, end=end, measured_from=start)
    if end is not None and end <= now:
        problems.append(FieldError("end", "ExpirationRule", "the end is already past"))
    return problems + caller_problems(
        settings, kind=kind, justification=justification, mfa_verified=mfa_verified
    )
