"""Signing in (password, then the MFA code when the person has a factor) and out.

A person with a confirmed MFA factor gives a code at every sign-in; that verification also
counts as their step-up, so an activation that needs MFA right after sign-in asks nothing
more.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from pimlico.api.deps import runtime_of
from pimlico.errors import MfaError, NotAuthenticated, TooManyAttempts
from pimlico.services import accounts, mfa
from pimlico.services.runtime import Actor
from pimlico.web import session
from pimlico.web.render import Problem, page
from pimlico.web.views import ViewerDep, portal_router

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
    user_id = issued.token.principal_id
    factor = mfa.factor_of(rt, actor=Actor.principal(user_id), user_id=user_id)
    if factor is not None and factor.confirmed_at is not None:
        response = RedirectResponse(
            "/portal/sign-in/mfa?next=" + quote(target, safe=""), status_code=303
        )
        session.hold_pending(request, response, issued.bearer)
        return response
    response = RedirectResponse(target, status_code=303)
    session.start_session(request, response, issued.bearer)
    return response


@router.get("/sign-in/mfa")
def mfa_form(request: Request, next: str | None = None) -> Response:
    if session.pending_bearer(request) is None:
        return RedirectResponse("/portal/sign-in", status_code=303)
    return page(request, "sign_in_mfa.html", viewer=None, next=session.safe_next(next))


@router.post("/sign-in/mfa")
def mfa_step(
    request: Request, code: Annotated[str, Form(max_length=64)], next: Next = None
) -> Response:
    rt = runtime_of(request)
    target = session.safe_next(next)
    bearer = session.pending_bearer(request)
    if bearer is None:
        response = RedirectResponse("/portal/sign-in", status_code=303)
        session.flash(request, response, "That sign-in took too long: please start again.")
        return response
    actor, _ = accounts.authenticate(rt, bearer)
    assert actor.principal_id is not None
    try:
        mfa.verify(rt, actor=actor, user_id=actor.principal_id, code=code.strip())
    except MfaError as error:
        return page(
            request,
            "sign_in_mfa.html",
            viewer=None,
            status=error.status,
            problem=Problem.of(error),
            next=target,
        )
    response = RedirectResponse(target, status_code=303)
    session.start_session(request, response, bearer)
    return response


@router.post("/sign-out")
def sign_out(request: Request, viewer: ViewerDep) -> Response:
    accounts.revoke_token(runtime_of(request), actor=viewer.actor, token_id=viewer.token_id)
    response = RedirectResponse("/portal/sign-in", status_code=303)
    session.end_session(request, response)
    session.flash(request, response, "You are signed out.")
    return response
