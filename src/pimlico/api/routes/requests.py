"""Requests: create (every action, with dry run and idempotency key), list, get, cancel.

Every assignment change is a request (PIM-REFERENCE §1(c)): self-service (``self_*``, for
the caller, which needs the token's ``pim.self`` scope) or an administrator's (``admin_*``,
for anyone, as the services authorize). A policy refusal is a 400 problem whose ``rules``
name every failed rule. The routes translate; ``services.requests`` decides.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Request, Response, status
from pydantic import AwareDatetime, Field, TypeAdapter

from pimlico.api.deps import (
    CallerDep,
    HandSolvedRoute,
    Page,
    PagingDep,
    RuntimeDep,
    after_cursor,
    caller_of,
    header_errors,
    parsed_body,
    require_self,
    runtime_of,
    solved_by,
    written,
)
from pimlico.api.routes.request_models import (
    ID,
    NewRequest,
    RequestOut,
    newest_first_request,
)
from pimlico.domain.model import PrincipalRef, PrincipalType, TargetType
from pimlico.domain.requests import RequestAction, RequestStatus
from pimlico.services import mfa, request_reads, requests
from pimlico.services.requests import RequestFilter

router = APIRouter(tags=["requests"], route_class=HandSolvedRoute)


_EXAMPLES: dict[str, Any] = {
    "self_activate": {
        "summary": "Activate an eligible role for two hours, with a ticket",
        "value": {
            "action": "self_activate",
            "target": {"type": "role", "object_id": "5d6b6bb7-…", "scope": "/"},
            "schedule": {"expiration": {"type": "after_duration", "duration": "PT2H"}},
            "justification": "phishing campaign INC-42",
            "ticket": {"system": "ServiceNow", "number": "INC-42"},
        },
    },
    "self_deactivate": {
        "summary": "End one's activation early",
        "value": {
            "action": "self_deactivate",
            "target": {"type": "group_member", "object_id": "9a1e…"},
        },
    },
    "admin_assign": {
        "summary": "Make a user eligible for a group's membership for 90 days",
        "value": {
            "action": "admin_assign",
            "kind": "eligible",
            "principal": {"type": "user", "id": "3f0c…"},
            "target": {"type": "group_member", "object_id": "9a1e…"},
            "schedule": {"expiration": {"type": "after_duration", "duration": "P90D"}},
            "justification": "joins the mail security team",
        },
    },
    "admin_remove": {
        "summary": "End an assignment now",
        "value": {"action": "admin_remove", "assignment_id": "c2d4…", "justification": "left"},
    },
}


MAX_KEY = 256
"""The longest ``Idempotency-Key``."""
_KEY = TypeAdapter(Annotated[str, Field(max_length=MAX_KEY)])


async def _create_arguments(request: Request) -> dict[str, Any]:
    # Activations are the busiest writes people make (a shift starting, an incident): their
    # arguments are read by hand, with the checks and errors the signature below declares.
    rt = runtime_of(request)
    caller = await caller_of(request, rt)
    errors = header_errors(request, "Idempotency-Key", _KEY)
    body = await parsed_body(request, NewRequest, errors=errors)
    key = request.headers.get("idempotency-key")
    return {"body": body, "caller": caller, "rt": rt, "idempotency_key": key}


@router.post(
    "/requests",
    response_model=RequestOut,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": RequestOut, "description": "A dry run: nothing was stored."}},
    summary="Ask for a change: activate, deactivate, extend, renew, assign, update, remove",
)
@solved_by(_create_arguments)
def create_request(
    body: Annotated[NewRequest, Body(openapi_examples=_EXAMPLES)],
    caller: CallerDep,
    rt: RuntimeDep,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=MAX_KEY,
            description="Asking again with the same key answers the first request.",
        ),
    ] = None,
) -> RequestOut:
    if body.action.is_self_service:
        require_self(caller)
    done = requests.submit(
        rt,
        actor=caller,
        action=body.action,
        kind=body.kind,
        target=None if body.target is None else body.target.to_domain(),
        principal=None if body.principal is None else body.principal.to_domain(),
        assignment_id=body.assignment_id,
        schedule=None if body.schedule is None else body.schedule.to_domain(),
        justification=body.justification,
        ticket=None if body.ticket is None else body.ticket.to_domain(),
        idempotency_key=idempotency_key,
        dry_run=body.dry_run,
        mfa_verified=not body.action.is_self_service and mfa.verified_recently(rt, actor=caller),
    )
    written(response, done.revision)
    if done.value.dry_run:
        response.status_code = status.HTTP_200_OK
    return RequestOut.of(done.value)


@router.get(
    "/requests",
    response_model=Page[RequestOut],
    summary="Requests, newest first: the caller's own (`mine`) or all (pim.requests.read)",
)
def list_requests(
    caller: CallerDep,
    rt: RuntimeDep,
    paging: PagingDep,
    mine: Annotated[bool, Query(description="Only the requests the caller made.")] = False,
    status_: Annotated[RequestStatus | None, Query(alias="status")] = None,
    action: RequestAction | None = None,
    target_type: TargetType | None = None,
    target_id: Annotated[str | None, Query(max_length=ID)] = None,
    principal_type: PrincipalType | None = None,
    principal_id: Annotated[
        str | None, Query(max_length=ID, description="Whose assignment (with principal_type).")
    ] = None,
    requested_by: Annotated[str | None, Query(max_length=ID)] = None,
    since: Annotated[
        AwareDatetime | None, Query(description="Asked at or after (RFC 3339).")
    ] = None,
    until: Annotated[AwareDatetime | None, Query(description="Asked before (RFC 3339).")] = None,
) -> Page[RequestOut]:
    if mine:
        require_self(caller)
    principal = None
    if principal_id is not None:
        principal = PrincipalRef(principal_type or PrincipalType.USER, principal_id)
    where = RequestFilter(
        status=status_,
        action=action,
        principal=principal,
        target_type=target_type,
        target_id=target_id,
        requested_by=requested_by,
        since=since,
        until=until,
    )
    found = request_reads.requests_page(
        rt, actor=caller, mine=mine, where=where, after=after_cursor(paging), limit=paging.limit + 1
    )
    return paging.page(found, newest_first_request, RequestOut.of)


@router.get(
    "/requests/{request_id}",
    response_model=RequestOut,
    summary="One request: for its requester, an approver who may decide it, or a reader",
)
def get_request(request_id: str, caller: CallerDep, rt: RuntimeDep) -> RequestOut:
    return RequestOut.of(requests.get_request(rt, actor=caller, request_id=request_id))


@router.post(
    "/requests/{request_id}/cancel",
    response_model=RequestOut,
    summary="Withdraw a request that has not started (pending approval, or granted for later)",
)
def cancel_request(
    request_id: str,
    caller: CallerDep,
    rt: RuntimeDep,
    response: Response,
    reason: Annotated[
        str | None, Body(embed=True, max_length=4000, examples=["no longer needed"])
    ] = None,
) -> RequestOut:
    done = requests.cancel(rt, actor=caller, request_id=request_id, reason=reason)
    written(response, done.revision)
    return RequestOut.of(done.value)
