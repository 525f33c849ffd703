"""A typed Python client of Pimlico's HTTP API (httpx): what scripts, the CLI's user commands
and protected applications use to talk to a Pimlico server.

``Client(url, token)`` (or ``Client.from_environment()``: ``PIMLICO_URL``,
``PIMLICO_TOKEN``). Every operation of the API (but health, readiness and metrics) has a
method. Every call returns typed models (pydantic, tolerant of fields a newer server adds),
iterators that walk every page of a cursor-paged list, or raises ``ApiError`` carrying the
problem's stable ``code``, its ``status``, its ``detail`` and, for bad input or broken
rules, the fields and rule codes. Writes record the store revision they made
(``last_revision``); ``check``, ``check_batch`` and ``access`` pass it on by default, so a
script reads its own writes even when the next call lands on another server. Role settings
are changed under optimistic concurrency: the ``etag`` read with them goes back in
``If-Match``, and a stale one is refused (412 ``PreconditionFailed``).

It must not import the server (``pimlico.api``, services, the store): it is the wire (the
pure domain's duration format is shared).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, NoReturn, TypeVar

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


# -- models: who, decisions ---------------------------------------------------------------


class Me(_Model):
    principal_id: str
    name: str
    scopes: list[str] | None = None


class Question(_Model):
    """One question of ``check_batch``: may ``principal_id`` use ``permission`` at ``scope``
    (at ``at``; default now)?"""

    principal_id: str
    permission: str
    scope: str = "/"
    at: datetime | None = None


class Step(_Model):
    """One link of a chain of groups: ``member_id`` is in ``group_id`` via a static
    ``membership`` or a PIM ``assignment`` (``via_id``)."""

    member_id: str
    group_id: str
    via: str
    via_id: str
    start: datetime | None = None
    end: datetime | None = None


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


class HeldGroup(_Model):
    group_id: str
    relation: str
    end: datetime | None = None
    chain: list[Step] = Field(default_factory=list)


class HeldAssignment(_Model):
    assignment_id: str
    kind: str
    target_type: str
    target_id: str
    scope: str
    holder_id: str
    start: datetime | None = None
    end: datetime | None = None
    chain: list[Step] = Field(default_factory=list)


class Access(_Model):
    """Everything a principal holds at ``at``: roles (with their chains), groups, what they
    may activate, and the ``(pattern, scope)`` pairs of permissions held."""

    principal_id: str
    at: datetime
    roles: list[Grant]
    groups: list[HeldGroup]
    eligible: list[HeldAssignment]
    permissions: list[tuple[str, str]]


# -- models: requests, assignments --------------------------------------------------------


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


class Ticket(_Model):
    system: str
    number: str


class ApprovalDecision(_Model):
    stage: int
    approver_id: str
    approved: bool
    at: datetime
    justification: str | None = None


class Approval(_Model):
    current_stage: int | None = None
    decisions: list[ApprovalDecision] = Field(default_factory=list)


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
    ticket: Ticket | None = None
    window: Window | None = None
    mfa_verified_at: datetime | None = None
    assignment_id: str | None = None
    approval: Approval | None = None
    dry_run: bool = False


class Assignment(_Model):
    id: str
    kind: str
    principal: Principal
    target: Target
    start: datetime
    end: datetime | None = None
    created_at: datetime | None = None
    created_by: str | None = None
    justification: str | None = None
    activated_from: str | None = None
    request_id: str | None = None
    in_force: bool = True


# -- models: tokens, MFA ------------------------------------------------------------------


class Token(_Model):
    id: str
    kind: str
    name: str
    scopes: list[str]
    expires_at: datetime
    principal_type: str
    principal_id: str
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class IssuedToken(_Model):
    token: str
    details: Token


class Factor(_Model):
    """A user's MFA factor, never its secret."""

    id: str
    user_id: str
    method: str
    created_at: datetime
    confirmed_at: datetime | None = None
    removed_at: datetime | None = None


class Enrollment(_Model):
    """A new TOTP factor's secret and provisioning URI (shown once)."""

    secret: str
    provisioning_uri: str


class Verification(_Model):
    method: str
    verified_at: datetime
    fresh_until: datetime
    recovery_codes_left: int


