"""Signing in (password, then the MFA code when the person has a factor) and out.

A person with a confirmed MFA factor gives a code at every sign-in (``accounts.sign_in``
refuses the password alone, here as through the API); that verification also counts as
their step-up, so an activation that needs MFA right after sign-in asks nothing more.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from pimlico.api.deps import runtime_of
from pimlico.errors import MfaCodeRequired, MfaError, NotAuthenticated, TooManyAttempts
from pimlico.services import accounts
from pimlico.web import session
from pimlico.web.render import Problem, page
from pimlico.web.views import portal_router

router = portal_router()

UserName = Annotated[str, Form(max_length=256)]
Password = Annotated[str, Form(max_length=accounts.PASSWORD_MAX)]
Next = Annotated[str | None, Form(max_length=2048)]


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/portal/roles", status_code=303)


@router.get("/sign-in")
def sign_in_form(request: Request, next: str | None = None) -> HTMLResponse:
    return page(request, "sign_in.html", viewer=None, next=session.safe_next(next), user_name="")


@router.post("/sign-in")
def sign_in(
    request: Request, user_name: UserName, password: Password, next: Next = None
) -> Response:
    rt = runtime_of(request)
    target = session.safe_next(next)
    try:
        issued = accounts.sign_in(rt, user_name=user_name, password=password)
    except MfaCodeRequired as needs_code:
        response = RedirectResponse(
            "/portal/sign-in/mfa?next=" + quote(target, safe=""), status_code=303
        )
        session.hold_pending(request, response, needs_code.user_id)
        return response
    except (NotAuthenticated, TooManyAttempts) as error:
        return page(
            request,
            "sign_in.html",
            viewer=None,
            status=error.status,
            problem=Problem.of(error),
            next=target,
            user_name=user_name,
        )
    response = RedirectResponse(target, status_code=303)
    session.start_session(request, response, issued.bearer)
    return response


@router.get("/sign-in/mfa")
def mfa_form(request: Request, next: str | None = None) -> Response:
    if session.pending_user(request) is None:
        return RedirectResponse("/portal/sign-in", status_code=303)
    return page(request, "sign_in_mfa.html", viewer=None, next=session.safe_next(next))


@router.post("/sign-in/mfa")
def mfa_step(
    request: Request, code: Annotated[str, Form(max_length=64)], next: Next = None
) -> Response:
    rt = runtime_of(request)
    target = session.safe_next(next)
    user_id = session.pending_user(request)
    if user_id is None:
        response = RedirectResponse("/portal/sign-in", status_code=303)
        session.flash(request, response, "That sign-in took too long: please start again.")
        return response
    try:
        issued = accounts.finish_sign_in(rt, user_id=user_id, code=code.strip())
    except (MfaError, NotAuthenticated) as error:
        return page(
            request,
            "sign_in_mfa.html",
            viewer=None,
            status=error.status,
            problem=Problem.of(error),
            next=target,
        )
    response = RedirectResponse(target, status_code=303)
    session.start_session(request, response, issued.bearer)
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    # Without a valid session there is nothing to revoke, but the cookie still goes.
    try:
        viewer = await session.viewer_of(request)
    except session.SignInRequired:
        viewer = None
    if viewer is not None:
        await run_in_threadpool(
            accounts.revoke_token,
            runtime_of(request),
            actor=viewer.actor,
            token_id=viewer.token_id,
        )
    response = RedirectResponse("/portal/sign-in", status_code=303)
    session.end_session(request, response)
    session.flash(request, response, "You are signed out.")
    return response
