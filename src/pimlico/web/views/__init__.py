"""The portal's views: each module a page or a few, each view one use case.

Every portal route uses ``PortalRoute``, which does for all of them what a view must not
forget: it refuses an unsafe request (POST) that does not carry this browser's CSRF token or
comes from another site, before the view runs; it sends a visitor without a valid session to
the sign-in page; it turns a ``PimlicoError`` or a malformed form into a page saying, in plain
words, what failed and what to do; and it puts the security headers on every answer.

A view that wants the error beside its form (``render.Problem``) catches it itself.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute

from pimlico.api.problems import field_error
from pimlico.errors import InvalidInput, PimlicoError
from pimlico.web import session
from pimlico.web.render import Problem, page
from pimlico.web.session import SignInRequired, Viewer, viewer_of

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ANONYMOUS_FORMS = frozenset({"/portal/sign-in", "/portal/sign-in/mfa"})
"""The forms posted before there is a session: their CSRF token is the pre-session's."""
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class CsrfRefused(PimlicoError):
    """An unsafe request without this browser's CSRF token, or sent from another site."""

    code = "CsrfRefused"
    status = 403

    def __init__(self) -> None:
        super().__init__(
            "This form did not come from this Pimlico page, or it has expired: "
            "reload the page and submit it again."
        )


def security_headers(request: Request, response: Response) -> None:
    """The headers every portal answer carries."""
    headers = response.headers
    headers["Content-Security-Policy"] = _CSP
    headers["X-Frame-Options"] = "DENY"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "same-origin"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=(), payment=()"
    headers.setdefault("Cache-Control", "no-store")
    if session.secure(request):
        headers["Strict-Transport-Security"] = "max-age=31536000"


def _from_elsewhere(request: Request) -> bool:
    """Was this request sent by a page of another site? (A second wall behind the token.)

    Browsers that send ``Sec-Fetch-Site`` are believed; otherwise ``Origin``, when present,
    must be this portal's. (``Origin`` alone is not enough: Chromium sends ``null`` for a
    form posted from a page whose referrer policy withholds the origin.)"""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = request.headers.get("origin")
    return origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}"


async def _viewer_or_none(request: Request) -> Viewer | None:
    try:
        return await viewer_of(request)
    except (SignInRequired, PimlicoError):
        return None


async def problem_page(request: Request, error: PimlicoError) -> Response:
    viewer = await _viewer_or_none(request)
    problem = Problem.of(error)
    return page(
        request, "error.html", viewer=viewer, status=max(problem.status, 400), problem=problem
    )


def sign_in_redirect(request: Request) -> RedirectResponse:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    if request.method not in SAFE_METHODS:
        target = "/portal/"
    return RedirectResponse(f"/portal/sign-in?next={quote(target, safe='')}", status_code=303)


class PortalRoute(APIRoute):
    """A portal page: CSRF and origin checked, sign-in enforced, errors as pages."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def portal_handler(request: Request) -> Response:
            response: Response
            if request.method not in SAFE_METHODS and not await _trusted_form(request):
                response = await problem_page(request, CsrfRefused())
            else:
                try:
                    response = await handler(request)
                except SignInRequired:
                    response = sign_in_redirect(request)
                except PimlicoError as error:
                    response = await problem_page(request, error)
                except RequestValidationError as error:
                    fields = [field_error(e) for e in error.errors()]
                    invalid = InvalidInput("Some fields are missing or malformed", fields)
                    response = await problem_page(request, invalid)
            security_headers(request, response)
            return response

        return portal_handler


async def _trusted_form(request: Request) -> bool:
    if _from_elsewhere(request):
        return False
    try:
        form = await request.form()
    except (ValueError, KeyError, AssertionError):
        return False
    token = form.get(session.CSRF_FIELD)
    anonymous = request.url.path in ANONYMOUS_FORMS
    return isinstance(token, str) and session.csrf_is_valid(request, token, anonymous=anonymous)


def portal_router() -> APIRouter:
    """A router whose routes are portal pages (not in the API's OpenAPI document)."""
    return APIRouter(route_class=PortalRoute, include_in_schema=False)


ViewerDep = Annotated[Viewer, Depends(viewer_of)]
"""The signed-in viewer; without a valid session the page answers with the sign-in page."""
