"""Errors as RFC 9457 ``application/problem+json``: the only place ``PimlicoError`` meets HTTP.

Every problem has ``type`` (``urn:pimlico:problem:<code>``), ``title``, ``status``,
``detail``, the stable ``code`` (the error tree's, ``pimlico.errors``) and, for bad input,
``errors``: one ``{field, rule, message}`` per broken rule. Request validation by FastAPI
becomes ``InvalidInput`` (400) naming each field; an unknown route ``NotFound``; anything
unexpected ``InternalError`` (500) with no detail at all — the traceback goes to the log,
never to the caller.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from pimlico.errors import (
    FieldError,
    InvalidInput,
    NotAuthenticated,
    PimlicoError,
    TooManyAttempts,
)

log = logging.getLogger(__name__)
MEDIA_TYPE = "application/problem+json"
CLIENT_CLOSED_REQUEST = 499
"""The status logged and counted for a request whose client left before sending it whole
(nginx's convention; the client never sees it)."""


class FieldProblem(BaseModel):
    field: str = Field(examples=["activation.maximum_duration"])
    rule: str = Field(examples=["max"])
    message: str = Field(examples=["at most P1D"])


class Problem(BaseModel):
    """An RFC 9457 problem detail, with Pimlico's stable ``code``."""

    type: str = Field(examples=["urn:pimlico:problem:RoleAssignmentExists"])
    title: str = Field(examples=["RoleAssignmentExists"])
    status: int = Field(examples=[400])
    detail: str = Field(examples=["Security Reader at / is already active for alex"])
    code: str = Field(examples=["RoleAssignmentExists"])
    instance: str | None = Field(default=None, examples=["/api/v1/requests"])
    errors: list[FieldProblem] = Field(default_factory=list)
    rules: list[str] = Field(
        default_factory=list,
        description="The policy rules that failed (PIM-REFERENCE §2 codes), when any did.",
    )


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "content": {MEDIA_TYPE: {}}, "description": description}
    for status, description in (
        (400, "Bad input, or a rule of the policy refused it"),
        (401, "No valid credentials"),
        (403, "The caller may not do this"),
        (404, "Not found"),
        (409, "The state changed under the caller"),
        (429, "Too many attempts"),
    )
}
"""The error responses every operation may give, for the OpenAPI document."""


def problem_response(
    status: int,
    code: str,
    detail: str,
    *,
    instance: str | None = None,
    errors: Sequence[FieldError] = (),
    rules: Sequence[str] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = Problem(
        type=f"urn:pimlico:problem:{code}",
        title=code,
        status=status,
        detail=detail,
        code=code,
        instance=instance,
        errors=[FieldProblem(field=e.field, rule=e.rule, message=e.message) for e in errors],
        rules=list(rules),
    )
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=status,
        media_type=MEDIA_TYPE,
        headers=headers,
    )


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem."""

    @app.exception_handler(PimlicoError)
    async def pimlico_error(request: Request, error: PimlicoError) -> JSONResponse:
        headers: dict[str, str] = {}
        if isinstance(error, NotAuthenticated):
            headers["WWW-Authenticate"] = 'Bearer realm="pimlico"'
        if isinstance(error, TooManyAttempts):
            headers["Retry-After"] = str(
                max(1, math.ceil(error.retry_after.timestamp() - time.time()))
            )
        if error.status >= 500:
            log.error("%s on %s: %s", error.code, request.url.path, error.message)
        return problem_response(
            error.status,
            error.code,
            error.message,
            instance=request.url.path,
            errors=getattr(error, "errors", ()) if isinstance(error, InvalidInput) else (),
            rules=getattr(error, "rules", ()),
            headers=headers or None,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [field_error(e) for e in error.errors()]
        detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
        return problem_response(
            400, InvalidInput.code, detail, instance=request.url.path, errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "NotFound", 405: "MethodNotAllowed"}.get(error.status_code, "HttpError")
        return problem_response(
            error.status_code,
            code,
            str(error.detail),
            instance=request.url.path,
            headers=dict(error.headers) if error.headers else None,
        )

    @app.exception_handler(DataError)
    async def unstorable(request: Request, error: DataError) -> JSONResponse:
        # A value the database refuses to hold or compare (a NUL character, a number out of
        # range): the caller's input, not a fault of ours. Its transaction rolled back.
        log.warning("refused by the store on %s: %s", request.url.path, error.orig)
        return problem_response(
            400,
            InvalidInput.code,
            "a value in the request cannot be stored or looked up (a NUL character, or a "
            "number out of range)",
            instance=request.url.path,
        )

    @app.exception_handler(ClientDisconnect)
    async def gone(request: Request, error: ClientDisconnect) -> Response:
        # The client closed the connection before its request's body arrived: nobody reads
        # an answer. Neither a fault of ours (no 500, no stack trace) nor a bad request.
        log.debug("client went away during %s %s", request.method, request.url.path)
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem_response(
            500, "InternalError", "an unexpected error occurred", instance=request.url.path
        )


def field_error(error: Any) -> FieldError:
    where = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path")]
    return FieldError(".".join(where) or "body", str(error.get("type", "invalid")), error["msg"])