# -- models: directory, roles -------------------------------------------------------------


class User(_Model):
    id: str
    user_name: str
    display_name: str
    email: str | None = None
    enabled: bool
    manager_id: str | None = None
    created_at: datetime | None = None


class ServiceAccount(_Model):
    id: str
    name: str
    display_name: str
    description: str = ""
    enabled: bool
    created_at: datetime | None = None


class Group(_Model):
    id: str
    name: str
    display_name: str
    description: str = ""
    role_assignable: bool
    pim_enabled: bool
    created_at: datetime | None = None


class Membership(_Model):
    """A static membership or ownership (``relation``); ``ended_at`` once it was removed."""

    id: str
    group_id: str
    member: Principal
    relation: str
    created_at: datetime
    created_by: str | None = None
    ended_at: datetime | None = None
    ended_by: str | None = None
    end_reason: str | None = None


class Role(_Model):
    id: str
    name: str
    description: str = ""
    permissions: list[str]
    built_in: bool
    created_at: datetime | None = None


class ScopeUse(_Model):
    scope: str
    assignments: int


class RoleSettings(_Model):
    """A target's settings document (as the API gives it; version 0: the defaults) and the
    ``etag`` to send back to change it."""

    target_type: str
    object_id: str
    version: int
    settings: dict[str, Any]
    etag: str


# -- models: audit, connectors ------------------------------------------------------------


class AuditEvent(_Model):
    sequence: int
    revision: int
    occurred_at: datetime
    actor: str | None = None
    action: str
    target_type: str
    target_id: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    reason: str | None = None
    request_id: str | None = None
    prev_hash: str
    hash: str


class BrokenLink(_Model):
    sequence: int
    reason: str
    details: dict[str, str] = Field(default_factory=dict)


class AuditVerification(_Model):
    intact: bool
    events: int
    broken: BrokenLink | None = None


class Connector(_Model):
    """A downstream system; its secret is never shown (``has_secret``)."""

    id: str
    name: str
    kind: str
    config: dict[str, Any]
    mode: str
    enabled: bool
    has_secret: bool
    created_at: datetime
    updated_at: datetime


class Mapping(_Model):
    id: str
    connector: str
    target: Target
    downstream_object: str
    created_at: datetime
    ended_at: datetime | None = None


class Provisioning(_Model):
    """How far one principal's access got in one connector's object."""

    connector: str
    mapping_id: str
    downstream_object: str
    principal_id: str
    present: bool
    status: str
    attempts: int
    identity: str | None = None
    last_error: str | None = None
    updated_at: datetime


class Correction(_Model):
    connector: str
    mapping_id: str
    downstream_object: str
    action: str
    identity: str | None = None
    principal_id: str | None = None
    applied: bool
    detail: str | None = None


class Reconciliation(_Model):
    dry_run: bool
    corrections: list[Correction]


