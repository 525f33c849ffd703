"""My requests: the viewer's own requests (newest first, a page at a time, by status), one
request in full with its decisions and history, and canceling a request not yet started.

The lists and reads are ``services.request_reads.requests_page`` and
``services.requests.get_request`` (which decide who sees what), canceling is
``services.requests.cancel`` — the API's very use cases. ``Shown`` turns a request into what
a person reads (names, the approval's standing, the schedule); ``views.approvals`` shows its
requests the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from pimlico.api.deps import Paging, after_cursor, encode_cursor, runtime_of
from pimlico.api.routes.request_models import newest_first_request
from pimlico.domain.model import AssignmentKind, TargetType
from pimlico.domain.policy import ApproverType
from pimlico.domain.requests import TRANSITIONS, RequestAction, RequestStatus
from pimlico.errors import FieldError, InvalidInput, NotFound, PermissionDenied, PimlicoError
from pimlico.services import portal_requests, request_reads, requests
from pimlico.services.lookups import MAX_TEXT
from pimlico.services.portal_requests import Names, Standing
from pimlico.services.request_records import RequestView
from pimlico.services.requests import RequestFilter
from pimlico.services.runtime import Pimlico
from pimlico.web import session
from pimlico.web.render import Problem, page
from pimlico.web.session import Viewer
from pimlico.web.views import ViewerDep, portal_router

router = portal_router()

PAGE = 25
RequestId = Annotated[str, Path(max_length=64)]
_VERBS: dict[RequestAction, str] = {
    RequestAction.SELF_ACTIVATE: "Activate",
    RequestAction.SELF_DEACTIVATE: "Deactivate",
    RequestAction.SELF_EXTEND: "Extend",
    RequestAction.SELF_RENEW: "Renew",
    RequestAction.ADMIN_ASSIGN: "Assign",
    RequestAction.ADMIN_UPDATE: "Change the assignment of",
    RequestAction.ADMIN_REMOVE: "Remove the assignment of",
    RequestAction.ADMIN_EXTEND: "Extend the assignment of",
    RequestAction.ADMIN_RENEW: "Renew the assignment of",
}
STATUS_WORDS: dict[RequestStatus, str] = {
    RequestStatus.PENDING_APPROVAL: "Pending approval",
    RequestStatus.GRANTED: "Granted (starts later)",
    RequestStatus.PROVISIONED: "Done",
    RequestStatus.DENIED: "Denied",
    RequestStatus.CANCELED: "Canceled",
    RequestStatus.REVOKED: "Ended",
    RequestStatus.FAILED: "Failed",
    RequestStatus.EXPIRED: "Expired (nobody decided in time)",
}
_NOTES: dict[RequestStatus, str] = {
    RequestStatus.GRANTED: "approved; starts later",
    RequestStatus.PROVISIONED: "done",
    RequestStatus.REVOKED: "ended",
    RequestStatus.EXPIRED: "nobody decided in time",
}


@dataclass(frozen=True, slots=True)
class ShownDecision:
    stage: int
    who: str
    approved: bool
    at: datetime
    justification: str | None


@dataclass(frozen=True, slots=True)
class ShownChange:
    status: RequestStatus
    at: datetime
    who: str | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class Shown:
    """A request as a person reads it: names, not ids."""

    id: str
    status: RequestStatus
    action: RequestAction
    what: str
    """``Activate membership of Search and Purge PIM``."""
    target_name: str
    target_kind: str
    """``role``, ``group membership`` or ``group ownership``."""
    scope: str | None
    """Roles only."""
    kind: AssignmentKind
    requester: str
    requester_id: str
    principal: str
    for_someone_else: bool
    asked_at: datetime
    justification: str | None
    ticket: str | None
    start: datetime | None
    end: datetime | None
    duration: timedelta | None
    standing: Standing | None
    waiting_for: str | None
    """Who may decide the stage now, in words (``Bob Approver``)."""
    approvals_given: int
    decisions: tuple[ShownDecision, ...]
    history: tuple[ShownChange, ...]

    @property
    def pending(self) -> bool:
        return self.status is RequestStatus.PENDING_APPROVAL

    @property
    def cancelable(self) -> bool:
        # Withdrawable while the state machine allows it (the use case has the last word).
        return RequestStatus.CANCELED in TRANSITIONS[self.status]

    @property
    def status_words(self) -> str:
        return STATUS_WORDS[self.status]

    @property
    def status_note(self) -> str | None:
        """What the badge does not say, if anything (``done``)."""
        return _NOTES.get(self.status)

    @property
    def justification_required(self) -> bool:
        """Does the stage being decided ask its approvers to say why?"""
        return self.standing is not None and self.standing.stage.approver_justification_required


def _approvers_in_words(names: Names, view: RequestView, standing: Standing) -> str:
    # Those who decided this stage already, and the requester, are not waited for.
    decided = {d.approver_id for d in view.decisions if d.stage == standing.number - 1}
    decided.add(view.request.requested_by)
    words = [
        names.of(ref_id) if kind is ApproverType.USER else f"a member of {names.of(ref_id)}"
        for kind, ref_id in standing.approver_ids()
        if ref_id not in decided
    ]
    if not standing.approvers_named:
        words.append("an administrator who may approve requests")
    return " or ".join(words) if words else "another approver"


def _shown(view: RequestView, names: Names, standing: Standing | None) -> Shown:
    r = view.request
    target = r.target
    target_name = names.target(target)
    if target.type is TargetType.ROLE:
        target_kind, thing = "role", target_name
    elif target.type is TargetType.GROUP_MEMBER:
        target_kind, thing = "group membership", f"membership of {target_name}"
    else:
        target_kind, thing = "group ownership", f"ownership of {target_name}"
    for_other = r.principal.id != r.requested_by
    what = f"{_VERBS[r.action]} {thing}"
    if for_other:
        what += f" for {names.of(r.principal.id)}"
    window = view.window
    start = window.start if window is not None else r.schedule.start
    end = window.end if window is not None else r.schedule.end
    duration = r.schedule.duration
    if start is not None and end is not None:
        duration = end - start
    ticket = None if r.ticket is None else f"{r.ticket.system} {r.ticket.number}"
    approvals_given = 0
    if standing is not None:
        stage = standing.number - 1
        approvals_given = sum(1 for d in view.decisions if d.stage == stage and d.approved)
    return Shown(
        id=r.id,
        status=r.status,
        action=r.action,
        what=what,
        target_name=target_name,
        target_kind=target_kind,
        scope=target.scope if target.type is TargetType.ROLE else None,
        kind=r.kind,
        requester=names.of(r.requested_by),
        requester_id=r.requested_by,
        principal=names.of(r.principal.id),
        for_someone_else=for_other,
        asked_at=r.requested_at,
        justification=r.justification,
        ticket=ticket,
        start=start,
        end=end,
        duration=duration,
        standing=standing,
        waiting_for=None if standing is None else _approvers_in_words(names, view, standing),
        approvals_given=approvals_given,
        decisions=tuple(
            ShownDecision(d.stage + 1, names.of(d.approver_id), d.approved, d.at, d.justification)
            for d in view.decisions
        ),
        history=tuple(
            ShownChange(c.status, c.at, None if c.by is None else names.of(c.by), c.reason)
            for c in r.history
        ),
    )


def shown(rt: Pimlico, views: Sequence[RequestView]) -> list[Shown]:
    """``views`` (given to the viewer by a request use case) as people read them."""
    names = portal_requests.names_for(rt, views=views)
    standings = portal_requests.standing(rt, views=views)
    return [_shown(v, names, standings.get(v.request.id)) for v in views]


def not_yours() -> NotFound:
    """The same answer for a request that does not exist and one the viewer may not see."""
    return NotFound("There is no request here that you may see.")


def visible(rt: Pimlico, viewer: Viewer, request_id: str) -> RequestView | None:
    """The request, if ``get_request`` lets the viewer see it; ``None`` otherwise (whether it
    exists or not: the pages say nothing more)."""
    try:
        return requests.get_request(rt, actor=viewer.actor, request_id=request_id)
    except (NotFound, PermissionDenied):
        return None


def _status_filter(value: str) -> RequestStatus | None:
    if not value:
        return None
    try:
        return RequestStatus(value)
    except ValueError:
        raise InvalidInput(
            "There is no such status.",
            [FieldError("status", "Choice", "choose a status from the list")],
        ) from None


@router.get("/requests")
def my_requests(
    request: Request,
    viewer: ViewerDep,
    status: Annotated[str, Query(max_length=32)] = "",
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> HTMLResponse:
    rt = runtime_of(request)
    chosen = _status_filter(status)
    found = request_reads.requests_page(
        rt,
        actor=viewer.actor,
        mine=True,
        where=RequestFilter(status=chosen),
        after=after_cursor(Paging(cursor or None, PAGE)),
        limit=PAGE + 1,
    )
    more = len(found) > PAGE
    found = found[:PAGE]
    following = encode_cursor(list(newest_first_request(found[-1]))) if more else None
    return page(
        request,
        "requests.html",
        viewer=viewer,
        items=shown(rt, found),
        chosen=chosen,
        statuses=STATUS_WORDS,
        next_cursor=following,
        paged=cursor is not None,
    )


def _detail(
    request: Request,
    viewer: Viewer,
    request_id: str,
    *,
    problem: Problem | None = None,
    status: int = 200,
    reason: str = "",
) -> HTMLResponse:
    rt = runtime_of(request)
    view = visible(rt, viewer, request_id)
    if view is None:
        raise not_yours()
    [item] = shown(rt, [view])
    return page(
        request,
        "requests_detail.html",
        viewer=viewer,
        status=status,
        problem=problem,
        r=item,
        own=item.requester_id == viewer.user_id,
        reason=reason,
    )


@router.get("/requests/{request_id}")
def request_page(request: Request, viewer: ViewerDep, request_id: RequestId) -> HTMLResponse:
    return _detail(request, viewer, request_id)


@router.post("/requests/{request_id}/cancel")
def cancel_request(
    request: Request,
    viewer: ViewerDep,
    request_id: RequestId,
    reason: Annotated[str | None, Form(max_length=MAX_TEXT)] = None,
) -> Response:
    rt = runtime_of(request)
    try:
        done = requests.cancel(rt, actor=viewer.actor, request_id=request_id, reason=reason)
    except PimlicoError as error:
        return _detail(
            request,
            viewer,
            request_id,
            problem=Problem.of(error),
            status=error.status,
            reason=reason or "",
        )
    [item] = shown(rt, [done.value])
    response = RedirectResponse(f"/portal/requests/{request_id}", status_code=303)
    whose = "your" if item.requester_id == viewer.user_id else f"{item.requester}'s"
    session.flash(request, response, f"You canceled {whose} request for {item.target_name}.")
    return response
