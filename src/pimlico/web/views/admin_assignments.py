"""Eligible and active assignments in the portal: the list (filtered by principal, target and
kind, ended ones on demand), adding one, and one assignment's page to update its end, extend,
renew or remove it.

Every change is an administrator's request (``admin_assign``, ``admin_update``,
``admin_extend``, ``admin_renew``, ``admin_remove``) made through ``requests.submit``, as the
API's ``POST /requests`` makes it; the use cases judge the settings and the guards (the last
Global Administrator, the expiration rules) and the page shows their refusal in plain words.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from pimlico.api.deps import runtime_of
from pimlico.domain.model import (
    Assignment,
    AssignmentKind,
    PrincipalRef,
    Target,
    TargetType,
)
from pimlico.domain.requests import ExpirationType, RequestAction, Schedule, Ticket
from pimlico.errors import FieldError, InvalidInput, PimlicoError
from pimlico.services import assignments, mfa, portal_admin, portal_directory, requests
from pimlico.services.runtime import Pimlico
from pimlico.web import session
from pimlico.web.render import Problem, page
from pimlico.web.session import Viewer
from pimlico.web.views import ViewerDep, portal_router
from pimlico.web.views.admin_settings import UNITS, amount_of

router = portal_router()

LIST = "/portal/admin/assignments"
_BLANK = {
    "principal": "",
    "target": "",
    "kind": "eligible",
    "scope": "/",
    "duration": "30",
    "duration_unit": "days",
    "permanent": "",
    "justification": "",
    "ticket_system": "",
    "ticket_number": "",
}
Text = Annotated[str | None, Form(max_length=4000)]
Short = Annotated[str | None, Form(max_length=256)]


def _kind(value: str | None, field: str = "kind") -> AssignmentKind | None:
    if not value:
        return None
    try:
        return AssignmentKind(value)
    except ValueError:
        raise InvalidInput(
            "unknown kind", [FieldError(field, "Choice", "eligible or active")]
        ) from None


def _target(value: str | None, scope: str | None = None) -> Target | None:
    """A target from the form's choice (``role:ID``, ``group_member:ID``, ``group_owner:ID``)."""
    if not value:
        return None
    head, _, object_id = value.partition(":")
    try:
        kind = TargetType(head)
    except ValueError:
        raise InvalidInput(
            "unknown target", [FieldError("target", "Choice", "pick a role or a group")]
        ) from None
    if kind is TargetType.ROLE:
        return Target.role(object_id, (scope or "/").strip() or "/")
    return Target(kind, object_id)


def _ticket(system: str | None, number: str | None) -> Ticket | None:
    if not (system or "").strip() and not (number or "").strip():
        return None
    return Ticket((system or "").strip(), (number or "").strip())


def _schedule(
    amount: str | None, unit: str | None, permanent: str | None, *, field: str = "duration"
) -> Schedule:
    if permanent:
        return Schedule(expiration=ExpirationType.NO_EXPIRATION)
    if not (amount or "").strip():
        raise InvalidInput(
            "how long?",
            [FieldError(field, "Required", "give a duration, or choose permanent if allowed")],
        )
    return Schedule(duration=amount_of(field, amount or "", unit or "hours"))


def _state(a: Assignment, now: datetime) -> str:
    if a.in_force(now):
        return "in force"
    if a.start > now and a.is_current_or_future(now):
        return "scheduled"
    return "ended"


def _rows(rt: Pimlico, viewer: Viewer, found: list[Assignment]) -> list[dict[str, object]]:
    names = portal_directory.names_of(
        rt,
        actor=viewer.actor,
        ids=[a.principal.id for a in found] + [a.target.object_id for a in found],
    )
    labels = {
        TargetType.ROLE: "",
        TargetType.GROUP_MEMBER: "member of ",
        TargetType.GROUP_OWNER: "owner of ",
    }
    now = rt.clock.now()
    return [
        {
            "a": a,
            "principal": names.get(a.principal.id, a.principal.id),
            "principal_type": a.principal.type.value.replace("_", " "),
            "target": labels[a.target.type] + names.get(a.target.object_id, a.target.object_id),
            "scope": a.target.scope if a.target.type is TargetType.ROLE else None,
            "state": _state(a, now),
        }
        for a in found
    ]


