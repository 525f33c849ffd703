"""Approve requests: the viewer's inbox (the requests they may decide now, never their own)
and the approval page of one request, where they approve or deny it.

The inbox is ``services.requests.list_requests(to_approve=True)`` (the API's
``GET /approvals``); deciding is ``services.approvals.approve`` / ``deny``, which refuse the
requester, anyone not an approver of the current stage, a decision without the justification
the stage asks for, and a request already decided. The approval page shows its forms only
when ``portal_requests.may_decide_now`` says the decision would be accepted. Approval mails
link to ``/portal/approvals/{id}``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from pimlico.api.deps import runtime_of
from pimlico.errors import PimlicoError
from pimlico.services import approvals, portal_requests, requests
from pimlico.services.lookups import MAX_TEXT
from pimlico.web import session
from pimlico.web.render import Problem, page
from pimlico.web.session import Viewer
from pimlico.web.views import ViewerDep, portal_router
from pimlico.web.views.requests import RequestId, shown, visible

router = portal_router()

INBOX_LIMIT = 200
Justification = Annotated[str | None, Form(max_length=MAX_TEXT)]


@router.get("/approvals")
def inbox(request: Request, viewer: ViewerDep) -> HTMLResponse:
    rt = runtime_of(request)
    found = requests.list_requests(rt, actor=viewer.actor, to_approve=True, limit=INBOX_LIMIT)
    return page(
        request,
        "approvals.html",
        viewer=viewer,
        items=shown(rt, found),
        limited=len(found) >= INBOX_LIMIT,
    )


def _approval_page(
    request: Request,
    viewer: Viewer,
    request_id: str,
    *,
    problem: Problem | None = None,
    status: int = 200,
    justification: str = "",
) -> HTMLResponse:
    rt = runtime_of(request)
    view = visible(rt, viewer, request_id)
    if view is None:
        # Whether it does not exist or is not the viewer's to see: the same words, no details.
        return page(
            request,
            "approvals_detail.html",
            viewer=viewer,
            status=404,
            r=None,
            decidable=False,
            own=False,
            justification="",
        )
    [item] = shown(rt, [view])
    decidable = portal_requests.may_decide_now(rt, actor=viewer.actor, view=view)
    return page(
        request,
        "approvals_detail.html",
        viewer=viewer,
        status=status,
        problem=problem,
        r=item,
        decidable=decidable,
        own=item.requester_id == viewer.user_id,
        justification=justification,
    )


@router.get("/approvals/{request_id}")
def approval_page(request: Request, viewer: ViewerDep, request_id: RequestId) -> HTMLResponse:
    return _approval_page(request, viewer, request_id)


def _decide(
    request: Request,
    viewer: Viewer,
    request_id: str,
    approved: bool,
    justification: str | None,
) -> Response:
    rt = runtime_of(request)
    decide = approvals.approve if approved else approvals.deny
    try:
        done = decide(rt, actor=viewer.actor, request_id=request_id, justification=justification)
    except PimlicoError as error:
        return _approval_page(
            request,
            viewer,
            request_id,
            problem=Problem.of(error),
            status=error.status,
            justification=justification or "",
        )
    [item] = shown(rt, [done.value])
    verb = "approved" if approved else "denied"
    message = f"You {verb} {item.requester}'s request for {item.target_name}."
    if item.standing is not None:
        message += f" It now waits for stage {item.standing.number} of {item.standing.stages}."
    response = RedirectResponse("/portal/approvals", status_code=303)
    session.flash(request, response, message)
    return response


@router.post("/approvals/{request_id}/approve")
def approve(
    request: Request, viewer: ViewerDep, request_id: RequestId, justification: Justification = None
) -> Response:
    return _decide(request, viewer, request_id, True, justification)


@router.post("/approvals/{request_id}/deny")
def deny(
    request: Request, viewer: ViewerDep, request_id: RequestId, justification: Justification = None
) -> Response:
    return _decide(request, viewer, request_id, False, justification)