class Client:
    """One server, one credential. Not thread-safe (one httpx.Client); make one per thread.
    ``page_size``: items per page of the lists (default: the server's)."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        page_size: int | None = None,
    ) -> None:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        self._http = httpx.Client(
            base_url=url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )
        self.page_size = page_size
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

    def change_password(self, password: str, current_password: str | None = None) -> None:
        """Change one's own password; one's sign-in sessions end (this one too)."""
        body = {"password": password, "current_password": current_password}
        self._send("PUT", "/api/v1/me/password", json=body)

    # -- tokens -------------------------------------------------------------------------

    def issue_token(
        self,
        name: str,
        *,
        scopes: list[str] | None = None,
        lifetime: timedelta | None = None,
        service_account_id: str | None = None,
    ) -> IssuedToken:
        body: dict[str, Any] = {"name": name}
        if scopes is not None:
            body["scopes"] = scopes
        if lifetime is not None:
            body["lifetime"] = _iso_duration(lifetime)
        if service_account_id is not None:
            body["service_account_id"] = service_account_id
        return self._call(IssuedToken, "POST", "/api/v1/tokens", json=body)

    def tokens(
        self, *, principal_id: str | None = None, kind: str | None = None, usable: bool = False
    ) -> Iterator[Token]:
        """Tokens (the caller's by default), newest first; ``kind``: ``session``,
        ``personal`` or ``service``; ``usable``: only those neither revoked nor expired."""
        query = _query(principal_id=principal_id, kind=kind, usable=usable or None)
        return self._pages(Token, "/api/v1/tokens", query)

    def revoke_token(self, token_id: str) -> Token:
        return self._call(Token, "DELETE", f"/api/v1/tokens/{token_id}")

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

    def mfa_remove(self, reason: str | None = None) -> Factor:
        """Remove one's own factor (a confirmed one needs a fresh verification first)."""
        return self._call(Factor, "DELETE", "/api/v1/me/mfa", params=_query(reason=reason))

    def remove_user_mfa(self, user_id: str, reason: str | None = None) -> Factor:
        """Remove another user's factor (e.g. they lost it), so that they enrol again."""
        path = f"/api/v1/users/{user_id}/mfa"
        return self._call(Factor, "DELETE", path, params=_query(reason=reason))

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
        body: dict[str, Any] = {
            "principal_id": principal_id,
            "permission": permission,
            "scope": scope,
        }
        revision = self._revision(at_least_revision)
        if revision is not None:
            body["at_least_revision"] = revision
        path = "/api/v1/decisions/explain" if explain else "/api/v1/decisions/check"
        return self._call(Decision, "POST", path, json=body)

    def check_batch(
        self, questions: Sequence[Question], *, at_least_revision: int | None = None
    ) -> list[Decision]:
        """Many questions in one call, answered in order."""
        body: dict[str, Any] = {
            "questions": [q.model_dump(mode="json", exclude_none=True) for q in questions]
        }
        revision = self._revision(at_least_revision)
        if revision is not None:
            body["at_least_revision"] = revision
        answer = self._send("POST", "/api/v1/decisions/check-batch", json=body).json()
        return [Decision.model_validate(d) for d in answer["results"]]

    def access(
        self, principal_id: str, *, at: datetime | None = None, at_least_revision: int | None = None
    ) -> Access:
        """Everything ``principal_id`` holds now (or at ``at``), with the chains."""
        query = _query(at=at, at_least_revision=self._revision(at_least_revision))
        return self._call(Access, "GET", f"/api/v1/principals/{principal_id}/access", params=query)

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

    def assign(
        self,
        kind: str,
        principal: Principal,
        target: Target,
        *,
        start: datetime | None = None,
        duration: timedelta | None = None,
        end: datetime | None = None,
        permanent: bool = False,
        justification: str | None = None,
    ) -> Request:
        """An administrator makes ``principal`` ``eligible`` for, or ``active`` in, ``target``
        (``admin_assign``), for a ``duration``, until ``end``, or for good (``permanent``,
        where the target's settings allow it)."""
        return self.request(
            "admin_assign",
            target,
            kind=kind,
            principal=principal,
            start=start,
            duration=duration,
            end=end,
            permanent=permanent,
            justification=justification,
        )

    def remove_assignment(self, assignment_id: str, justification: str | None = None) -> Request:
        """An administrator ends an assignment now (``admin_remove``)."""
        return self.request(
            "admin_remove", None, assignment_id=assignment_id, justification=justification
        )

    def request(
        self,
        action: str,
        target: Target | None,
        *,
        kind: str | None = None,
        principal: Principal | None = None,
        assignment_id: str | None = None,
        start: datetime | None = None,
        duration: timedelta | None = None,
        end: datetime | None = None,
        permanent: bool = False,
        justification: str | None = None,
        ticket: tuple[str, str] | None = None,
        idempotency_key: str | None = None,
        dry_run: bool = False,
    ) -> Request:
        """Any request (``action``): the schedule starts at ``start`` (default now) and ends
        after ``duration``, at ``end``, never (``permanent``) or as the policy allows."""
        body: dict[str, Any] = {"action": action, "dry_run": dry_run}
        if target is not None:
            body["target"] = target.model_dump()
        if kind is not None:
            body["kind"] = kind
        if principal is not None:
            body["principal"] = principal.model_dump()
        if assignment_id is not None:
            body["assignment_id"] = assignment_id
        expiration: dict[str, str] | None = None
        if permanent:
            expiration = {"type": "no_expiration"}
        elif end is not None:
            expiration = {"type": "after_datetime", "end": end.isoformat()}
        elif duration is not None:
            expiration = {"type": "after_duration", "duration": _iso_duration(duration)}
        if start is not None or expiration is not None:
            body["schedule"] = {} if expiration is None else {"expiration": expiration}
            if start is not None:
                body["schedule"]["start"] = start.isoformat()
        if justification is not None:
            body["justification"] = justification
        if ticket is not None:
            body["ticket"] = {"system": ticket[0], "number": ticket[1]}
        headers = {} if idempotency_key is None else {"Idempotency-Key": idempotency_key}
        return self._call(Request, "POST", "/api/v1/requests", json=body, headers=headers)

    def requests(
        self,
        *,
        mine: bool = False,
        status: str | None = None,
        action: str | None = None,
        target_type: str | None = None,
        target_id: str | None = None,
        principal_type: str | None = None,
        principal_id: str | None = None,
        requested_by: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[Request]:
        """Requests matching every filter given, newest first (all of them need
        ``pim.requests.read``; ``mine`` the caller's own)."""
        query = _query(
            mine=mine or None,
            status=status,
            action=action,
            target_type=target_type,
            target_id=target_id,
            principal_type=principal_type,
            principal_id=principal_id,
            requested_by=requested_by,
            since=since,
            until=until,
        )
        return self._pages(Request, "/api/v1/requests", query)

    def my_requests(self) -> Iterator[Request]:
        return self.requests(mine=True)

    def get_request(self, request_id: str) -> Request:
        return self._call(Request, "GET", f"/api/v1/requests/{request_id}")

    def cancel(self, request_id: str, reason: str | None = None) -> Request:
        return self._call(
            Request, "POST", f"/api/v1/requests/{request_id}/cancel", json={"reason": reason}
        )

    # -- approvals ----------------------------------------------------------------------

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

    # -- assignments --------------------------------------------------------------------

    def assignments(
        self,
        kind: str = "active",
        *,
        schedules: bool = False,
        mine: bool = False,
        principal_type: str | None = None,
        principal_id: str | None = None,
        target_type: str | None = None,
        target_id: str | None = None,
    ) -> Iterator[Assignment]:
        """``active`` or ``eligible`` assignments in force now (``schedules``: and those
        starting later), newest first; ``mine``, or another's (``pim.assignments.read``)."""
        path = f"/api/v1/assignments/{kind}/{'schedules' if schedules else 'instances'}"
        query = _query(
            mine=mine or None,
            principal_type=principal_type,
            principal_id=principal_id,
            target_type=target_type,
            target_id=target_id,
        )
        return self._pages(Assignment, path, query)

    def my_assignments(self, kind: str = "active") -> Iterator[Assignment]:
        """The caller's own ``active`` or ``eligible`` assignments in force now."""
        return self.assignments(kind, mine=True)

    def assignment_provisioning(self, assignment_id: str) -> list[Provisioning]:
        """Its state in each connector mapping its target."""
        path = f"/api/v1/assignments/{assignment_id}/provisioning"
        return [Provisioning.model_validate(p) for p in self._send("GET", path).json()]

    # -- directory ----------------------------------------------------------------------

    def users(self, *, q: str | None = None, enabled: bool | None = None) -> Iterator[User]:
        """Users by user name; ``q``: names starting with it."""
        return self._pages(User, "/api/v1/users", _query(q=q, enabled=enabled))

    def get_user(self, user_id: str) -> User:
        return self._call(User, "GET", f"/api/v1/users/{user_id}")

    def create_user(
        self,
        user_name: str,
        *,
        display_name: str | None = None,
        email: str | None = None,
        manager_id: str | None = None,
    ) -> User:
        body = dict(
            user_name=user_name, display_name=display_name, email=email, manager_id=manager_id
        )
        return self._call(User, "POST", "/api/v1/users", json=body)

    def update_user(
        self,
        user_id: str,
        *,
        display_name: str | None = None,
        email: str | None = None,
        manager_id: str | None = None,
    ) -> User:
        """Change what is given (``None``: unchanged; an empty email clears it)."""
        body = {"display_name": display_name, "email": email, "manager_id": manager_id}
        return self._call(User, "PATCH", f"/api/v1/users/{user_id}", json=body)

    def set_user_enabled(self, user_id: str, enabled: bool, reason: str | None = None) -> User:
        """Disable a user (they hold nothing while disabled) or enable them again."""
        body = {"enabled": enabled, "reason": reason}
        return self._call(User, "PUT", f"/api/v1/users/{user_id}/enabled", json=body)

    def service_accounts(
        self, *, q: str | None = None, enabled: bool | None = None
    ) -> Iterator[ServiceAccount]:
        query = _query(q=q, enabled=enabled)
        return self._pages(ServiceAccount, "/api/v1/service-accounts", query)

    def get_service_account(self, account_id: str) -> ServiceAccount:
        return self._call(ServiceAccount, "GET", f"/api/v1/service-accounts/{account_id}")

    def create_service_account(
        self, name: str, *, display_name: str | None = None, description: str = ""
    ) -> ServiceAccount:
        body = {"name": name, "display_name": display_name, "description": description}
        return self._call(ServiceAccount, "POST", "/api/v1/service-accounts", json=body)

    def set_service_account_enabled(
        self, account_id: str, enabled: bool, reason: str | None = None
    ) -> ServiceAccount:
        path = f"/api/v1/service-accounts/{account_id}/enabled"
        return self._call(ServiceAccount, "PUT", path, json={"enabled": enabled, "reason": reason})

    def groups(
        self,
        *,
        q: str | None = None,
        role_assignable: bool | None = None,
        pim_enabled: bool | None = None,
    ) -> Iterator[Group]:
        query = _query(q=q, role_assignable=role_assignable, pim_enabled=pim_enabled)
        return self._pages(Group, "/api/v1/groups", query)

    def get_group(self, group_id: str) -> Group:
        return self._call(Group, "GET", f"/api/v1/groups/{group_id}")

    def create_group(
        self,
        name: str,
        *,
        display_name: str | None = None,
        description: str = "",
        role_assignable: bool = False,
        pim_enabled: bool = False,
    ) -> Group:
        """``role_assignable`` is chosen now, for good."""
        body = dict(
            name=name,
            display_name=display_name,
            description=description,
            role_assignable=role_assignable,
            pim_enabled=pim_enabled,
        )
        return self._call(Group, "POST", "/api/v1/groups", json=body)

    def update_group(
        self,
        group_id: str,
        *,
        display_name: str | None = None,
        description: str | None = None,
        pim_enabled: bool | None = None,
    ) -> Group:
        body = dict(display_name=display_name, description=description, pim_enabled=pim_enabled)
        return self._call(Group, "PATCH", f"/api/v1/groups/{group_id}", json=body)

    def members(self, group_id: str, *, include_ended: bool = False) -> Iterator[Membership]:
        """A group's standing members (ended ones too with ``include_ended``)."""
        return self._memberships(group_id, "members", include_ended)

    def add_member(self, group_id: str, member: Principal, reason: str | None = None) -> Membership:
        return self._add_membership(group_id, "members", member, reason)

    def remove_member(
        self, group_id: str, member: Principal, reason: str | None = None
    ) -> Membership:
        """End a standing membership (its record stays, ended)."""
        return self._end_membership(group_id, "members", member, reason)

    def owners(self, group_id: str, *, include_ended: bool = False) -> Iterator[Membership]:
        return self._memberships(group_id, "owners", include_ended)

    def add_owner(self, group_id: str, owner: Principal, reason: str | None = None) -> Membership:
        return self._add_membership(group_id, "owners", owner, reason)

    def remove_owner(
        self, group_id: str, owner: Principal, reason: str | None = None
    ) -> Membership:
        return self._end_membership(group_id, "owners", owner, reason)

    # -- roles and role settings --------------------------------------------------------

    def roles(self, *, q: str | None = None, built_in: bool | None = None) -> Iterator[Role]:
        return self._pages(Role, "/api/v1/roles", _query(q=q, built_in=built_in))

    def get_role(self, role_id: str) -> Role:
        return self._call(Role, "GET", f"/api/v1/roles/{role_id}")

    def create_role(self, name: str, permissions: list[str], *, description: str = "") -> Role:
        body = {"name": name, "permissions": permissions, "description": description}
        return self._call(Role, "POST", "/api/v1/roles", json=body)

    def update_role(
        self,
        role_id: str,
        *,
        description: str | None = None,
        permissions: list[str] | None = None,
    ) -> Role:
        """Change a custom role; ``permissions`` replaces the whole list."""
        body = {"description": description, "permissions": permissions}
        return self._call(Role, "PATCH", f"/api/v1/roles/{role_id}", json=body)

    def scopes(self) -> Iterator[ScopeUse]:
        """Scopes that role assignments use now or later (and ``/``)."""
        return self._pages(ScopeUse, "/api/v1/scopes", {})

    def role_settings(self, target_type: str, object_id: str) -> RoleSettings:
        """The settings of a role (``role``) or of a group's membership (``group_member``) or
        ownership (``group_owner``), with the ETag that changing them needs."""
        return self._settings("GET", target_type, object_id)

    def update_role_settings(
        self, target_type: str, object_id: str, changes: dict[str, Any], *, etag: str
    ) -> RoleSettings:
        """Merge a partial document (objects merge, lists replace) into the settings read
        with ``etag``; a stale one is refused (412 ``PreconditionFailed``)."""
        return self._settings("PATCH", target_type, object_id, changes, etag)

    def replace_role_settings(
        self, target_type: str, object_id: str, settings: dict[str, Any], *, etag: str
    ) -> RoleSettings:
        """Replace the settings read with ``etag`` by a whole document (as read)."""
        return self._settings("PUT", target_type, object_id, settings, etag)

    # -- audit --------------------------------------------------------------------------

    def audit_events(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target_type: str | None = None,
        target_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[AuditEvent]:
        """Audit events matching every filter given, oldest first."""
        query = _query(
            actor=actor,
            action=action,
            target_type=target_type,
            target_id=target_id,
            since=since,
            until=until,
        )
        return self._pages(AuditEvent, "/api/v1/audit/events", query)

    def audit_export(
        self,
        format: str = "jsonl",
        *,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> bytes:
        """The matching events, every field, as JSON lines (re-verifiable) or CSV."""
        return b"".join(self._export(format, actor, since, until))

    def audit_export_lines(
        self,
        *,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[str]:
        """The export as JSON lines, one event a line, streamed as the server sends it."""
        pending = b""
        for chunk in self._export("jsonl", actor, since, until):
            *lines, pending = (pending + chunk).split(b"\n")
            yield from (line.decode() for line in lines if line)
        if pending:
            yield pending.decode()

    def audit_verify(self) -> AuditVerification:
        """Verify the whole hash chain: where it first breaks, if it does."""
        return self._call(AuditVerification, "GET", "/api/v1/audit/verify")

    # -- connectors ---------------------------------------------------------------------

    def connectors(
        self, *, kind: str | None = None, enabled: bool | None = None
    ) -> Iterator[Connector]:
        return self._pages(Connector, "/api/v1/connectors", _query(kind=kind, enabled=enabled))

    def add_connector(
        self,
        name: str,
        kind: str,
        config: dict[str, Any],
        *,
        secret: str | None = None,
        mode: str = "authoritative",
        enabled: bool = True,
    ) -> Connector:
        """Add a connector (``secret``: stored encrypted, never shown again)."""
        body = dict(name=name, kind=kind, config=config, secret=secret, mode=mode, enabled=enabled)
        return self._call(Connector, "POST", "/api/v1/connectors", json=body)

    def change_connector(
        self,
        name: str,
        *,
        config: dict[str, Any] | None = None,
        secret: str | None = None,
        mode: str | None = None,
        enabled: bool | None = None,
        reason: str | None = None,
    ) -> Connector:
        """Change what is given (``config`` replaces the whole one); ``enabled=False``
        disables it (connectors are never deleted)."""
        body = dict(config=config, secret=secret, mode=mode, enabled=enabled, reason=reason)
        return self._call(Connector, "PATCH", f"/api/v1/connectors/{name}", json=body)

    def connector_mappings(
        self, *, connector: str | None = None, include_ended: bool = False
    ) -> Iterator[Mapping]:
        query = _query(connector=connector, include_ended=include_ended or None)
        return self._pages(Mapping, "/api/v1/connector-mappings", query)

    def add_mapping(self, connector: str, target: Target, downstream_object: str) -> Mapping:
        """Make ``target`` drive ``downstream_object``: whoever holds it is provisioned."""
        body = dict(
            connector=connector, target=target.model_dump(), downstream_object=downstream_object
        )
        return self._call(Mapping, "POST", "/api/v1/connector-mappings", json=body)

    def end_mapping(self, mapping_id: str, reason: str | None = None) -> Mapping:
        path = f"/api/v1/connector-mappings/{mapping_id}"
        return self._call(Mapping, "DELETE", path, params=_query(reason=reason))

    def provisioning(
        self, *, connector: str | None = None, status: str | None = None
    ) -> Iterator[Provisioning]:
        """Provisioning states (failed first, then pending, then the rest)."""
        query = _query(connector=connector, status=status)
        return self._pages(Provisioning, "/api/v1/provisioning", query)

    def reconcile(self, *, dry_run: bool = False, connector: str | None = None) -> Reconciliation:
        """Make every managed downstream object match what is in force (``dry_run``: say
        how, change nothing)."""
        query = _query(dry_run=dry_run or None, connector=connector)
        return self._call(Reconciliation, "POST", "/api/v1/reconcile", params=query)

    # -- plumbing -----------------------------------------------------------------------

    def _revision(self, given: int | None) -> int | None:
        return self.last_revision if given is None else given

    def _memberships(self, group_id: str, noun: str, include_ended: bool) -> Iterator[Membership]:
        query = _query(include_ended=include_ended or None)
        return self._pages(Membership, f"/api/v1/groups/{group_id}/{noun}", query)

    def _add_membership(
        self, group_id: str, noun: str, who: Principal, reason: str | None
    ) -> Membership:
        body = {"member_type": who.type, "member_id": who.id, "reason": reason}
        return self._call(Membership, "POST", f"/api/v1/groups/{group_id}/{noun}", json=body)

    def _end_membership(
        self, group_id: str, noun: str, who: Principal, reason: str | None
    ) -> Membership:
        path = f"/api/v1/groups/{group_id}/{noun}/{who.type}/{who.id}"
        return self._call(Membership, "DELETE", path, params=_query(reason=reason))

    def _settings(
        self,
        method: str,
        target_type: str,
        object_id: str,
        body: dict[str, Any] | None = None,
        etag: str | None = None,
    ) -> RoleSettings:
        headers = {} if etag is None else {"If-Match": etag}
        path = f"/api/v1/role-settings/{target_type}/{object_id}"
        response = self._send(method, path, json=body, headers=headers)
        return RoleSettings.model_validate({**response.json(), "etag": response.headers["ETag"]})

    def _export(
        self, format: str, actor: str | None, since: datetime | None, until: datetime | None
    ) -> Iterator[bytes]:
        query = _query(format=format, actor=actor, since=since, until=until)
        with self._http.stream("GET", "/api/v1/audit/export", params=query) as response:
            if not response.is_success:
                response.read()
                _raise_problem(response)
            yield from response.iter_bytes()

    def _pages(self, model: type[M], path: str, params: dict[str, str]) -> Iterator[M]:
        cursor: str | None = None
        if self.page_size is not None:
            params = {**params, "limit": str(self.page_size)}
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
        _raise_problem(response)


def _raise_problem(response: httpx.Response) -> NoReturn:
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


def _query(**values: str | bool | int | datetime | None) -> dict[str, str]:
    """Query parameters as the API reads them: ``None`` left out, booleans ``true`` /
    ``false``, instants RFC 3339."""
    query: dict[str, str] = {}
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            query[name] = "true" if value else "false"
        elif isinstance(value, datetime):
            query[name] = value.isoformat()
        else:
            query[name] = str(value)
    return query


def _iso_duration(value: timedelta) -> str:
    return format_duration(value)
