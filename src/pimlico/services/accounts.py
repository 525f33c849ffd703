"""Local accounts and bearer tokens: who a caller of the API is.

Owns passwords (argon2 hashes, never the password), sign-in (constant-time whether or not
the account exists, failures counted per account and locked for a window past the limit),
and tokens: sign-in sessions and the personal and service-account tokens scripts use. A
token is ``pim_<id>_<secret>``; only the SHA-256 of the secret is stored (it is 32 random
bytes, so a slow hash would add nothing), and ``authenticate`` compares in constant time.
Every token expires; revoked ones stay, as the record of what existed. A token's scopes
(``pim.*`` patterns) narrow what its holder may do with it (``Actor.scopes``).

``authenticate`` runs on every API call, so a process keeps what it read of a token for
``token_cache_seconds``: a token revoked through another process stops working at most that
late (through this one: at once). It must not decide what the caller may do: services do,
through ``authorize``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import and_, bindparam, func, select, update
from sqlalchemy.orm import Session

from pimlico.db.audit import WriteContext
from pimlico.db.tables import (
    ApiTokenRow,
    Base,
    CredentialRow,
    MfaFactorRow,
    ServiceAccountRow,
    UserRow,
)
from pimlico.domain.catalogue import GLOBAL_ADMINISTRATOR, Perm
from pimlico.domain.mfa import Attempts
from pimlico.domain.model import (
    AssignmentKind,
    PrincipalRef,
    PrincipalType,
    Target,
    TargetType,
    new_id,
)
from pimlico.domain.permissions import pattern_problem
from pimlico.domain.requests import RequestAction
from pimlico.errors import (
    Conflict,
    FieldError,
    InvalidInput,
    MfaCodeRequired,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
    TooManyAttempts,
)
from pimlico.services import assignment_changes, directory, mfa, role_settings
from pimlico.services.decisions import authorize
from pimlico.services.group_commit import GroupCommit
from pimlico.services.guards import global_administrators
from pimlico.services.lookups import (
    check_email,
    check_name,
    get_row,
    newest_first_page,
    user_by_name,
)
from pimlico.services.request_effects import record_admin
from pimlico.services.runtime import Actor, Pimlico, Written

SESSION, PERSONAL, SERVICE = "session", "personal", "service"
KINDS = (SESSION, PERSONAL, SERVICE)
TOKEN_PREFIX = "pim_"  # noqa: S105 (the marker of a token, not a secret)
ALL_SCOPES = "*"
SELF = "pim.self"
"""The scope of acting on one's own behalf: activating, deactivating, one's requests, MFA."""
PASSWORD_MIN, PASSWORD_MAX = 12, 1024
DEFAULT_TOKEN_LIFETIME = timedelta(days=90)
_TOUCH_EVERY = timedelta(minutes=1)
"""Time between two writes of tokens' ``last_used_at`` by one process."""

# Argon2id at OWASP's minimum (19 MiB, 2 passes), the same as recovery codes.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))
"""Verified against when the account does not exist, so that answering takes as long."""
_REFUSED = "wrong user name or password"


