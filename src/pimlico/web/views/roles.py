"""My roles: what the viewer holds and may activate, and the self-service requests on it —
activate, deactivate, extend, renew — each through ``services.requests.submit``, the use case
the API's ``POST /api/v1/requests`` calls.

The activation form asks only for what the target's policy requires, and says before
submitting whether approval is needed and by whom, and whether MFA is (a code field when the
viewer's verification is not fresh: the same POST verifies it first, then submits).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated
from urllib.parse import quote

from fastapi import Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from pimlico.api.deps import runtime_of
from pimlico.domain.durations import format_duration, parse_duration
from pimlico.domain.model import AssignmentKind
from pimlico.domain.policy import ASSIGNMENT_DURATION_RANGE
from pimlico.domain.requests import RequestAction, RequestStatus, Schedule, Ticket
from pimlico.errors import FieldError, InvalidInput, PimlicoError
from pimlico.services import mfa, portal_roles, requests
from pimlico.services.lookups import MAX_TEXT
from pimlico.services.portal_roles import Held
from pimlico.services.request_records import TICKET_FIELD_LENGTH, RequestView
from pimlico.web import session
from pimlico.web.render import Problem, page, span
from pimlico.web.session import Viewer
from pimlico.web.views import ViewerDep, portal_router

router = portal_router()

AssignmentId = Annotated[str, Form(max_length=64)]
Text = Annotated[str | None, Form(max_length=MAX_TEXT)]
TicketField = Annotated[str | None, Form(max_length=TICKET_FIELD_LENGTH)]
Code = Annotated[str | None, Form(max_length=64)]
DurationField = Annotated[str | None, Form(max_length=32)]
_CHANGE_DURATIONS = tuple(timedelta(days=d) for d in (7, 30, 90, 180, 365))


@router.get("/roles")
def my_roles(request: Request, viewer: ViewerDep) -> HTMLResponse:
    mine = portal_roles.my_roles(runtime_of(request), actor=viewer.actor)
    return page(request, "roles.html", viewer=viewer, mine=mine)


# -- activate --------------------------------------------------------------------------------


def duration_choices(longest: timedelta) -> list[tuple[str, str]]:
    """(ISO 8601 value, words) for the duration select, shortest first, up to ``longest``."""
    choices: list[timedelta] = []
    if longest >= timedelta(minutes=30):
        choices.append(timedelta(minutes=30))
    hours = int(longest // timedelta(hours=1))
    choices.extend(timedelta(hours=h) for h in range(1, hours + 1))
    whole = timedelta(minutes=int(longest // timedelta(minutes=1)))
    if whole >= timedelta(minutes=5) and whole not in choices:
        choices.append(whole)
    return [(format_duration(c), span(c)) for c in choices]


def _activation_page(
    request: Request,
    viewer: Viewer,
    assignment_id: str,
    *,
    problem: Problem | None = None,
    form: dict[str, str] | None = None,
) -> HTMLResponse:
    terms = portal_roles.activation_terms(
        runtime_of(request), actor=viewer.actor, assignment_id=assignment_id
    )
    choices = duration_choices(terms.longest)
    return page(
        request,
        "roles_activate.html",
        viewer=viewer,
        status=problem.status if problem else 200,
        terms=terms,
        held=terms.held,
        choices=choices,
        form=form
        or {
            "duration": choices[-1][0] if choices else "",
            "justification": "",
            "ticket_system": "",
            "ticket_number": "",
        },
        problem=problem,
        activation_url=f"/portal/roles/activate?assignment={quote(assignment_id, safe='')}",
    )


@router.get("/roles/activate")
def activation_form(
    request: Request, viewer: ViewerDep, assignment: Annotated[str, Query(max_length=64)]
) -> HTMLResponse:
    return _activation_page(request, viewer, assignment)


def _duration(text: str | None) -> timedelta | None:
    if not text:
        return None
    try:
        found = parse_duration(text)
        # Longer than any assignment may last: refused here, before now + duration overflows.
        if found > ASSIGNMENT_DURATION_RANGE[1]:
            raise ValueError(text)
    except (InvalidInput, ValueError, OverflowError):
        raise InvalidInput(
            "the duration is not one Pimlico understands",
            [FieldError("schedule.duration", "ExpirationRule", "choose a duration from the list")],
        ) from None
    return found


def _ticket(system: str | None, number: str | None) -> Ticket | None:
    if not (system or "").strip() and not (number or "").strip():
        return None
    return Ticket((system or "").strip(), (number or "").strip())


def _until(request: Request, viewer: Viewer, view: RequestView) -> str:
    end = view.window.end if view.window is not None else None
    if end is None:
        return "is active"
    local = end.astimezone(viewer.zone)
    today = runtime_of(request).clock.now().astimezone(viewer.zone).date()
    when = local.strftime("%H:%M") if local.date() == today else local.strftime("%d %b %H:%M")
    return f"is active until {when}"


def _what(held: Held) -> str:
    if held.relation == "role":
        return held.name
    return f"Your {'membership' if held.relation == 'member' else 'ownership'} of {held.name}"


@router.post("/roles/activate")
def activate(
    request: Request,
    viewer: ViewerDep,
    assignment: AssignmentId,
    duration: DurationField = None,
    justification: Text = None,
    ticket_system: TicketField = None,
    ticket_number: TicketField = None,
    code: Code = None,
) -> Response:
    rt = runtime_of(request)
    form = {
        "duration": duration or "",
        "justification": justification or "",
        "ticket_system": ticket_system or "",
        "ticket_number": ticket_number or "",
    }
    terms = portal_roles.activation_terms(rt, actor=viewer.actor, assignment_id=assignment)
    try:
        if code and code.strip():
            mfa.verify(rt, actor=viewer.actor, user_id=viewer.user_id, code=code.strip())
        done = requests.submit(
            rt,
            actor=viewer.actor,
            action=RequestAction.SELF_ACTIVATE,
            kind=AssignmentKind.ACTIVE,
            target=terms.held.target,
            schedule=Schedule(duration=_duration(duration)),
            justification=justification or None,
            ticket=_ticket(ticket_system, ticket_number),
        )
    except PimlicoError as error:
        return _activation_page(request, viewer, assignment, problem=Problem.of(error), form=form)
    return _answered(request, viewer, terms.held, done.value, terms.approvers)


def _answered(
    request: Request, viewer: Viewer, held: Held, view: RequestView, approvers: tuple[str, ...]
) -> RedirectResponse:
    """Where a submitted request leads: its page while it waits, else My roles."""
    status = view.request.status
    if status is RequestStatus.PENDING_APPROVAL:
        response = RedirectResponse(f"/portal/requests/{view.request.id}", status_code=303)
        who = " or ".join(approvers) or portal_roles.ADMINISTRATORS
        session.flash(request, response, f"Your request is waiting for approval by {who}.")
        return response
    response = RedirectResponse("/portal/roles", status_code=303)
    action = view.request.action
    if action is RequestAction.SELF_DEACTIVATE:
        message = f"{_what(held)} is no longer active."
    elif status is RequestStatus.GRANTED:
        message = f"{_what(held)} is granted and starts later."
    else:
        message = f"{_what(held)} {_until(request, viewer, view)}."
    session.flash(request, response, message)
    return response


# -- deactivate ------------------------------------------------------------------------------


@router.post("/roles/deactivate")
def deactivate(request: Request, viewer: ViewerDep, assignment: AssignmentId) -> Response:
    rt = runtime_of(request)
    held = portal_roles.held_by_me(rt, actor=viewer.actor, assignment_id=assignment)
    done = requests.submit(
        rt,
        actor=viewer.actor,
        action=RequestAction.SELF_DEACTIVATE,
        kind=AssignmentKind.ACTIVE,
        target=held.target,
    )
    return _answered(request, viewer, held, done.value, ())


# -- extend and renew ------------------------------------------------------------------------

_VERBS = {"extend": RequestAction.SELF_EXTEND, "renew": RequestAction.SELF_RENEW}


def _change_page(
    request: Request,
    viewer: Viewer,
    verb: str,
    assignment_id: str,
    *,
    problem: Problem | None = None,
    form: dict[str, str] | None = None,
) -> HTMLResponse:
    terms = portal_roles.change_terms(
        runtime_of(request),
        actor=viewer.actor,
        assignment_id=assignment_id,
        action=_VERBS[verb],
    )
    choices = [(format_duration(d), span(d)) for d in _CHANGE_DURATIONS if d <= terms.longest]
    return page(
        request,
        "roles_change.html",
        viewer=viewer,
        status=problem.status if problem else 200,
        verb=verb,
        terms=terms,
        held=terms.held,
        choices=choices,
        longest=span(terms.longest),
        form=form or {"duration": "", "justification": ""},
        problem=problem,
    )


def _change(
    request: Request,
    viewer: Viewer,
    verb: str,
    assignment: str,
    duration: str | None,
    justification: str | None,
) -> Response:
    rt = runtime_of(request)
    action = _VERBS[verb]
    terms = portal_roles.change_terms(
        rt, actor=viewer.actor, assignment_id=assignment, action=action
    )
    try:
        done = requests.submit(
            rt,
            actor=viewer.actor,
            action=action,
            kind=terms.held.kind,
            target=terms.held.target,
            schedule=Schedule(duration=_duration(duration)),
            justification=justification or None,
        )
    except PimlicoError as error:
        form = {"duration": duration or "", "justification": justification or ""}
        return _change_page(request, viewer, verb, assignment, problem=Problem.of(error), form=form)
    return _answered(request, viewer, terms.held, done.value, terms.approvers)


@router.get("/roles/extend")
def extend_form(
    request: Request, viewer: ViewerDep, assignment: Annotated[str, Query(max_length=64)]
) -> HTMLResponse:
    return _change_page(request, viewer, "extend", assignment)


@router.post("/roles/extend")
def extend(
    request: Request,
    viewer: ViewerDep,
    assignment: AssignmentId,
    duration: DurationField = None,
    justification: Text = None,
) -> Response:
    return _change(request, viewer, "extend", assignment, duration, justification)


@router.get("/roles/renew")
def renew_form(
    request: Request, viewer: ViewerDep, assignment: Annotated[str, Query(max_length=64)]
) -> HTMLResponse:
    return _change_page(request, viewer, "renew", assignment)


@router.post("/roles/renew")
def renew(
    request: Request,
    viewer: ViewerDep,
    assignment: AssignmentId,
    duration: DurationField = None,
    justification: Text = None,
) -> Response:
    return _change(request, viewer, "renew", assignment, duration, justification)
