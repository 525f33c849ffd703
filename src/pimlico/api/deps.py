"""What routes are given: the runtime, the authenticated caller, paging, the revision header.

Routes declare ``RuntimeDep`` and ``CallerDep`` (``Annotated`` aliases) and nothing else of
the app. The caller is authenticated here (a bearer token, ``services.accounts``); what the
caller may do is decided by the services, never here — except the token's ``pim.self``
scope, which guards acting on one's own behalf (``SelfDep``), something no ``pim.*``
permission covers.

The dependencies are ``async def``: FastAPI runs plain ``def`` ones in its thread pool, a
hop per dependency per request. Authenticating answers from memory on the event loop; when
it must read the store (at most once per token per ``token_cache_seconds``, and once a minute
to write last uses) it does so in the thread pool.
"""

from __future__ import annotations

import base64
import binascii
import inspect
import json
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from starlette.requests import ClientDisconnect

from pimlico.errors import FieldError, InvalidInput, NotAuthenticated, PermissionDenied
from pimlico.services import accounts
from pimlico.services.runtime import Actor, Pimlico

T = TypeVar("T")
REVISION_HEADER = "Pimlico-Revision"
"""The store revision a write produced (pass it to ``check`` as ``at_least_revision``)."""


def runtime_of(request: Request) -> Pimlico:
    rt: Pimlico = request.app.state.runtime
    return rt


async def _runtime(request: Request) -> Pimlico:
    return runtime_of(request)


RuntimeDep = Annotated[Pimlico, Depends(_runtime)]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise NotAuthenticated("use 'Authorization: Bearer <token>'")
    return value.strip()


async def _caller(request: Request, rt: RuntimeDep) -> Actor:
    return await caller_of(request, rt)


async def caller_of(request: Request, rt: Pimlico) -> Actor:
    """Who sends ``request`` (``CallerDep`` without dependency injection, for a hot path)."""
    bearer = _bearer(request)
    if bearer is None:
        raise NotAuthenticated("sign in, or send a token: 'Authorization: Bearer <token>'")
    # From memory on the event loop when it can; a read of the store (a token's first use in
    # this process, or its cache expired) goes to the thread pool, never blocking the loop.
    found = accounts.authenticate_from_memory(rt, bearer)
    if found is None:
        found = await run_in_threadpool(accounts.authenticate, rt, bearer)
    actor, token_id = found
    request.state.token_id = token_id
    return actor


CallerDep = Annotated[Actor, Depends(_caller)]

ModelT = TypeVar("ModelT", bound=BaseModel)


async def body_of(request: Request) -> bytes:
    """``request``'s body, read from ``receive`` itself: ``Request.body`` reads it through an
    async generator, which costs more than the small JSON body of a hot path. For a route
    that reads its body once and leaves it to nothing else (it is not kept on ``request``)."""
    chunks: list[bytes] = []
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        if message["type"] != "http.request":
            continue
        body: bytes = message.get("body", b"")
        if not message.get("more_body", False):
            return b"".join((*chunks, body)) if chunks else body
        chunks.append(body)


async def parsed_body(
    request: Request, model: type[ModelT], *, errors: Sequence[Any] = ()
) -> ModelT:
    """``request``'s JSON body as ``model``, refused as FastAPI refuses a body parameter, for
    a hot path: an empty body is missing, a body whose ``Content-Type`` is not JSON is not
    read as JSON, and each error's location is under ``body``. ``errors`` (the request's
    other parameters' errors, ``header_errors``) are raised with the body's, as FastAPI
    reports a route's parameters and body together (``RequestValidationError``)."""
    raw = await body_of(request)
    found: list[Any] = list(errors)
    if not raw:
        found.append({"type": "missing", "loc": ("body",), "msg": "Field required", "input": None})
    else:
        try:
            if _is_json(request.headers.get("content-type")):
                parsed = model.model_validate_json(raw)
            else:  # refused as the bytes it is (FastAPI: not JSON by its Content-Type)
                parsed = model.model_validate(raw, from_attributes=True)
        except ValidationError as error:
            found += ({**e, "loc": ("body", *e["loc"])} for e in error.errors(include_url=False))
        else:
            if not found:
                return parsed
    raise RequestValidationError(found)


