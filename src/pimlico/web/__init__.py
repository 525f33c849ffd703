"""The web portal: server-rendered pages under ``/portal``, calling the same use cases as the
API (DESIGN.md, issue 5).

``install(app)`` mounts it on the API's app: every module of ``views`` that has a ``router``
is included (so a new page is a new module), the stylesheet and script under
``/portal/static``, and ``/`` leads to the portal. Pages are plain HTML forms that work
without JavaScript; ``static/portal.js`` only tells the server the viewer's time zone.
"""

from __future__ import annotations

import importlib
import pkgutil

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from pimlico.errors import NotFound, PimlicoError
from pimlico.web import views
from pimlico.web.render import STATIC
from pimlico.web.views import problem_page, security_headers

PREFIX = "/portal"


class _Static(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-cache"
        return response


def install(app: FastAPI) -> None:
    """Mount the portal on ``app`` (whose ``state.runtime`` the pages use)."""
    for info in sorted(pkgutil.iter_modules(views.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{views.__name__}.{info.name}")
        router = getattr(module, "router", None)
        if router is not None:
            app.include_router(router, prefix=PREFIX)
    app.mount(f"{PREFIX}/static", _Static(directory=STATIC), name="portal-static")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=303)

    api_http_error = app.exception_handlers[StarletteHTTPException]

    async def http_error(request: Request, error: Exception) -> Response:
        # Portal paths get a page, not a problem+json (the API's answer elsewhere), saying
        # what the status means: an unknown page is not the same as a refused method.
        if isinstance(error, StarletteHTTPException) and request.url.path.startswith(PREFIX):
            response = await problem_page(request, _refusal_of(error))
            if error.status_code == 405 and error.headers and "Allow" in error.headers:
                response.headers["Allow"] = error.headers["Allow"]
            security_headers(request, response)
            return response
        result = await api_http_error(request, error)  # type: ignore[misc]
        assert isinstance(result, Response)
        return result

    app.add_exception_handler(StarletteHTTPException, http_error)


class _HttpRefusal(PimlicoError):
    """A refusal by the web framework itself (not by a use case), with its own status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _refusal_of(error: StarletteHTTPException) -> PimlicoError:
    if error.status_code == 404:
        return NotFound("There is no such page.")
    if error.status_code == 405:
        return _HttpRefusal(405, "MethodNotAllowed", "This page does not accept that.")
    return _HttpRefusal(
        error.status_code, "HttpError", f"That request could not be handled ({error.status_code})."
    )
