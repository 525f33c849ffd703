"""Security: the viewer's MFA factor — enrol (a QR code and the secret, shown once), confirm
with a first code (the recovery codes, shown once), verify now (step-up, back to where the
viewer was), and remove (with a fresh verification, as ``mfa.remove`` requires).

The enrolment secret lives only in the answer to the enrolment POST: never in a cookie, a
URL or a page anyone can load again (reloading means enrolling again, which replaces the
unconfirmed factor). The QR code is inline SVG made by segno from the provisioning URI: no
script, no ``style`` attribute, nothing the CSP forbids.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import segno
from fastapi import Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from pimlico.api.deps import runtime_of
from pimlico.errors import MfaError, PimlicoError
from pimlico.services import mfa
from pimlico.services.lookups import MAX_TEXT
from pimlico.web import session
from pimlico.web.render import Problem, page, span
from pimlico.web.session import Viewer
from pimlico.web.views import ViewerDep, portal_router

router = portal_router()

Code = Annotated[str, Form(max_length=64)]
OptionalCode = Annotated[str | None, Form(max_length=64)]
Next = Annotated[str | None, Form(max_length=2048)]
HOME = "/portal/security"


def _back_to(target: str | None) -> str:
    return session.safe_next(target) if target else HOME


def qr_svg(uri: str) -> Markup:
    """The QR code of ``uri`` as inline SVG. segno writes only its own elements and
    attributes (paths from the encoded bits; no text of the URI), so it is safe markup."""
    svg = segno.make(uri, error="m").svg_inline(
        scale=4, omitsize=True, svgclass="qr-code", lineclass=None, title="QR code to scan"
    )
    return Markup(svg)  # noqa: S704 -- segno's own markup, no input text in it


def _security_page(
    request: Request, viewer: Viewer, *, problem: Problem | None = None
) -> HTMLResponse:
    rt = runtime_of(request)
    factor = mfa.factor_of(rt, actor=viewer.actor, user_id=viewer.user_id)
    fresh = mfa.fresh_verification(rt, user_id=viewer.user_id, at=rt.clock.now())
    return page(
        request,
        "security.html",
        viewer=viewer,
        status=problem.status if problem else 200,
        factor=factor,
        fresh=fresh,
        fresh_for=span(timedelta(seconds=rt.settings.mfa_freshness)),
        problem=problem,
    )


@router.get("/security")
def security(request: Request, viewer: ViewerDep) -> HTMLResponse:
    return _security_page(request, viewer)


@router.post("/security/enrol")
def enrol(request: Request, viewer: ViewerDep) -> Response:
    rt = runtime_of(request)
    try:
        enrollment = mfa.enroll(rt, actor=viewer.actor, user_id=viewer.user_id)
    except MfaError as error:
        return _security_page(request, viewer, problem=Problem.of(error))
    return page(
        request,
        "security_enrol.html",
        viewer=viewer,
        qr=qr_svg(enrollment.provisioning_uri),
        secret=enrollment.secret,
    )


@router.post("/security/confirm")
def confirm(request: Request, viewer: ViewerDep, code: Code) -> Response:
    rt = runtime_of(request)
    try:
        codes = mfa.confirm(rt, actor=viewer.actor, user_id=viewer.user_id, code=code.strip())
    except MfaError as error:
        # The secret is not shown again: the person has scanned it, or starts again.
        return page(
            request,
            "security_enrol.html",
            viewer=viewer,
            status=error.status,
            qr=None,
            secret=None,
            problem=Problem.of(error),
        )
    return page(request, "security_codes.html", viewer=viewer, codes=codes)


@router.get("/security/verify")
def verify_form(request: Request, viewer: ViewerDep, next: str | None = None) -> HTMLResponse:
    return page(request, "security_verify.html", viewer=viewer, next=_back_to(next))


@router.post("/security/verify")
def verify(request: Request, viewer: ViewerDep, code: Code, next: Next = None) -> Response:
    rt = runtime_of(request)
    target = _back_to(next)
    try:
        done = mfa.verify(rt, actor=viewer.actor, user_id=viewer.user_id, code=code.strip())
    except MfaError as error:
        return page(
            request,
            "security_verify.html",
            viewer=viewer,
            status=error.status,
            next=target,
            problem=Problem.of(error),
        )
    response = RedirectResponse(target, status_code=303)
    message = "Verified: actions that need MFA accept it for a while."
    if done.method == mfa.RECOVERY:
        message += f" You have {done.recovery_codes_left} recovery codes left."
    session.flash(request, response, message)
    return response


@router.post("/security/remove")
def remove(
    request: Request,
    viewer: ViewerDep,
    code: OptionalCode = None,
    reason: Annotated[str | None, Form(max_length=MAX_TEXT)] = None,
) -> Response:
    rt = runtime_of(request)
    try:
        if code and code.strip():
            mfa.verify(rt, actor=viewer.actor, user_id=viewer.user_id, code=code.strip())
        mfa.remove(rt, actor=viewer.actor, user_id=viewer.user_id, reason=reason or None)
    except PimlicoError as error:
        return _security_page(request, viewer, problem=Problem.of(error))
    response = RedirectResponse(HOME, status_code=303)
    session.flash(request, response, "Your authenticator app is removed from your account.")
    return response
