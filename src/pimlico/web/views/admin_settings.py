"""Role settings in the portal: the list of targets with a summary of each policy, and one
target's whole policy as a form (Activation, Assignment, Notification, as Entra groups them).

The form is the whole settings document; saving sends it to ``role_settings.update_policy``
with the version the page was read at (a hidden field: the portal's If-Match), so a change made
meanwhile is refused, not overwritten. Durations are a number and a unit (or ISO 8601 typed
into the number); approvers are typed by name. Every rule is judged by the use case; a refused
form comes back with each broken rule beside its field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import FormData

from pimlico.api.deps import runtime_of
from pimlico.domain.durations import format_duration, parse_duration
from pimlico.domain.model import TargetType
from pimlico.domain.policy import (
    ASSIGNMENT_DURATION_RANGE,
    ApproverRef,
    NotificationEvent,
    NotificationLevel,
    NotificationRecipient,
    RoleSettings,
)
from pimlico.errors import FieldError, InvalidInput, InvalidPolicy, PimlicoError
from pimlico.services import portal_admin, role_settings
from pimlico.web import session
from pimlico.web.render import Problem, page, span
from pimlico.web.views import ViewerDep, portal_router

router = portal_router()

STAGE_FIELDSETS = 3
"""Approval stages offered on the form (more when a policy already has more)."""
MAX_STAGES = 5
_TEXT_MAX = 4000
UNITS = {"minutes": timedelta(minutes=1), "hours": timedelta(hours=1), "days": timedelta(days=1)}
KIND_LABELS = {
    TargetType.ROLE: "Role",
    TargetType.GROUP_MEMBER: "Group membership",
    TargetType.GROUP_OWNER: "Group ownership",
}
EVENT_LABELS = {
    NotificationEvent.ELIGIBLE_ASSIGNMENT: "Members assigned as eligible",
    NotificationEvent.ACTIVE_ASSIGNMENT: "Members assigned as active",
    NotificationEvent.ACTIVATION: "Eligible members activate",
}
RECIPIENT_LABELS = {
    NotificationRecipient.ADMIN: "Role assignment alert (administrators)",
    NotificationRecipient.REQUESTOR: "Notification to the assigned or activating user",
    NotificationRecipient.APPROVER: "Request to approve (approvers)",
}
LEVEL_LABELS = {
    NotificationLevel.ALL: "All mails",
    NotificationLevel.CRITICAL: "Critical mails only",
    NotificationLevel.NONE: "No mails",
}
CHECKS = (
    "activation.require_mfa",
    "activation.require_justification",
    "activation.require_ticket",
    "activation.authentication_context_enabled",
    "approval.required",
    "approval.required_for_extension",
    "approval.requestor_justification_required",
    "assignment.allow_permanent_eligible",
    "assignment.allow_permanent_active",
    "assignment.active_require_mfa",
    "assignment.active_require_justification",
    "assignment.eligible_require_mfa",
    "assignment.eligible_require_justification",
)


async def form_of(request: Request) -> FormData:
    """The posted form (already parsed by the portal's CSRF check)."""
    return await request.form()


FormDep = Annotated[FormData, Depends(form_of)]


def _target_type(value: str) -> TargetType:
    try:
        return TargetType(value)
    except ValueError:
        raise InvalidInput(
            "unknown kind of target",
            [FieldError("target_type", "Choice", "role, group_member or group_owner")],
        ) from None


def _settings_url(target_type: TargetType, object_id: str) -> str:
    return f"/portal/admin/settings/{target_type.value}/{object_id}"


# -- showing a policy ------------------------------------------------------------------------


def _amount(value: timedelta) -> tuple[str, str]:
    """A duration as the form shows it: the largest unit that divides it evenly."""
    for unit in ("days", "hours", "minutes"):
        size = UNITS[unit]
        if value >= size and value % size == timedelta(0):
            return str(value // size), unit
    if value == timedelta(0):
        return "0", "minutes"
    return format_duration(value), "minutes"


def _names(names: Mapping[str, str], refs: tuple[ApproverRef, ...]) -> str:
    return ", ".join(names.get(r.id, r.id) for r in refs)


def values_of(settings: RoleSettings, names: Mapping[str, str]) -> dict[str, str]:
    """The form's fields filled from ``settings`` (a checkbox: ``"on"`` or absent)."""
    values: dict[str, str] = {}

    def duration(name: str, value: timedelta) -> None:
        values[name], values[f"{name}.unit"] = _amount(value)

    def check(name: str, on: bool) -> None:
        if on:
            values[name] = "on"

    a, p, s = settings.activation, settings.approval, settings.assignment
    duration("activation.maximum_duration", a.maximum_duration)
    duration("assignment.eligible_maximum_duration", s.eligible_maximum_duration)
    duration("assignment.active_maximum_duration", s.active_maximum_duration)
    for name in CHECKS:
        section, field = name.split(".")
        check(
            name, bool(getattr({"activation": a, "approval": p, "assignment": s}[section], field))
        )
    values["activation.authentication_context_claim"] = a.authentication_context_claim or ""
    for index, stage in enumerate(p.stages):
        at = f"approval.stages[{index}]"
        values[f"{at}.approvers"] = _names(names, stage.approvers)
        values[f"{at}.escalation_approvers"] = _names(names, stage.escalation_approvers)
        values[f"{at}.quorum"] = str(stage.quorum)
        duration(f"{at}.timeout", stage.timeout)
        duration(f"{at}.escalation_after", stage.escalation_after)
        check(f"{at}.approver_justification_required", stage.approver_justification_required)
        check(f"{at}.escalation_enabled", stage.escalation_enabled)
    for event, recipient, rule in settings.notifications.items():
        at = f"notifications.{event.value}.{recipient.value}"
        values[f"{at}.level"] = rule.level.value
        check(f"{at}.default_recipients", rule.default_recipients)
        values[f"{at}.additional_recipients"] = "; ".join(rule.additional_recipients)
    return values


def summary(settings: RoleSettings, names: Mapping[str, str]) -> list[str]:
    """A policy in a few plain phrases, for the list of targets."""
    a, p, s = settings.activation, settings.approval, settings.assignment
    needs = [
        word
        for on, word in (
            (a.require_mfa, "MFA"),
            (a.require_justification, "justification"),
            (a.require_ticket, "ticket"),
        )
        if on
    ]
    lines = [
        f"Activation up to {span(a.maximum_duration)}"
        + (f"; needs {', '.join(needs)}" if needs else "; needs nothing more")
    ]
    if p.required:
        stages = [
            _names(names, stage.approvers) or "the administrators who approve requests"
            for stage in p.stages
        ]
        lines.append("Approval by " + ", then ".join(stages))
    else:
        lines.append("No approval")
    eligible = (
        "permanent allowed"
        if s.allow_permanent_eligible
        else f"up to {span(s.eligible_maximum_duration)}"
    )
    active = (
        "permanent allowed"
        if s.allow_permanent_active
        else f"up to {span(s.active_maximum_duration)}"
    )
    lines.append(f"Eligible: {eligible}; active: {active}")
    return lines


def _approver_refs(settings: RoleSettings) -> list[ApproverRef]:
    return [
        ref
        for stage in settings.approval.stages
        for ref in (*stage.approvers, *stage.escalation_approvers)
    ]


@dataclass(frozen=True)
class StageSlot:
    """One approval-stage fieldset: its index and its field names' prefix."""

    index: int

    @property
    def at(self) -> str:
        return f"approval.stages[{self.index}]"

    @property
    def number(self) -> int:
        return self.index + 1


def _stage_slots(values: Mapping[str, str]) -> list[StageSlot]:
    used = sum(1 for i in range(MAX_STAGES) if f"approval.stages[{i}].quorum" in values)
    return [StageSlot(i) for i in range(min(MAX_STAGES, max(STAGE_FIELDSETS, used + 1)))]


# -- reading the form ------------------------------------------------------------------------


def _text(form: FormData, name: str) -> str:
    raw = form.get(name)
    return raw.strip()[:_TEXT_MAX] if isinstance(raw, str) else ""


LONGEST = ASSIGNMENT_DURATION_RANGE[1]
"""The longest duration a form accepts (the longest any setting or assignment may be): a
longer one is refused here, before ``now + duration`` overflows a datetime."""


def amount_of(name: str, amount: str, unit_name: str) -> timedelta:
    """A duration typed as a number and a unit (or as ISO 8601 in the number);
    ``InvalidInput`` naming ``name`` when it cannot be read or is longer than ``LONGEST``."""
    amount = amount.strip()
    unit = UNITS.get(unit_name, UNITS["hours"])
    if amount.upper().startswith("P"):
        try:
            found = parse_duration(amount.upper())
        except (ValueError, OverflowError) as error:
            raise InvalidInput(
                "a duration cannot be read", [FieldError(name, "DurationFormat", str(error))]
            ) from None
    else:
        try:
            number = Decimal(amount)
            if not number.is_finite() or number < 0 or number > 100_000:
                raise InvalidOperation
        except InvalidOperation:
            raise InvalidInput(
                "a duration cannot be read",
                [FieldError(name, "DurationFormat", "give a number (such as 2 or 1.5) and a unit")],
            ) from None
        found = timedelta(seconds=int(number * Decimal(int(unit.total_seconds()))))
    if found > LONGEST:
        raise InvalidInput(
            "a duration is too long",
            [FieldError(name, "DurationRange", f"give at most {LONGEST.days} days")],
        )
    return found


def _duration(form: FormData, name: str, problems: list[FieldError]) -> str | None:
    """The ISO 8601 text of a number-and-unit field."""
    try:
        return format_duration(amount_of(name, _text(form, name), _text(form, f"{name}.unit")))
    except InvalidInput as error:
        problems += error.errors
        return None


def _split(text: str) -> list[str]:
    return [
        part.strip()
        for part in text.replace("\n", ",").replace(";", ",").split(",")
        if part.strip()
    ]


def document_of(
    form: FormData, problems: list[FieldError]
) -> tuple[dict[str, object], dict[str, list[str]]]:
    """The whole settings document a submitted form describes, approvers still as typed
    (field name → names), and each field that could not be read added to ``problems``."""

    def on(name: str) -> bool:
        return form.get(name) is not None

    activation: dict[str, object] = {
        "maximum_duration": _duration(form, "activation.maximum_duration", problems),
        "require_mfa": on("activation.require_mfa"),
        "require_justification": on("activation.require_justification"),
        "require_ticket": on("activation.require_ticket"),
        "authentication_context_enabled": on("activation.authentication_context_enabled"),
        "authentication_context_claim": _text(form, "activation.authentication_context_claim")
        or None,
    }
    stages: list[dict[str, object]] = []
    typed: dict[str, list[str]] = {}
    for index in range(MAX_STAGES):
        at = f"approval.stages[{index}]"
        if f"{at}.quorum" not in form:
            continue
        approvers = _split(_text(form, f"{at}.approvers"))
        escalation = _split(_text(form, f"{at}.escalation_approvers"))
        # The first stage always counts (no approvers: the administrators who approve);
        # a later one only when it names somebody.
        if index > 0 and not approvers and not escalation:
            continue
        # Stages renumber when an empty one is skipped: errors name the stage's new place.
        place = f"approval.stages[{len(stages)}]"
        typed[f"{place}.approvers"] = approvers
        typed[f"{place}.escalation_approvers"] = escalation
        quorum_text = _text(form, f"{at}.quorum") or "1"
        try:
            quorum = int(quorum_text)
        except ValueError:
            problems.append(FieldError(f"{place}.quorum", "Type", "give a whole number"))
            quorum = 1
        stages.append(
            {
                "quorum": quorum,
                "timeout": _duration(form, f"{at}.timeout", problems),
                "approver_justification_required": on(f"{at}.approver_justification_required"),
                "escalation_enabled": on(f"{at}.escalation_enabled"),
                "escalation_after": _duration(form, f"{at}.escalation_after", problems),
            }
        )
    approval: dict[str, object] = {
        "required": on("approval.required"),
        "required_for_extension": on("approval.required_for_extension"),
        "requestor_justification_required": on("approval.requestor_justification_required"),
        "stages": stages,
    }
    assignment: dict[str, object] = {
        "allow_permanent_eligible": on("assignment.allow_permanent_eligible"),
        "eligible_maximum_duration": _duration(
            form, "assignment.eligible_maximum_duration", problems
        ),
        "allow_permanent_active": on("assignment.allow_permanent_active"),
        "active_maximum_duration": _duration(form, "assignment.active_maximum_duration", problems),
        "active_require_mfa": on("assignment.active_require_mfa"),
        "active_require_justification": on("assignment.active_require_justification"),
        "eligible_require_mfa": on("assignment.eligible_require_mfa"),
        "eligible_require_justification": on("assignment.eligible_require_justification"),
    }
    notifications: dict[str, dict[str, object]] = {}
    for event in NotificationEvent:
        for recipient in NotificationRecipient:
            at = f"notifications.{event.value}.{recipient.value}"
            notifications.setdefault(event.value, {})[recipient.value] = {
                "level": _text(form, f"{at}.level") or NotificationLevel.ALL.value,
                "default_recipients": on(f"{at}.default_recipients"),
                "additional_recipients": _split(_text(form, f"{at}.additional_recipients")),
            }
    document: dict[str, object] = {
        "activation": activation,
        "approval": approval,
        "assignment": assignment,
        "notifications": notifications,
    }
    return document, typed


def _with_approvers(
    document: dict[str, object], resolved: dict[str, list[dict[str, str]]]
) -> dict[str, object]:
    approval = document["approval"]
    assert isinstance(approval, dict)
    for index, stage in enumerate(approval["stages"]):
        at = f"approval.stages[{index}]"
        stage["approvers"] = resolved.get(f"{at}.approvers", [])
        stage["escalation_approvers"] = resolved.get(f"{at}.escalation_approvers", [])
    return document


# -- pages -----------------------------------------------------------------------------------


@router.get("/admin/settings")
def settings_list(request: Request, viewer: ViewerDep) -> HTMLResponse:
    rt = runtime_of(request)
    targets = portal_admin.settings_targets(rt, actor=viewer.actor)
    refs = [ref for t in targets for ref in _approver_refs(t.settings)]
    names = portal_admin.approver_names(rt, actor=viewer.actor, refs=refs)
    rows = [(t, KIND_LABELS[t.target_type], summary(t.settings, names)) for t in targets]
    return page(request, "admin_settings.html", viewer=viewer, rows=rows)


def _edit_page(
    request: Request,
    viewer: session.Viewer,
    target_type: TargetType,
    object_id: str,
    *,
    values: Mapping[str, str] | None = None,
    version: int | None = None,
    problem: Problem | None = None,
    status: int = 200,
) -> HTMLResponse:
    rt = runtime_of(request)
    policy = role_settings.get_policy(
        rt, actor=viewer.actor, target_type=target_type, object_id=object_id
    )
    name = portal_admin.target_name(
        rt, actor=viewer.actor, target_type=target_type, object_id=object_id
    )
    if values is None:
        names = portal_admin.approver_names(
            rt, actor=viewer.actor, refs=_approver_refs(policy.settings)
        )
        values = values_of(policy.settings, names)
    return page(
        request,
        "admin_settings_edit.html",
        viewer=viewer,
        status=status,
        problem=problem,
        target_type=target_type,
        kind=KIND_LABELS[target_type],
        object_id=object_id,
        name=name,
        version=policy.version if version is None else version,
        values=values,
        stages=_stage_slots(values),
        units=tuple(UNITS),
        events=EVENT_LABELS,
        recipients=RECIPIENT_LABELS,
        levels=LEVEL_LABELS,
        action=_settings_url(target_type, object_id),
    )


@router.get("/admin/settings/{target_type}/{object_id}")
def settings_form(
    request: Request, viewer: ViewerDep, target_type: str, object_id: str
) -> HTMLResponse:
    return _edit_page(request, viewer, _target_type(target_type), object_id)


@router.post("/admin/settings/{target_type}/{object_id}")
def save_settings(
    request: Request, viewer: ViewerDep, form: FormDep, target_type: str, object_id: str
) -> Response:
    rt = runtime_of(request)
    kind = _target_type(target_type)
    submitted = {k: v for k, v in form.items() if isinstance(v, str) and k != session.CSRF_FIELD}
    try:
        version = int(_text(form, "version"))
    except ValueError:
        version = -1
    try:
        problems: list[FieldError] = []
        document, typed = document_of(form, problems)
        resolved: dict[str, list[dict[str, str]]] = {}
        try:
            resolved = portal_admin.approvers_by_name(rt, actor=viewer.actor, typed=typed)
        except InvalidPolicy as error:
            problems += error.errors
        if problems:
            raise InvalidPolicy(f"the role settings break {len(problems)} rule(s)", problems)
        role_settings.update_policy(
            rt,
            actor=viewer.actor,
            target_type=kind,
            object_id=object_id,
            changes=_with_approvers(document, resolved),
            if_version=version,
        )
    except role_settings.PreconditionFailed as error:
        # Show what is there now (and its version): the viewer's edits would overwrite it.
        return _edit_page(
            request,
            viewer,
            kind,
            object_id,
            problem=Problem(
                error.code,
                "Someone changed these settings meanwhile. Here they are as they are now: "
                "make your change again.",
                (),
                None,
                error.status,
            ),
            status=error.status,
        )
    except PimlicoError as error:
        return _edit_page(
            request,
            viewer,
            kind,
            object_id,
            values=submitted,
            version=version,
            problem=Problem.of(error),
            status=error.status,
        )
    name = portal_admin.target_name(rt, actor=viewer.actor, target_type=kind, object_id=object_id)
    response = RedirectResponse(_settings_url(kind, object_id), status_code=303)
    session.flash(
        request, response, f"The settings of {name} ({KIND_LABELS[kind].lower()}) are saved."
    )
    return response
