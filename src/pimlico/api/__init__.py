"""The HTTP API (FastAPI) under ``/api/v1``: ``create_app(settings)``.

Routes translate HTTP to use-case calls and back (``routes/``); errors become problems
(``problems``); the caller is authenticated in ``deps``; every decision about what a caller
may do is the services'. The app owns one runtime (``Pimlico``), opened when it is built and
closed at shutdown, unless the caller passes its own.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from pimlico import __version__, web
from pimlico.api import metrics, problems
from pimlico.api.routes import (
    approvals,
    assignments,
    audit,
    auth,
    connectors,
    decisions,
    directory,
    mfa,
    requests,
    roles,
    system,
)
from pimlico.services.runtime import Pimlico
from pimlico.settings import Settings

API_PREFIX = "/api/v1"


def create_app(settings: Settings, *, runtime: Pimlico | None = None) -> FastAPI:
    """The API for ``settings`` (or over ``runtime``, which the caller then closes)."""
    rt = runtime or Pimlico(settings)
    owned = runtime is None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if owned:
                rt.close()

    app = FastAPI(
        title="Pimlico",
        version=__version__,
        summary="Privileged Identity Management: zero standing privilege, just in time.",
        description=(
            "Every operation but sign-in, health and metrics needs a bearer token "
            "(`Authorization: Bearer pim_…`), from `POST /api/v1/auth/sign-in` or "
            "`POST /api/v1/tokens`. Errors are RFC 9457 problems with a stable `code`. "
            "Writes answer with the store revision they made in the `Pimlico-Revision` "
            "header; pass it to `check` as `at_least_revision` to read your own writes."
        ),
        lifespan=lifespan,
        responses=problems.PROBLEM_RESPONSES,
    )
    app.state.runtime = rt
    problems.install(app)
    metrics.install(app)
    app.include_router(system.router)
    # The busiest operations first: a request is matched against the routes in this order,
    # and a policy point's checks and people's activations should not wait on every route
    # of the directory first. (No two routers' paths overlap, so the order changes nothing else.)
    for module in (
        decisions,
        requests,
        approvals,
        assignments,
        auth,
        directory,
        roles,
        mfa,
        audit,
        connectors,
    ):
        app.include_router(module.router, prefix=API_PREFIX)
    # After the API's routes: no portal page is matched before an operation of the API.
    web.install(app)
    _document_problems_only(app)
    return app


def _document_problems_only(app: FastAPI) -> None:
    """Leave FastAPI's "422 Validation Error" out of the OpenAPI document: it adds one to
    every operation with a parameter or a body, but a request that fails validation is
    answered 400, a problem naming each field (``problems``), which every operation
    declares already."""
    made = app.openapi

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = made()
            for item in schema["paths"].values():
                for operation in item.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
        return app.openapi_schema  # type: ignore[return-value]  # set by ``made``

    app.openapi = document  # type: ignore[method-assign]


def warm(rt: Pimlico) -> None:
    """Ready a serving process before its first request: build the decision index now, not on
    a request's path, then move everything made so far (the code, the app, the index) out of
    the cyclic garbage collector's sight (``gc.freeze``). A full collection walks every object
    it tracks while no request is answered: about 0.1 s for the app alone, 1.5 to 2 s with an
    index of a million assignments (some 4 million objects), and one comes whenever enough
    objects have outlived two younger collections. Frozen, it walks only what was made
    since. (A frozen object is still freed when its last reference goes; only cycles among
    frozen objects would wait for ``gc.unfreeze``.)"""
    rt.decisions.current()
    gc.collect()
    gc.freeze()
