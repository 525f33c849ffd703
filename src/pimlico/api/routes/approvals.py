"""Approvals: the caller's inbox (the requests they may decide now), approve and deny.

A requester never decides their own request (403 ``PermissionDenied``); a request already
decided, canceled or expired answers 409 ``AlreadyDecided``; a stage that asks for the
approver's justification refuses a decision without one (400 naming ``justification``).
Approving and denying are done by a person on their own behalf (the token's ``pim.self``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Response

from pimlico.api.deps import Page, PagingDep, RuntimeDep, SelfDep, written
from pimlico.api.routes.request_models import Decide, RequestOut, newest_first_request
from pimlico.services import approvals, requests

router = APIRouter(tags=["approvals"])
Asked = Annotated[Decide | None, Body()]


@router.get(
    "/approvals",
    response_model=Page[RequestOut],
    summary="My inbox: pending requests I may decide now (never my own), newest first",
)
def inbox(caller: SelfDep, rt: RuntimeDep, paging: PagingDep) -> Page[RequestOut]:
    found = requests.list_requests(rt, actor=caller, to_approve=True)
    return paging.page(found, newest_first_request, RequestOut.of)


@router.post(
    "/approvals/{request_id}/approve",
    response_model=RequestOut,
    summary="Approve the current stage of a request; the last stage's quorum grants it",
)
def approve(
    request_id: str, caller: SelfDep, rt: RuntimeDep, response: Response, body: Asked = None
) -> RequestOut:
    done = approvals.approve(
        rt,
        actor=caller,
        request_id=request_id,
        justification=None if body is None else body.justification,
    )
    written(response, done.revision)
    return RequestOut.of(done.value)


@router.post(
    "/approvals/{request_id}/deny",
    response_model=RequestOut,
    summary="Deny a request: one denial denies it",
)
def deny(
    request_id: str, caller: SelfDep, rt: RuntimeDep, response: Response, body: Asked = None
) -> RequestOut:
    done = approvals.deny(
        rt,
        actor=caller,
        request_id=request_id,
        justification=None if body is None else body.justification,
    )
    written(response, done.revision)
    return RequestOut.of(done.value)
