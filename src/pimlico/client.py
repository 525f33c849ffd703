"""A typed Python client of Pimlico's HTTP API (httpx): what scripts, the CLI's user commands
and protected applications use to talk to a Pimlico server.

``Client(url, token)`` (or ``Client.from_environment()``: ``PIMLICO_URL``,
``PIMLICO_TOKEN``). Every call returns typed models (pydantic, tolerant of fields a newer
server adds) or raises ``ApiError`` carrying the problem's stable ``code``, its ``status``,
its ``detail`` and, for bad input or broken rules, the fields and rule codes. Writes record
the store revision they made (``last_revision``); ``check`` passes it on by default, so a
script reads its own writes even when the next call lands on another server.

It must not import the server (``pimlico.api``, services, the store): it is the wire (the
pure domain's duration format is shared).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field

from pimlico.domain.durations import format_duration

REVISION_HEADER = "Pimlico-Revision"
M = TypeVar("M", bound=BaseModel)


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class FieldProblem(_Model):
    field: str
    rule: str
    message: str


class ApiError(Exception):
    """A problem the server answered (RFC 9457), or an answer that was not one."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        errors: list[FieldProblem] | None = None,
        rules: list[str] | None = None,
    ) -> None:
        super().__init__(f"{code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = errors or []
        self.rules = rules or []


class Me(_Model):
    principal_id: str
    name: str
    scopes: list[str] | None = None


class Step(_Model):
    member_id: str
    group_id: str
    via: str
    via_id: str


class Grant(_Model):
    assignment_id: str
    role_id: str
    scope: str
    pattern: str
    holder_id: str
    start: datetime | None = None
    end: datetime | None = None
    chain: list[Step] = Field(default_factory=list)


class Decision(_Model):
    allowed: bool
    principal_id: str
    permission: str
    scope: str
    at: datetime
    reason: str
    revision: int
    grant: Grant | None = None


class Target(_Model):
    type: str
    object_id: str
    scope: str = "/"


class Principal(_Model):
    type: str
    id: str


class Window(_Model):
    start: datetime | None = None
    end: datetime | None = None


class Request(_Model):
    id: str
    action: str
    kind: str
    status: str
    principal: Principal
    target: Target
    requested_by: str
    requested_at: datetime
    justification: str | None = None
    window: Window | None = None
    assignment_id: str | None = None
    dry_run: bool = False


class Assignment(_Model):
    id: str
    kind: str
    principal: Principal
    target: Target
    start: datetime
    end: datetime | None = None
    activated_from: str | None = None
    request_id: str | None = None


class Token(_Model):
    id: str
    kind: str
    name: str
    scopes: list[str]
    expires_at: datetime
    revoked_at: datetime | None = None


class IssuedToken(_Model):
    token: str
    details: Token


class Enrollment(_Model):
    """A new TOTP factor's secret and provisioning URI (shown once)."""

    secret: str
    provisioning_uri: str


class Verification(_Model):
    method: str
    verified_at: datetime
    fresh_until: datetime
    recovery_codes_left: int


class Client:
    """One server, one credential. Not thread-safe (one httpx.Client); make one per thread."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        self._http = httpx.Client(
            base_url=url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )
        self.last_revision: int | None = None

    @classmethod
    def from_environment(cls) -> Client:
        """The server and token named by ``PIMLICO_URL`` and ``PIMLICO_TOKEN``."""
        url = os.environ.get("PIMLICO_URL")
        if not url:
            raise ApiError(0, "NoServer", "set PIMLICO_URL to the Pimlico server's address")
        return cls(url, os.environ.get("PIMLICO_TOKEN"))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- who ----------------------------------------------------------------------------

    def sign_in(self, user_name: str, password: str, code: str | None = None) -> IssuedToken:
        """Sign in (``code``: the MFA code, for an account with MFA); later calls carry the
        new session token."""
        body = {"user_name": user_name, "password": password}
        if code is not None:
            body["code"] = code
        issued = self._call(IssuedToken, "POST", "/api/v1/auth/sign-in", json=body)
        self._http.headers["Authorization"] = f"Bearer {issued.token}"
        return issued

    def sign_out(self) -> None:
        self._send("POST", "/api/v1/auth/sign-out")
        self._http.headers.pop("Authorization", None)

    def me(self) -> Me:
        return self._call(Me, "GET", "/api/v1/me")

    def issue_token(
        self, name: str, *, scopes: list[str] | None = None, lifetime: timedelta | None = None
    ) -> IssuedToken:
        body: dict[str, Any] = {"name": name}
        if scopes is not None:
            body["scopes"] = scopes
        if lifetime is not None:
            body["lifetime"] = _iso_duration(lifetime)
        return self._call(IssuedToken, "POST", "/api/v1/tokens", json=body)

    # -- MFA ----------------------------------------------------------------------------

    def mfa_enroll(self) -> Enrollment:
        return self._call(Enrollment, "POST", "/api/v1/me/mfa")

    def mfa_confirm(self, code: str) -> list[str]:
        """Confirm the enrolment with a first code; the recovery codes (shown once)."""
        codes: list[str] = self._send("POST", "/api/v1/me/mfa/confirm", json={"code": code}).json()[
            "recovery_codes"
        ]
        return codes

    def mfa_verify(self, code: str) -> Verification:
        """Step up: a fresh verification that requests requiring MFA accept."""
        return self._call(Verification, "POST", "/api/v1/me/mfa/verify", json={"code": code})

    # -- decisions ----------------------------------------------------------------------

    def check(
        self,
        principal_id: str,
        permission: str,
        scope: str = "/",
        *,
        at_least_revision: int | None = None,
        explain: bool = False,
    ) -> Decision:
        """May ``principal_id`` use ``permission`` at ``scope`` now? By default the answer
        reflects this client's last write (``last_revision``)."""
        revision = self.last_revision if at_least_revision is None else at_least_revision
        body: dict[str, Any] = {
            "principal_id": principal_id,
            "permission": permission,
            "scope": scope,
        }
        if revision is not None:
            body["at_least_revision"] = revision
        path = "/api/v1/decisions/explain" if explain else "/api/v1/decisions/check"
        return self._call(Decision, "POST", path, json=body)

    # -- requests -----------------------------------------------------------------------

    def activate(
        self,
        target: Target,
        *,
        duration: timedelta | None = None,
        justification: str | None = None,
        ticket: tuple[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> Request:
        """Ask to activate an eligible role or group membership for oneself."""
        return self.request(
            "self_activate",
            target,
            duration=duration,
            justification=justification,
            ticket=ticket,
            idempotency_key=idempotency_key,
        )

    def deactivate(self, target: Target, *, justification: str | None = None) -> Request:
        return self.request("self_deactivate", target, justification=justification)

    def request(
        self,
        action: str,
        target: Target,
        *,
        duration: timedelta | None = None,
        justification: str | None = None,
        ticket: tuple[str, str] | None = None,
        idempotency_key: str | None = None,
        dry_run: bool = False,
    ) -> Request:
        body: dict[str, Any] = {
            "action": action,
            "target": target.model_dump(),
            "dry_run": dry_run,
        }
        if duration is not None:
            body["schedule"] = {
                "expiration": {"type": "after_duration", "duration": _iso_duration(duration)}
            }
        if justification is not None:
            body["justification"] = justification
        if ticket is not None:
            body["ticket"] = {"system": ticket[0], "number": ticket[1]}
        headers = {} if idempotency_key is None else {"Idempotency-Key": idempotency_key}
        return self._call(Request, "POST", "/api/v1/requests", json=body, headers=headers)

    def my_requests(self) -> Iterator[Request]:
        return self._pages(Request, "/api/v1/requests", {"mine": "true"})

    def inbox(self) -> Iterator[Request]:
        """Requests the caller may decide now."""
        return self._pages(Request, "/api/v1/approvals", {})

    def approve(self, request_id: str, justification: str | None = None) -> Request:
        return self._call(
            Request,
            "POST",
            f"/api/v1/approvals/{request_id}/approve",
            json={"justification": justification},
        )

    def deny(self, request_id: str, justification: str | None = None) -> Request:
        return self._call(
            Request,
            "POST",
            f"/api/v1/approvals/{request_id}/deny",
            json={"justification": justification},
        )

    def cancel(self, request_id: str, reason: str | None = None) -> Request:
        return self._call(
            Request, "POST", f"/api/v1/requests/{request_id}/cancel", json={"reason": reason}
        )

    def my_assignments(self, kind: str = "active") -> Iterator[Assignment]:
        """The caller's own ``active`` or ``eligible`` assignments in force now."""
        return self._pages(Assignment, f"/api/v1/assignments/{kind}/instances", {"mine": "true"})

    # -- plumbing -----------------------------------------------------------------------

    def _pages(self, model: type[M], path: str, params: dict[str, str]) -> Iterator[M]:
        cursor: str | None = None
        while True:
            query = dict(params) if cursor is None else {**params, "cursor": cursor}
            page = self._send("GET", path, params=query).json()
            for item in page["items"]:
                yield model.model_validate(item)
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def _call(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        return model.model_validate(self._send(method, path, **kwargs).json())

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        revision = response.headers.get(REVISION_HEADER)
        if revision is not None and response.is_success:
            self.last_revision = max(self.last_revision or 0, int(revision))
        if response.is_success:
            return response
        try:
            problem = response.json()
        except ValueError:
            raise ApiError(response.status_code, "HttpError", response.text[:200]) from None
        raise ApiError(
            response.status_code,
            str(problem.get("code", "HttpError")),
            str(problem.get("detail", "")),
            [FieldProblem.model_validate(e) for e in problem.get("errors", [])],
            list(problem.get("rules", [])),
        )


def _iso_duration(value: timedelta) -> str:
    return format_duration(value)
