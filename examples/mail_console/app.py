"""A mail-security console that asks Pimlico before every action (the DESIGN.md story).

Who the caller is comes from the caller's Pimlico token (``Authorization: Bearer``), which the
console resolves with ``GET /api/v1/me`` — the console trusts Pimlico, not a header the caller
could forge. What the caller may do is Pimlico's answer to ``check``, asked with the
console's own token (a service account's, scoped to ``pim.decisions.read``). A caller who
has just activated something passes the ``Pimlico-Revision`` of that write, and the console
asks with it as ``at_least_revision``: the answer reflects the activation even if it went
through another Pimlico server.

People in a browser use the HTML pages of ``web`` (``/`` and ``/web/...``): they sign in to
Pimlico through the console, which keeps their session in an HttpOnly cookie, and the same
``check`` decides what they may do.

``create_console(pimlico_url, console_token, transport=None)`` builds the app;
``from_environment`` builds it from ``PIMLICO_URL`` and ``PIMLICO_TOKEN`` (for
``uvicorn --factory``).
"""

from __future__ import annotations

import os
from typing import Annotated

import httpx
from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse

from examples.mail_console import web
from pimlico.client import ApiError, Client

SCOPE = "/apps/mail"


def create_console(
    pimlico_url: str, console_token: str, *, transport: httpx.BaseTransport | None = None
) -> FastAPI:
    console = FastAPI(title="Mail security console (Pimlico example)")

    def who(authorization: str | None) -> str | JSONResponse:
        token = (authorization or "").removeprefix("Bearer ").strip()
        if not token:
            return JSONResponse({"error": "Sign in to Pimlico first"}, status_code=401)
        try:
            with Client(pimlico_url, token, transport=transport) as caller:
                return caller.me().principal_id
        except ApiError:
            return JSONResponse({"error": "Your Pimlico sign-in is not valid"}, status_code=401)

    def allowed(principal_id: str, permission: str, revision: int | None) -> bool:
        with Client(pimlico_url, console_token, transport=transport) as pimlico:
            decision = pimlico.check(principal_id, permission, SCOPE, at_least_revision=revision)
        return decision.allowed

    @console.get("/quarantine")
    def quarantine(
        authorization: Annotated[str | None, Header()] = None,
        pimlico_revision: Annotated[int | None, Header()] = None,
    ) -> JSONResponse:
        principal = who(authorization)
        if isinstance(principal, JSONResponse):
            return principal
        if not allowed(principal, "security.read", pimlico_revision):
            return JSONResponse({"error": "You need the Security Reader role"}, status_code=403)
        return JSONResponse({"messages": [{"id": "msg-1", "subject": "Invoice overdue"}]})

    @console.post("/messages/{message_id}/purge")
    def purge(
        message_id: str,
        authorization: Annotated[str | None, Header()] = None,
        pimlico_revision: Annotated[int | None, Header()] = None,
    ) -> JSONResponse:
        principal = who(authorization)
        if isinstance(principal, JSONResponse):
            return principal
        if not allowed(principal, "mail.purge", pimlico_revision):
            return JSONResponse({"error": "You need the Search and Purge role"}, status_code=403)
        return JSONResponse({"purged": message_id})

    console.include_router(
        web.router(pimlico_url=pimlico_url, allowed=allowed, transport=transport)
    )
    return console


def from_environment() -> FastAPI:
    """The console for ``PIMLICO_URL`` and ``PIMLICO_TOKEN`` (``uvicorn --factory``)."""
    url, token = os.environ.get("PIMLICO_URL"), os.environ.get("PIMLICO_TOKEN")
    if not url or not token:
        raise SystemExit("set PIMLICO_URL and PIMLICO_TOKEN (the console's own token)")
    return create_console(url, token)
