"""Who is signed in to the portal, and the CSRF token of every form.

A portal session *is* a Pimlico session token (``services.accounts``): signing in issues one,
the browser keeps it in an ``HttpOnly`` cookie, every page authenticates it as the API
authenticates a bearer token, and signing out revokes it — so a session is server-side,
expires with ``session_lifetime`` and can be revoked by an administrator like any token.
The cookie is ``SameSite=Lax``, ``HttpOnly``, and ``Secure`` with the ``__Host-`` prefix
when the portal is served over HTTPS.

CSRF: every form carries ``csrf_token``, an HMAC keyed by the session cookie's value (which
scripts on other sites cannot read). Before sign-in the key is a random pre-session cookie.
The portal's route class (``views``) refuses any unsafe request whose token does not match,
before the view runs.

Between the password and the MFA code of a sign-in, a short-lived cookie holds, sealed
(Fernet, a key derived from the store's), whose password was right; the session is made only
once the code is verified (``accounts.finish_sign_in``), so a password alone never yields a
session — in the portal or through the API.

This module must not render pages; it only reads and writes cookies and tokens.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cryptography.fernet import Fernet, InvalidToken
from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool

from pimlico.api.deps import runtime_of
from pimlico.domain.catalogue import Perm
from pimlico.domain.model import User
from pimlico.errors import NotAuthenticated
from pimlico.services import accounts, directory_reads
from pimlico.services.runtime import Actor, Pimlico

CSRF_FIELD = "csrf_token"
SESSION = "pimlico_session"
PRESESSION = "pimlico_pre"
PENDING = "pimlico_pending"
TIME_ZONE = "pimlico_tz"
FLASH = "pimlico_flash"
PENDING_SECONDS = 300
"""How long the second step of a sign-in (the MFA code) may take."""
_CSRF_CONTEXT = b"pimlico portal csrf v1"
_PENDING_CONTEXT = b"pimlico portal pending sign-in v1"
UTC = ZoneInfo("UTC")
ADMIN_READS = (
    Perm.USERS_READ,
    Perm.GROUPS_READ,
    Perm.ROLES_READ,
    Perm.POLICIES_READ,
    Perm.ASSIGNMENTS_READ,
    Perm.AUDIT_READ,
)


def secure(request: Request) -> bool:
    """Is the portal served over HTTPS: directly, behind a proxy uvicorn trusts, or at a
    ``PIMLICO_PUBLIC_URL`` that says so (a proxy terminating TLS in front of plain HTTP)?"""
    public_url = runtime_of(request).settings.notify.public_url
    return request.url.scheme == "https" or public_url.startswith("https://")


def cookie_name(request: Request, base: str) -> str:
    # ``__Host-`` makes the browser refuse the cookie unless it is Secure, host-only and for
    # path ``/``: a sibling subdomain cannot plant or overwrite it.
    return f"__Host-{base}" if secure(request) else base


def read_cookie(request: Request, base: str) -> str | None:
    return request.cookies.get(cookie_name(request, base))


def set_cookie(
    request: Request, response: Response, base: str, value: str, *, max_age: int | None = None
) -> None:
    response.set_cookie(
        cookie_name(request, base),
        value,
        max_age=max_age,
        path="/",
        secure=secure(request),
        httponly=True,
        samesite="lax",
    )


def drop_cookie(request: Request, response: Response, base: str) -> None:
    response.delete_cookie(
        cookie_name(request, base), path="/", secure=secure(request), httponly=True
    )


def csrf_token_for(key: str) -> str:
    return hmac.new(key.encode(), _CSRF_CONTEXT, hashlib.sha256).hexdigest()


def presession_key(request: Request, response: Response | None = None) -> str:
    """The random key of the anonymous forms' CSRF tokens (set on ``response`` if new)."""
    key = read_cookie(request, PRESESSION)
    if key is None:
        key = secrets.token_urlsafe(32)
        request.state.new_presession = key
    if response is not None and getattr(request.state, "new_presession", None) == key:
        set_cookie(request, response, PRESESSION, key)
    return key


def csrf_is_valid(request: Request, submitted: str | None, *, anonymous: bool) -> bool:
    """Does ``submitted`` match this browser's token: its session's, or for the forms of
    signing in (``anonymous``) its pre-session's? A pre-session token never stands in for
    a session's: a cookie planted by a sibling site could make one known."""
    key = read_cookie(request, PRESESSION if anonymous else SESSION)
    return (
        bool(submitted)
        and bool(key)
        and hmac.compare_digest(csrf_token_for(key or ""), submitted or "")
    )