def _list_page(
    request: Request,
    viewer: Viewer,
    *,
    principal: str = "",
    target: str = "",
    kind: str = "",
    ended: bool = False,
    add: dict[str, str] | None = None,
    problem: Problem | None = None,
    status: int = 200,
) -> HTMLResponse:
    rt = runtime_of(request)
    choices = portal_admin.target_choices(rt, actor=viewer.actor)
    ref: PrincipalRef | None = None
    filter_problem: Problem | None = None
    try:
        ref = (
            portal_directory.principal_typed(rt, actor=viewer.actor, text=principal)
            if principal.strip()
            else None
        )
    except PimlicoError as error:
        filter_problem = Problem.of(error)
    found = (
        []
        if filter_problem
        else assignments.list_assignments(
            rt,
            actor=viewer.actor,
            principal=ref,
            target=_target(target),
            kind=_kind(kind),
            include_ended=ended,
        )
    )
    return page(
        request,
        "admin_assignments.html",
        viewer=viewer,
        status=status,
        problem=problem,
        filter_problem=filter_problem,
        rows=_rows(rt, viewer, found),
        choices=choices,
        units=tuple(UNITS),
        filters={"principal": principal, "target": target, "kind": kind, "ended": ended},
        add=add or dict(_BLANK),
    )


@router.get("/admin/assignments")
def assignment_list(
    request: Request,
    viewer: ViewerDep,
    principal: str = "",
    target: str = "",
    kind: str = "",
    ended: str = "",
) -> HTMLResponse:
    return _list_page(
        request,
        viewer,
        principal=principal[:256],
        target=target[:128],
        kind=kind[:16],
        ended=bool(ended),
    )


@router.post("/admin/assignments")
def add_assignment(
    request: Request,
    viewer: ViewerDep,
    principal: Annotated[str, Form(max_length=256)],
    target: Annotated[str, Form(max_length=128)],
    kind: Annotated[str, Form(max_length=16)],
    scope: Short = None,
    duration: Short = None,
    duration_unit: Short = None,
    permanent: Short = None,
    justification: Text = None,
    ticket_system: Short = None,
    ticket_number: Short = None,
) -> Response:
    rt = runtime_of(request)
    asked = {
        "principal": principal,
        "target": target,
        "kind": kind,
        "scope": scope or "/",
        "duration": duration or "",
        "duration_unit": duration_unit or "days",
        "permanent": permanent or "",
        "justification": justification or "",
        "ticket_system": ticket_system or "",
        "ticket_number": ticket_number or "",
    }
    try:
        chosen_kind = _kind(kind) or AssignmentKind.ELIGIBLE
        chosen_target = _target(target, scope)
        if chosen_target is None:
            raise InvalidInput("which target?", [FieldError("target", "Required", "pick one")])
        who = portal_directory.principal_typed(rt, actor=viewer.actor, text=principal)
        requests.submit(
            rt,
            actor=viewer.actor,
            action=RequestAction.ADMIN_ASSIGN,
            kind=chosen_kind,
            principal=who,
            target=chosen_target,
            schedule=_schedule(duration, duration_unit, permanent),
            justification=(justification or "").strip() or None,
            ticket=_ticket(ticket_system, ticket_number),
            mfa_verified=mfa.verified_recently(rt, actor=viewer.actor),
        )
    except PimlicoError as error:
        return _list_page(
            request, viewer, add=asked, problem=Problem.of(error), status=error.status
        )
    response = RedirectResponse(LIST, status_code=303)
    session.flash(
        request, response, f"{principal.strip()} now has the {chosen_kind.value} assignment."
    )
    return response


# -- one assignment ---------------------------------------------------------------------------


def _detail_page(
    request: Request,
    viewer: Viewer,
    assignment_id: str,
    *,
    problem: Problem | None = None,
    status: int = 200,
) -> HTMLResponse:
    rt = runtime_of(request)
    a = portal_admin.get_assignment(rt, actor=viewer.actor, assignment_id=assignment_id)
    row = _rows(rt, viewer, [a])[0]
    now = rt.clock.now()
    return page(
        request,
        "admin_assignments_detail.html",
        viewer=viewer,
        status=status,
        problem=problem,
        row=row,
        a=a,
        current=a.is_current_or_future(now),
        expired=a.ended_at is None and a.end is not None and a.end <= now,
        units=tuple(UNITS),
    )


@router.get("/admin/assignments/{assignment_id}")
def assignment_detail(request: Request, viewer: ViewerDep, assignment_id: str) -> HTMLResponse:
    return _detail_page(request, viewer, assignment_id[:64])