def _is_json(content_type: str | None) -> bool:
    """Whether ``content_type`` names JSON (``application/json``, ``application/*+json``)."""
    if content_type is None:
        return False
    maintype, _, subtype = content_type.partition(";")[0].strip().lower().partition("/")
    return maintype == "application" and (subtype == "json" or subtype.endswith("+json"))


def header_errors(request: Request, name: str, adapter: TypeAdapter[Any]) -> list[Any]:
    """The errors of the header ``name`` (absent: none) against ``adapter``, located as
    FastAPI locates a header parameter's (for ``parsed_body``'s ``errors``)."""
    value = request.headers.get(name)
    if value is None:
        return []
    try:
        adapter.validate_python(value)
    except ValidationError as error:
        return [{**e, "loc": ("header", name, *e["loc"])} for e in error.errors(include_url=False)]
    return []


# -- routes whose arguments are read by hand ------------------------------------------------

Solve = Callable[[Request], Awaitable[dict[str, Any]]]
"""Reads an endpoint's arguments from the request (``solved_by``)."""
EndpointT = TypeVar("EndpointT", bound=Callable[..., Any])
_SOLVE = "__pimlico_solve__"


def solved_by(solve: Solve) -> Callable[[EndpointT], EndpointT]:
    """Serve the endpoint with the arguments ``solve`` reads from the request by hand
    (``HandSolvedRoute``) instead of through FastAPI's dependency injection and validation,
    which cost more than a hot path's own work. The endpoint's signature still makes the
    OpenAPI document, so ``solve`` must check what it declares, with the same errors
    (``caller_of``, ``header_errors``, ``parsed_body``); the API tests hold it to that."""

    def mark(endpoint: EndpointT) -> EndpointT:
        setattr(endpoint, _SOLVE, solve)
        return endpoint

    return mark