@dataclass(frozen=True, slots=True)
class Token:
    """A token as its holder and administrators see it: never its secret."""

    id: str
    kind: str
    principal_type: PrincipalType
    principal_id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new token and its bearer string, shown this once."""

    token: Token
    bearer: str = field(repr=False)
    revision: int


# -- passwords --------------------------------------------------------------------------------


def check_password(password: str, field_name: str = "password") -> str:
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise InvalidInput(
            f"{field_name}: a password has {PASSWORD_MIN} to {PASSWORD_MAX} characters",
            [FieldError(field_name, "length", f"{PASSWORD_MIN} to {PASSWORD_MAX} characters")],
        )
    return password


def set_password(
    rt: Pimlico,
    *,
    actor: Actor,
    user_id: str,
    password: str,
    current_password: str | None = None,
) -> Written[None]:
    """Set a user's password. Users change their own by giving the current one; user
    administrators (``pim.users.write``) and the operator set anyone's. Every sign-in session
    of the user ends."""
    check_password(password)
    own = actor.principal_id == user_id
    hashed = _HASHER.hash(password)
    with rt.writing(actor) as w:
        if not own:
            authorize(rt, actor, Perm.USERS_WRITE)
        get_row(w.session, UserRow, user_id, "user", lock=True)
        row = w.session.get(CredentialRow, user_id)
        if (
            own
            and not actor.system
            and (row is None or current_password is None or not _verify(row, current_password))
        ):
            raise PermissionDenied("the current password is needed, and was not given right")
        _store_password(rt, w, actor, user_id, hashed, row)
        return Written(None, w.revision)


def _store_password(
    rt: Pimlico,
    w: WriteContext,
    actor: Actor,
    user_id: str,
    hashed: str,
    row: CredentialRow | None,
) -> None:
    """Store the user's new password hash (``row``: their credential, if they have one) and
    end their sign-in sessions, in the write ``w``."""
    if row is None:
        row = CredentialRow(user_id=user_id, failed_attempts=0)
        w.session.add(row)
    row.password_hash = hashed
    row.changed_at = w.at
    row.changed_by = actor.name
    row.failed_attempts, row.failures_since = 0, None
    ended = _revoke_where(rt, w.session, actor, w.at, principal_id=user_id, kind=SESSION)
    w.record(
        action="credential.set",
        target_type="user",
        target_id=user_id,
        before=None,
        after={"sessions_ended": ended},
    )


def _verify(row: CredentialRow, password: str) -> bool:
    try:
        return _HASHER.verify(row.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# -- sign-in ---------------------------------------------------------------------------------


def sign_in(rt: Pimlico, *, user_name: str, password: str, code: str | None = None) -> IssuedToken:
    """A session for the user whose password this is. Unknown accounts, accounts without a
    password, disabled ones and wrong passwords all get the same ``NotAuthenticated`` after
    the same work; past ``signin_max_attempts`` failures in a window the account is locked
    (``TooManyAttempts``) until the window ends, whatever the password.

    An account with a confirmed MFA factor signs in with its ``code`` too (a TOTP or a
    recovery code, checked as ``mfa.verify`` checks it, so it also counts as a step-up):
    without one, the right password gets ``MfaCodeRequired`` and no session — a password
    alone never opens a session of an account that has MFA.
    """
    limit, window = (
        rt.settings.signin_max_attempts,
        timedelta(seconds=rt.settings.signin_attempt_window),
    )
    refusal: Exception | None = None
    issued: IssuedToken | None = None
    needs_code: str | None = None
    with rt.writing(Actor(name=f"signin:{user_name[:64]}")) as w:
        try:
            user = user_by_name(w.session, user_name)
        except NotFound:
            _burn(password)
            raise NotAuthenticated(_REFUSED) from None
        row = w.session.get(CredentialRow, user.id, with_for_update=True)
        if row is None:
            _burn(password)
            raise NotAuthenticated(_REFUSED)
        attempts = Attempts(row.failed_attempts, row.failures_since)
        locked = attempts.locked_until(w.at, limit=limit, window=window)
        if locked is not None:
            raise TooManyAttempts(f"too many failed sign-ins: try again after {locked}", locked)
        if not _verify(row, password) or not user.enabled:
            failed = attempts.after_failure(w.at, window=window)
            row.failed_attempts, row.failures_since = failed.failures, failed.since
            w.record(
                action="signin.fail",
                target_type="user",
                target_id=user.id,
                before=None,
                after={"failed_attempts": failed.failures},
            )
            refusal = NotAuthenticated(_REFUSED)
        else:
            row.failed_attempts, row.failures_since = 0, None
            if _has_confirmed_factor(w.session, user.id):
                needs_code = user.id
            else:
                issued = _issue_session(rt, w, user.id)
    if refusal is not None:
        raise refusal
    if needs_code is not None:
        if code is None:
            raise MfaCodeRequired(needs_code)
        return finish_sign_in(rt, user_id=needs_code, code=code)
    assert issued is not None
    return issued


def finish_sign_in(rt: Pimlico, *, user_id: str, code: str) -> IssuedToken:
    """The session of a sign-in whose password was right (``MfaCodeRequired``), once the
    account's MFA ``code`` is verified. Only for a caller that checked the password in this
    same sign-in (``sign_in`` itself, or the portal's sealed second step); refused with
    ``MfaCodeInvalid``, ``MfaCodeReused`` or ``MfaLocked`` as ``mfa.verify`` refuses."""
    actor = Actor.principal(user_id)
    mfa.verify(rt, actor=actor, user_id=user_id, code=code)
    with rt.writing(actor) as w:
        user = get_row(w.session, UserRow, user_id, "user")
        if not user.enabled:
            raise NotAuthenticated(_REFUSED)
        return _issue_session(rt, w, user_id)


def _issue_session(rt: Pimlico, w: WriteContext, user_id: str) -> IssuedToken:
    lifetime = timedelta(seconds=rt.settings.session_lifetime)
    actor = Actor.principal(user_id)
    kind = PrincipalType.USER
    return _issue(w, actor, kind, user_id, SESSION, "sign-in", (ALL_SCOPES,), lifetime)


def _has_confirmed_factor(session: Session, user_id: str) -> bool:
    found = session.scalar(
        select(MfaFactorRow.id).where(
            MfaFactorRow.user_id == user_id,
            MfaFactorRow.removed_at.is_(None),
            MfaFactorRow.confirmed_at.is_not(None),
        )
    )
    return found is not None


def _burn(password: str) -> None:
    """The work of checking a password, for an account that has none to check against."""
    with contextlib.suppress(VerificationError, InvalidHashError):
        _HASHER.verify(_DUMMY_HASH, password)


# -- tokens ----------------------------------------------------------------------------------


def issue_token(
    rt: Pimlico,
    *,
    actor: Actor,
    name: str,
    scopes: list[str] | tuple[str, ...] = (ALL_SCOPES,),
    lifetime: timedelta | None = None,
    service_account_id: str | None = None,
) -> IssuedToken:
    """A token for a script: the caller's own (personal), or, for user administrators
    (``pim.users.write``), a service account's. Its scopes are at most the caller's own
    token's; its lifetime at most ``token_max_lifetime`` (default 90 days)."""
    name = check_name(name, "name")
    scopes = _check_scopes(actor, scopes)
    lifetime = lifetime or DEFAULT_TOKEN_LIFETIME
    longest = timedelta(seconds=rt.settings.token_max_lifetime)
    if not timedelta(minutes=1) <= lifetime <= longest:
        raise InvalidInput(
            f"lifetime: a token lasts from one minute to {longest.days} days",
            [FieldError("lifetime", "range", f"PT1M to P{longest.days}D")],
        )
    with rt.writing(actor) as w:
        if service_account_id is not None:
            authorize(rt, actor, Perm.USERS_WRITE)
            account = get_row(w.session, ServiceAccountRow, service_account_id, "service account")
            return _issue(
                w, actor, PrincipalType.SERVICE_ACCOUNT, account.id, SERVICE, name, scopes, lifetime
            )
        if actor.principal_id is None:
            raise PermissionDenied("the operator has no tokens of its own: name a service account")
        principal_type = (
            PrincipalType.USER
            if w.session.get(UserRow, actor.principal_id) is not None
            else PrincipalType.SERVICE_ACCOUNT
        )
        return _issue(
            w, actor, principal_type, actor.principal_id, PERSONAL, name, scopes, lifetime
        )


def _check_scopes(actor: Actor, scopes: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    problems = [
        FieldError(f"scopes[{i}]", "pattern", problem)
        for i, scope in enumerate(scopes)
        if scope not in (ALL_SCOPES, SELF) and (problem := pattern_problem(scope)) is not None
    ]
    if not scopes:
        problems.append(FieldError("scopes", "required", "at least one scope"))
    if problems:
        raise InvalidInput("scopes: " + "; ".join(p.message for p in problems), problems)
    if actor.scopes is not None and ALL_SCOPES not in actor.scopes:
        wider = [s for s in scopes if s not in actor.scopes]
        if wider:
            raise PermissionDenied(f"a token cannot have scopes its maker's lacks: {wider}")
    return tuple(sorted(set(scopes)))


def _issue(
    w: Any,
    actor: Actor,
    principal_type: PrincipalType,
    principal_id: str,
    kind: str,
    name: str,
    scopes: tuple[str, ...],
    lifetime: timedelta,
) -> IssuedToken:
    token_id = new_id()
    secret = secrets.token_urlsafe(32)
    row = ApiTokenRow(
        id=token_id,
        secret_hash=_digest(secret),
        kind=kind,
        principal_type=principal_type.value,
        principal_id=principal_id,
        name=name,
        scopes=list(scopes),
        created_at=w.at,
        created_by=actor.name,
        expires_at=w.at + lifetime,
    )
    w.session.add(row)
    token = _token(row)
    w.record(
        action="token.create",
        target_type="token",
        target_id=token_id,
        before=None,
        after=_snapshot(token),
    )
    return IssuedToken(token, f"{TOKEN_PREFIX}{token_id}_{secret}", w.revision)


def name_of(rt: Pimlico, actor: Actor) -> str:
    """The name ``actor`` signs in or is known by: a user's user name, a service account's
    name (the id if the record is gone)."""
    assert actor.principal_id is not None
    table = UserRow if actor.principal_type is PrincipalType.USER else ServiceAccountRow
    column = UserRow.user_name if table is UserRow else ServiceAccountRow.name
    with rt.reading() as s:
        found = s.scalar(select(column).where(table.id == actor.principal_id))
    return found or actor.principal_id


def list_tokens(
    rt: Pimlico,
    *,
    actor: Actor,
    principal_id: str | None = None,
    kind: str | None = None,
    usable: bool = False,
    after: tuple[datetime, str] | None = None,
    limit: int | None = None,
) -> list[Token]:
    """The tokens of ``principal_id`` (default: the caller's own), newest first (then by id);
    another's need ``pim.users.read``. Only those of ``kind`` if given; only those neither
    revoked nor expired if ``usable``; only those after ``after`` (the ``(created_at, id)``
    of the previous page's last token), at most ``limit``."""
    principal_id = principal_id or actor.principal_id
    if principal_id is None:
        raise InvalidInput(
            "principal_id: whose tokens?", [FieldError("principal_id", "required", "needed")]
        )
    if kind is not None and kind not in KINDS:
        raise InvalidInput(
            f"kind: one of {', '.join(KINDS)}",
            [FieldError("kind", "enum", f"one of {', '.join(KINDS)}")],
        )
    if principal_id != actor.principal_id:
        authorize(rt, actor, Perm.USERS_READ)
    query = select(ApiTokenRow).where(ApiTokenRow.principal_id == principal_id)
    if kind is not None:
        query = query.where(ApiTokenRow.kind == kind)
    if usable:
        query = query.where(
            ApiTokenRow.revoked_at.is_(None), ApiTokenRow.expires_at > rt.clock.now()
        )
    query = newest_first_page(query, ApiTokenRow.created_at, ApiTokenRow.id, after, limit)
    with rt.reading() as s:
        return [_token(r) for r in s.scalars(query)]


def revoke_token(rt: Pimlico, *, actor: Actor, token_id: str) -> Written[Token]:
    """End a token now: its holder may end their own, user administrators anyone's."""
    with rt.writing(actor) as w:
        row = get_row(w.session, ApiTokenRow, token_id, "token", lock=True)
        if row.principal_id != actor.principal_id:
            authorize(rt, actor, Perm.USERS_WRITE)
        if row.revoked_at is not None:
            raise Conflict(f"token {token_id} was already revoked")
        before = _snapshot(_token(row))
        row.revoked_at, row.revoked_by = w.at, actor.name
        token = _token(row)
        w.record(
            action="token.revoke",
            target_type="token",
            target_id=token_id,
            before=before,
            after=_snapshot(token),
        )
    _forget(rt, token_id)
    return Written(token, w.revision)


def _revoke_where(
    rt: Pimlico, session: Any, actor: Actor, at: datetime, *, principal_id: str, kind: str
) -> int:
    ended = session.execute(
        update(ApiTokenRow)
        .where(
            ApiTokenRow.principal_id == principal_id,
            ApiTokenRow.kind == kind,
            ApiTokenRow.revoked_at.is_(None),
            ApiTokenRow.expires_at > at,
        )
        .values(revoked_at=at, revoked_by=actor.name)
        .returning(ApiTokenRow.id)
    ).scalars()
    ids = list(ended)
    for token_id in ids:
        _forget(rt, token_id)
    return len(ids)


# -- authenticating a bearer -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Known:
    secret_hash: str
    actor: Actor | None
    """``None``: the token exists but does not authenticate (revoked, or its holder is
    disabled or gone)."""
    expires_at: datetime
    read_at: float


_lock = threading.Lock()

MOST_READ_TOGETHER = 64
"""Tokens read in one statement at most (``_read``)."""


@dataclass(slots=True)
class _Cache:
    reads: GroupCommit[str, _Known]
    """Reads tokens on their first use, those asked for at the same time in one statement."""
    known: dict[str, _Known] = field(default_factory=dict)
    used: dict[str, datetime] = field(default_factory=dict)
    """Tokens used since ``last_used_at`` was last written, and when."""
    flushed: datetime | None = None
    """When this process last wrote them."""


def _cache(rt: Pimlico) -> _Cache:
    """This runtime's tokens as last read (kept in ``rt.caches``)."""
    cache = rt.caches.get("accounts")
    if cache is None:
        with _lock:
            cache = rt.caches.get("accounts")
            if cache is None:

                def read(token_ids: Sequence[str]) -> list[_Known]:
                    return _read_together(rt, token_ids)

                cache = rt.caches["accounts"] = _Cache(GroupCommit(read, most=MOST_READ_TOGETHER))
    assert isinstance(cache, _Cache)
    return cache


def authenticate(rt: Pimlico, bearer: str) -> tuple[Actor, str]:
    """Who ``bearer`` is (as an ``Actor`` carrying the token's scopes) and the token's id;
    ``NotAuthenticated`` if it is malformed, unknown, wrong, expired or revoked, or its
    holder is disabled. Reads the store when memory cannot answer
    (``authenticate_from_memory``)."""
    found = authenticate_from_memory(rt, bearer)
    if found is not None:
        return found
    token_id, secret = _parse(bearer)
    now = rt.clock.now()
    known = _read(rt, token_id)
    _accept(known, secret, now)
    _touch(rt, token_id, now)
    assert known.actor is not None
    return known.actor, token_id


def authenticate_from_memory(rt: Pimlico, bearer: str) -> tuple[Actor, str] | None:
    """``authenticate`` when it can answer without the store — the token read lately and no
    write of last uses due — else ``None`` (call ``authenticate``). For callers that must
    not wait on the store, such as an event loop."""
    token_id, secret = _parse(bearer)
    now = rt.clock.now()
    cache = _cache(rt)
    known = cache.known.get(token_id)
    if known is None or time.monotonic() - known.read_at > rt.settings.token_cache_seconds:
        return None
    if cache.flushed is None or now - cache.flushed >= _TOUCH_EVERY:
        return None
    _accept(known, secret, now)
    cache.used[token_id] = now
    assert known.actor is not None
    return known.actor, token_id


def _accept(known: _Known, secret: str, now: datetime) -> None:
    if (
        known.actor is None
        or not hmac.compare_digest(known.secret_hash, _digest(secret))
        or now >= known.expires_at
    ):
        raise NotAuthenticated("the token is not valid (unknown, expired or revoked)")


def _parse(bearer: str) -> tuple[str, str]:
    if bearer.startswith(TOKEN_PREFIX):
        token_id, sep, secret = bearer[len(TOKEN_PREFIX) :].partition("_")
        if sep and len(token_id) == 36 and secret:
            return token_id, secret
    raise NotAuthenticated("the token is not valid (unknown, expired or revoked)")


def _read(rt: Pimlico, token_id: str) -> _Known:
    """The token ``token_id`` as the store has it now. When many are used for the first time
    at once (a shift starting, everyone signing in), the reads asked for meanwhile share one
    statement: each alone would pay a connection's checkout, the query and its rollback."""
    return _cache(rt).reads.submit(token_id)


def _read_together(rt: Pimlico, token_ids: Sequence[str]) -> list[_Known]:
    """``_read`` of each of ``token_ids``, in one statement on a plain connection (not ORM
    loads in a session: a token's first use pays this read on the request's path)."""
    with rt.engine.connect() as c:
        rows = {row.id: row for row in c.execute(_READING, {"tokens": sorted(set(token_ids))})}
    now, read_at = rt.clock.now(), time.monotonic()
    cache = _cache(rt)
    found = []
    for token_id in token_ids:
        row = rows.get(token_id)
        if row is None:
            # Matches no secret (and is not cached: unknown ids would fill the cache).
            found.append(_Known(_digest(secrets.token_urlsafe(8)), None, now, read_at))
            continue
        usable = row.revoked_at is None and bool(row.enabled)
        scopes = None if ALL_SCOPES in row.scopes else frozenset(row.scopes)
        kind = PrincipalType(row.principal_type)
        actor = Actor.principal(row.principal_id, scopes, kind) if usable else None
        known = cache.known[token_id] = _Known(row.secret_hash, actor, row.expires_at, read_at)
        found.append(known)
    return found


def _touch(rt: Pimlico, token_id: str, now: datetime) -> None:
    """Record that the token was used. Uses are kept in memory and written together, in one
    statement, at most once per ``_TOUCH_EVERY`` per process (a plain update: no revision, no
    audit event — use is logged, not a change of state), so no request but one a minute pays
    a write for it: ``last_used_at`` may lag by that much, and by the last minute's uses of a
    process that stops."""
    cache = _cache(rt)
    cache.used[token_id] = now
    if cache.flushed is not None and now - cache.flushed < _TOUCH_EVERY:
        return
    with _lock:
        if cache.flushed is not None and now - cache.flushed < _TOUCH_EVERY:
            return
        cache.flushed = now
        used, cache.used = cache.used, {}
    with rt.sessions() as s, s.begin():
        s.execute(_TOUCHING, [{"token": token, "used": at} for token, at in used.items()])


_TOKENS = Base.metadata.tables[ApiTokenRow.__tablename__]
_USERS = Base.metadata.tables[UserRow.__tablename__]
_ACCOUNTS = Base.metadata.tables[ServiceAccountRow.__tablename__]
_READING = (
    select(
        _TOKENS.c.id,
        _TOKENS.c.secret_hash,
        _TOKENS.c.principal_id,
        _TOKENS.c.principal_type,
        _TOKENS.c.scopes,
        _TOKENS.c.expires_at,
        _TOKENS.c.revoked_at,
        # The holder's enabled flag; NULL when the holder is gone.
        func.coalesce(_USERS.c.enabled, _ACCOUNTS.c.enabled).label("enabled"),
    )
    .outerjoin(
        _USERS,
        and_(
            _TOKENS.c.principal_type == PrincipalType.USER.value,
            _USERS.c.id == _TOKENS.c.principal_id,
        ),
    )
    .outerjoin(
        _ACCOUNTS,
        and_(
            _TOKENS.c.principal_type != PrincipalType.USER.value,
            _ACCOUNTS.c.id == _TOKENS.c.principal_id,
        ),
    )
    .where(_TOKENS.c.id.in_(bindparam("tokens", expanding=True)))
)
_TOUCHING = (
    update(_TOKENS)
    .where(_TOKENS.c.id == bindparam("token"))
    .values(last_used_at=bindparam("used", type_=_TOKENS.c.last_used_at.type))
)


def _forget(rt: Pimlico, token_id: str) -> None:
    _cache(rt).known.pop(token_id, None)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _token(row: ApiTokenRow) -> Token:
    return Token(
        id=row.id,
        kind=row.kind,
        principal_type=PrincipalType(row.principal_type),
        principal_id=row.principal_id,
        name=row.name,
        scopes=tuple(row.scopes),
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


def _snapshot(token: Token) -> dict[str, Any]:
    return {
        "id": token.id,
        "kind": token.kind,
        "principal_id": token.principal_id,
        "name": token.name,
        "scopes": list(token.scopes),
        "expires_at": token.expires_at.isoformat(),
        "revoked_at": None if token.revoked_at is None else token.revoked_at.isoformat(),
    }


# -- the first administrator -----------------------------------------------------------------


def bootstrap_admin(
    rt: Pimlico,
    *,
    user_name: str,
    password: str,
    display_name: str | None = None,
    email: str | None = None,
) -> str:
    """Create the break-glass administrator on a store that has none: a user with a password
    and a permanent, active Global Administrator assignment at ``/`` (the role's settings are
    changed to allow a permanent active assignment, as Entra's break-glass guidance asks).
    Refused once anyone holds a password or Global Administrator. Returns the user's id."""
    check_password(password)
    user_name = check_name(user_name, "user_name")
    display = check_name(display_name or user_name, "display_name")
    email = check_email(email)
    hashed = _HASHER.hash(password)
    operator = Actor.operator("bootstrap-admin")
    why = "Break-glass administrator created by pimlico bootstrap-admin"
    # One write: the user, the password, the settings change and the assignment (with its
    # request) commit together or not at all; checked under the write lock, so two runs at
    # once make one administrator.
    with rt.writing(operator, request_id=new_id()) as w:
        s = w.session
        if s.scalars(select(CredentialRow.user_id).limit(1)).first() is not None or (
            _has_global_administrator(rt, s)
        ):
            raise Conflict(
                "this store already has an administrator: bootstrap-admin is for a new one"
            )
        user = directory.add_user(
            w, user_name=user_name, display_name=display, email=email, manager_id=None
        )
        _store_password(rt, w, operator, user.id, hashed, None)
        role_settings.change_settings(
            w,
            target_type=TargetType.ROLE,
            object_id=GLOBAL_ADMINISTRATOR.id,
            changes={"assignment": {"allow_permanent_active": True}},
        )
        made = assignment_changes.create(
            rt,
            w,
            operator,
            AssignmentKind.ACTIVE,
            PrincipalRef(PrincipalType.USER, user.id),
            Target.role(GLOBAL_ADMINISTRATOR.id),
            None,
            None,
            None,
            assignment_changes.Asked(why),
        )
        record_admin(
            w,
            RequestAction.ADMIN_ASSIGN,
            operator.name,
            made,
            justification=why,
            ticket=None,
            idempotency_key=None,
        )
    return user.id


def _has_global_administrator(rt: Pimlico, s: Session) -> bool:
    found = global_administrators(s, now=rt.clock.now(), max_depth=rt.settings.max_nesting_depth)
    return bool(found.active)