def _change(
    request: Request,
    viewer: Viewer,
    assignment_id: str,
    action: RequestAction,
    schedule: Schedule | None,
    justification: str | None,
    ticket: Ticket | None,
    done: str,
) -> Response:
    rt = runtime_of(request)
    try:
        current = portal_admin.get_assignment(rt, actor=viewer.actor, assignment_id=assignment_id)
        requests.submit(
            rt,
            actor=viewer.actor,
            action=action,
            kind=current.kind,
            assignment_id=assignment_id,
            schedule=schedule,
            justification=(justification or "").strip() or None,
            ticket=ticket,
            mfa_verified=mfa.verified_recently(rt, actor=viewer.actor),
        )
    except PimlicoError as error:
        return _detail_page(
            request, viewer, assignment_id, problem=Problem.of(error), status=error.status
        )
    target = LIST if action is not RequestAction.ADMIN_UPDATE else f"{LIST}/{assignment_id}"
    if action is RequestAction.ADMIN_EXTEND:
        target = f"{LIST}/{assignment_id}"
    response = RedirectResponse(target, status_code=303)
    session.flash(request, response, done)
    return response


@router.post("/admin/assignments/{assignment_id}/update")
def update_assignment(
    request: Request,
    viewer: ViewerDep,
    assignment_id: str,
    duration: Short = None,
    duration_unit: Short = None,
    permanent: Short = None,
    justification: Text = None,
    ticket_system: Short = None,
    ticket_number: Short = None,
) -> Response:
    try:
        if permanent:
            schedule = Schedule(expiration=ExpirationType.NO_EXPIRATION)
        else:
            # The new end counts from now, as people read "ends in …".
            length = _schedule(duration, duration_unit, None).duration or timedelta(0)
            end = runtime_of(request).clock.now() + length
            schedule = Schedule(expiration=ExpirationType.AFTER_DATETIME, end=end)
    except PimlicoError as error:
        return _detail_page(
            request, viewer, assignment_id, problem=Problem.of(error), status=error.status
        )
    return _change(
        request,
        viewer,
        assignment_id,
        RequestAction.ADMIN_UPDATE,
        schedule,
        justification,
        _ticket(ticket_system, ticket_number),
        "The assignment's end is changed.",
    )


@router.post("/admin/assignments/{assignment_id}/extend")
def extend_assignment(
    request: Request,
    viewer: ViewerDep,
    assignment_id: str,
    duration: Short = None,
    duration_unit: Short = None,
    justification: Text = None,
    ticket_system: Short = None,
    ticket_number: Short = None,
) -> Response:
    try:
        schedule = _schedule(duration, duration_unit, None)
    except PimlicoError as error:
        return _detail_page(
            request, viewer, assignment_id, problem=Problem.of(error), status=error.status
        )
    return _change(
        request,
        viewer,
        assignment_id,
        RequestAction.ADMIN_EXTEND,
        schedule,
        justification,
        _ticket(ticket_system, ticket_number),
        "The assignment is extended.",
    )


@router.post("/admin/assignments/{assignment_id}/renew")
def renew_assignment(
    request: Request,
    viewer: ViewerDep,
    assignment_id: str,
    duration: Short = None,
    duration_unit: Short = None,
    permanent: Short = None,
    justification: Text = None,
    ticket_system: Short = None,
    ticket_number: Short = None,
) -> Response:
    try:
        schedule = _schedule(duration, duration_unit, permanent)
    except PimlicoError as error:
        return _detail_page(
            request, viewer, assignment_id, problem=Problem.of(error), status=error.status
        )
    return _change(
        request,
        viewer,
        assignment_id,
        RequestAction.ADMIN_RENEW,
        schedule,
        justification,
        _ticket(ticket_system, ticket_number),
        "The assignment is renewed from now.",
    )


@router.post("/admin/assignments/{assignment_id}/remove")
def remove_assignment(
    request: Request,
    viewer: ViewerDep,
    assignment_id: str,
    justification: Text = None,
    ticket_system: Short = None,
    ticket_number: Short = None,
) -> Response:
    return _change(
        request,
        viewer,
        assignment_id,
        RequestAction.ADMIN_REMOVE,
        None,
        justification,
        _ticket(ticket_system, ticket_number),
        "The assignment is removed: its access ended now.",
    )