class HandSolvedRoute(APIRoute):
    """A route that serves an endpoint marked ``solved_by`` through its ``solve`` (others as
    FastAPI does). A plain ``def`` endpoint runs in the thread pool; its answer, a model of
    the route's ``response_model``, is serialised once, not validated again (a ``Response``
    is sent as it is); a ``response`` argument (a ``Response``, as FastAPI gives) sets the
    answer's status and headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        solve: Solve | None = getattr(self.endpoint, _SOLVE, None)
        if solve is None:
            return super().get_route_handler()
        if self.dependencies:
            raise TypeError(f"{self.path}: a route solved by hand takes no dependencies")
        endpoint = self.endpoint
        status_code = self.status_code or 200
        serializer = TypeAdapter(self.response_model).serializer
        exclude_none = self.response_model_exclude_none
        takes_response = "response" in inspect.signature(endpoint).parameters
        awaited = inspect.iscoroutinefunction(endpoint)

        async def handle(request: Request) -> Response:
            arguments = await solve(request)
            given = Response()
            del given.headers["content-length"]
            given.status_code = None  # type: ignore[assignment]  # (unset, as FastAPI does)
            if takes_response:
                arguments["response"] = given
            answer = (
                await endpoint(**arguments)
                if awaited
                else await run_in_threadpool(endpoint, **arguments)
            )
            if isinstance(answer, Response):  # made by the endpoint: sent as it is
                return answer
            response = Response(
                serializer.to_json(answer, exclude_none=exclude_none),
                status_code=given.status_code or status_code,
                media_type="application/json",
            )
            response.headers.raw.extend(given.headers.raw)
            return response

        return handle


def require_self(caller: Actor) -> Actor:
    """``caller``, if its token may act on its own behalf (``pim.self``); for routes where
    only the request says whether it does (a self-service action among others)."""
    if not caller.may_use(accounts.SELF):
        raise PermissionDenied(f"this token's scopes exclude {accounts.SELF} (acting for oneself)")
    return caller


async def _acting_for_self(caller: CallerDep) -> Actor:
    return require_self(caller)


SelfDep = Annotated[Actor, Depends(_acting_for_self)]
"""The caller, acting on their own behalf (activating, their requests, MFA, their tokens)."""


def written(response: Response, revision: int) -> None:
    """Put the revision a write produced in its response."""
    response.headers[REVISION_HEADER] = str(revision)


# -- cursor pagination ----------------------------------------------------------------------


class Page(BaseModel, Generic[T]):
    """One page of a list, in a stable order; ``next_cursor`` fetches the next page (absent
    on the last one)."""

    items: list[T]
    next_cursor: str | None = Field(default=None, description="Opaque; pass back as `cursor`.")


class Paging:
    def __init__(self, cursor: str | None, limit: int) -> None:
        self.cursor = cursor
        self.limit = limit

    def page(
        self, items: Sequence[Any], key: Callable[[Any], Any], make: Callable[[Any], T]
    ) -> Page[T]:
        """The page after ``cursor`` of ``items`` ordered by ``key`` (a unique, stable sort
        key: each page resumes after the last key of the previous one, so rows added or
        removed meanwhile neither repeat nor skip the rest)."""
        after = decode_cursor(self.cursor) if self.cursor else None
        ordered = sorted(items, key=key)
        if after is not None:
            ordered = [i for i in ordered if _comparable(key(i)) > after]
        chosen = ordered[: self.limit]
        more = len(ordered) > self.limit
        cursor = encode_cursor(_comparable(key(chosen[-1]))) if more and chosen else None
        return Page[T](items=[make(i) for i in chosen], next_cursor=cursor)


async def _paging(
    cursor: Annotated[
        str | None, Query(description="From the previous page's `next_cursor`.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Items per page.")] = 100,
) -> Paging:
    if cursor is not None:
        decode_cursor(cursor)
    return Paging(cursor, limit)


PagingDep = Annotated[Paging, Depends(_paging)]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def newest_first(at: datetime, item_id: str) -> tuple[int, str]:
    """The paging key of a list ordered newest first (by ``at``), then by id: unique and
    stable (``after_cursor`` reads it back from a cursor)."""
    return -((at - _EPOCH) // _MICROSECOND), item_id


def after_cursor(paging: Paging) -> tuple[datetime, str] | None:
    """The ``(at, id)`` of the last item of the page before, from the cursor of a
    ``newest_first`` key, for a list paged in SQL; ``InvalidInput`` naming ``cursor`` for
    any other cursor."""
    if paging.cursor is None:
        return None
    refusal = InvalidInput(
        "cursor: not a cursor of this list",
        [FieldError("cursor", "cursor", "pass back a next_cursor of this list unchanged")],
    )
    key = decode_cursor(paging.cursor)
    if (
        len(key) != 2
        or not isinstance(key[0], int)
        or isinstance(key[0], bool)
        or not isinstance(key[1], str)
    ):
        raise refusal
    try:
        # A forged cursor can hold any integer: beyond datetime's years 1..9999 it overflows.
        return _EPOCH - key[0] * _MICROSECOND, key[1]
    except OverflowError:
        raise refusal from None


def _comparable(key: Any) -> list[Any]:
    values = key if isinstance(key, tuple) else (key,)
    return [v.isoformat() if hasattr(v, "isoformat") else v for v in values]


def encode_cursor(key: list[Any]) -> str:
    """The opaque cursor of a sort key (a JSON list), for lists paged their own way."""
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str) -> list[Any]:
    """The sort key of a cursor ``encode_cursor`` made; ``InvalidInput`` naming ``cursor``
    otherwise."""
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        value = None
    if not isinstance(value, list):
        raise InvalidInput(
            "cursor: not a cursor this API gave",
            [FieldError("cursor", "cursor", "pass back a next_cursor unchanged")],
        )
    return value