def viewer_zone(request: Request) -> ZoneInfo:
    """The viewer's time zone, as the browser told it (``portal.js``); UTC until then."""
    name = request.cookies.get(TIME_ZONE, "")
    if not name or len(name) > 64 or not all(c.isalnum() or c in "/_-+" for c in name):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


@dataclass(frozen=True)
class Viewer:
    """The signed-in person looking at a page."""

    actor: Actor
    user: User
    token_id: str
    csrf_token: str
    zone: ZoneInfo
    _rt: Pimlico = field(repr=False)

    @property
    def user_id(self) -> str:
        assert self.actor.principal_id is not None
        return self.actor.principal_id

    def holds(self, permission: str, scope: str = "/") -> bool:
        """Does the viewer hold ``permission`` now (to show what they may use; every use
        case still decides for itself)?"""
        return (
            self._rt.decisions.current()
            .decide(self.user_id, permission, scope, self._rt.clock.now())
            .allowed
        )

    @property
    def administers(self) -> bool:
        """Does the viewer hold, now, any right the administration pages need?"""
        return any(self.holds(p) for p in ADMIN_READS)


class SignInRequired(Exception):
    """No valid session: the view's answer is the sign-in page."""


async def viewer_of(request: Request) -> Viewer:
    """The signed-in viewer, or ``SignInRequired``."""
    rt = runtime_of(request)
    bearer = read_cookie(request, SESSION)
    if not bearer:
        raise SignInRequired
    try:
        found = accounts.authenticate_from_memory(rt, bearer)
        if found is None:
            found = await run_in_threadpool(accounts.authenticate, rt, bearer)
    except NotAuthenticated:
        raise SignInRequired from None
    actor, token_id = found
    if actor.principal_id is None or actor.principal_type.value != "user":
        raise SignInRequired
    user = await run_in_threadpool(
        directory_reads.get_user, rt, actor=actor, user_id=actor.principal_id
    )
    return Viewer(actor, user, token_id, csrf_token_for(bearer), viewer_zone(request), rt)


def start_session(request: Request, response: Response, bearer: str) -> None:
    set_cookie(request, response, SESSION, bearer)
    drop_cookie(request, response, PENDING)
    drop_cookie(request, response, PRESESSION)


def end_session(request: Request, response: Response) -> None:
    drop_cookie(request, response, SESSION)
    drop_cookie(request, response, PENDING)


def _pending_fernet(rt: Pimlico) -> Fernet:
    # A key of its own, derived from the store's: a cookie never shares a key with secrets
    # at rest.
    derived = hmac.new(rt.settings.encryption_key(), _PENDING_CONTEXT, hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(derived))


def hold_pending(request: Request, response: Response, user_id: str) -> None:
    """Remember, sealed, whose password was right until the sign-in's MFA step succeeds."""
    rt = runtime_of(request)
    sealed = _pending_fernet(rt).encrypt_at_time(user_id.encode(), int(rt.clock.now().timestamp()))
    set_cookie(request, response, PENDING, sealed.decode(), max_age=PENDING_SECONDS)


def pending_user(request: Request) -> str | None:
    """Whose sign-in waits for its MFA code, if it is still in time."""
    sealed = read_cookie(request, PENDING)
    if not sealed:
        return None
    rt = runtime_of(request)
    try:
        return (
            _pending_fernet(rt)
            .decrypt_at_time(sealed.encode(), PENDING_SECONDS, int(rt.clock.now().timestamp()))
            .decode()
        )
    except InvalidToken:
        return None


def flash(request: Request, response: Response, message: str) -> None:
    """A confirmation for the next page this browser shows (plain text, escaped there)."""
    encoded = base64.urlsafe_b64encode(message[:300].encode()).decode()
    set_cookie(request, response, FLASH, encoded, max_age=60)


def take_flash(request: Request, response: Response) -> str | None:
    """The confirmation waiting for this page, if any (shown once)."""
    encoded = read_cookie(request, FLASH)
    if not encoded:
        return None
    drop_cookie(request, response, FLASH)
    try:
        return base64.urlsafe_b64decode(encoded.encode()).decode()
    except (binascii.Error, ValueError):
        return None


def safe_next(target: str | None) -> str:
    """Where to go after sign-in: a portal path only, never another site."""
    if (
        target
        and target.startswith("/portal/")
        and not target.startswith("//")
        and "\\" not in target
        and not any(ord(c) < 32 for c in target)
    ):
        return target
    return "/portal/"
