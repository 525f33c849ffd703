"""MFA use cases: enrol a TOTP factor, confirm it, verify codes, step-up freshness, remove.

Each is one transaction, audited. Secrets and codes never reach the audit log, a log line or
an error message: the TOTP secret is stored as a Fernet token (key from the settings, bound
to its factor's id so a token cannot be moved to another row), recovery codes as argon2
hashes. The secret leaves this module once, in the ``Enrollment`` returned to the enrolling
user, and the recovery codes once, from ``confirm``.

Who may act: the user on their own factor (and the local operator). Another user may only
remove a factor, with ``pim.users.write``; nobody reads another's secret. Removing one's own
confirmed factor needs a fresh verification, so a stolen session cannot strip MFA.

A failed code is counted, and the count must survive the refusal: so the refusal is raised
after the transaction commits, not inside it.
"""

from __future__ import annotations

import hmac
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pimlico.db.audit import WriteContext
from pimlico.db.tables import MfaFactorRow, MfaRecoveryCodeRow, MfaVerificationRow, UserRow
from pimlico.domain.catalogue import Perm
from pimlico.domain.mfa import (
    Attempts,
    is_fresh,
    new_recovery_codes,
    normalise_recovery_code,
    normalise_totp_code,
)
from pimlico.domain.model import new_id
from pimlico.errors import (
    MfaAlreadyEnrolled,
    MfaCodeInvalid,
    MfaCodeReused,
    MfaError,
    MfaLocked,
    MfaNotEnrolled,
    MfaStepUpRequired,
    PermissionDenied,
    SecretKeyNotConfigured,
)
from pimlico.services.decisions import authorize
from pimlico.services.lookups import check_text, get_row
from pimlico.services.runtime import Actor, Pimlico, Written
from pimlico.settings import SecretKeyMissing

ISSUER = "Pimlico"
"""The issuer authenticator apps show next to the account name."""

TOTP = "totp"
RECOVERY = "recovery"

# Argon2id at OWASP's minimum (19 MiB, 2 passes): a recovery code holds 50 random bits, so
# the hash only has to make an offline search of a stolen table slow, not rescue a weak code.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


@dataclass(frozen=True, slots=True)
class Factor:
    """A user's MFA factor as callers see it: never its secret."""

    id: str
    user_id: str
    method: str
    created_at: datetime
    confirmed_at: datetime | None
    removed_at: datetime | None


@dataclass(frozen=True, slots=True)
class Enrollment:
    """A new, unconfirmed factor, and what the user's authenticator app needs (shown once)."""

    factor: Factor
    secret: str = field(repr=False)
    provisioning_uri: str = field(repr=False)
    revision: int


@dataclass(frozen=True, slots=True)
class Verification:
    """A successful verification: how, when, and how many recovery codes remain."""

    user_id: str
    method: str
    verified_at: datetime
    recovery_codes_left: int
    revision: int


# -- use cases ------------------------------------------------------------------------------


def enroll(rt: Pimlico, *, actor: Actor, user_id: str) -> Enrollment:
    """Start enrolling a TOTP factor: a new secret, unconfirmed until ``confirm``.

    An unconfirmed factor is replaced (the user may have lost the QR code); a confirmed one
    must be removed first.
    """
    _must_be_self(actor, user_id)
    fernet = _fernet(rt)
    with rt.writing(actor) as w:
        user = get_row(w.session, UserRow, user_id, "user", lock=True)
        current = _live_factor(w.session, user_id)
        if current is not None:
            if current.confirmed_at is not None:
                raise MfaAlreadyEnrolled(
                    f"user {user.user_name} already has a confirmed MFA factor: remove it first"
                )
            _end(w, current, reason="replaced by a new enrolment")
        secret = pyotp.random_base32()
        row = MfaFactorRow(
            id=new_id(),
            user_id=user_id,
            method=TOTP,
            created_at=w.at,
            created_by=w.actor,
            failed_attempts=0,
        )
        row.secret = _seal(fernet, row.id, secret)
        w.session.add(row)
        w.session.flush()
        factor = _factor(row)
        w.record(
            action="mfa.enroll",
            target_type="mfa_factor",
            target_id=row.id,
            before=None,
            after=_snapshot(factor),
        )
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.user_name, issuer_name=ISSUER)
    return Enrollment(factor, secret, uri, w.revision)


def confirm(rt: Pimlico, *, actor: Actor, user_id: str, code: str) -> list[str]:
    """Confirm an enrolment with a first valid code; returns the recovery codes (shown once,
    stored hashed). Failures count towards the lockout, as in ``verify``."""
    _must_be_self(actor, user_id)
    fernet = _fernet(rt)
    refusal: MfaError | None = None
    codes: list[str] = []
    with rt.writing(actor) as w:
        get_row(w.session, UserRow, user_id, "user", lock=True)
        row = _live_factor(w.session, user_id)
        if row is None:
            raise MfaNotEnrolled("no MFA enrolment to confirm: enrol first")
        if row.confirmed_at is not None:
            raise MfaAlreadyEnrolled("the MFA factor is already confirmed")
        _refuse_if_locked(rt, row, w.at)
        totp = normalise_totp_code(code)
        step = None if totp is None else _match_step(_open(fernet, row), totp, w.at)
        if step is None:
            refusal = _failed(rt, w, row, MfaCodeInvalid("the code is wrong or expired"))
        else:
            before = _snapshot(_factor(row))
            row.confirmed_at = w.at
            row.last_used_step = step
            _set_attempts(row, Attempts())
            codes = new_recovery_codes()
            w.session.add_all(
                MfaRecoveryCodeRow(
                    id=new_id(),
                    user_id=user_id,
                    factor_id=row.id,
                    code_hash=_HASHER.hash(plain),
                    created_at=w.at,
                )
                for plain in codes
            )
            w.record(
                action="mfa.confirm",
                target_type="mfa_factor",
                target_id=row.id,
                before=before,
                after={**_snapshot(_factor(row)), "recovery_codes": len(codes)},
            )
    if refusal is not None:
        raise refusal
    return codes


def verify(rt: Pimlico, *, actor: Actor, user_id: str, code: str) -> Verification:
    """Verify a TOTP code (this time step or one either side) or a recovery code.

    A TOTP time step is accepted once and never one at or before the last accepted (replay);
    a recovery code works once. Failures are counted; at the limit verification locks until
    the attempt window passes (``MfaLocked``). A success is recorded for step-up freshness.
    """
    _must_be_self(actor, user_id)
    fernet = _fernet(rt)
    refusal: MfaError | None = None
    left = 0
    with rt.writing(actor) as w:
        get_row(w.session, UserRow, user_id, "user", lock=True)
        row = _live_factor(w.session, user_id)
        if row is None or row.confirmed_at is None:
            raise MfaNotEnrolled("no confirmed MFA factor: enrol and confirm one first")
        _refuse_if_locked(rt, row, w.at)
        totp = normalise_totp_code(code)
        recovery = None if totp is not None else normalise_recovery_code(code)
        method = TOTP if totp is not None else RECOVERY
        if totp is not None:
            step = _match_step(_open(fernet, row), totp, w.at)
            if step is None:
                refusal = MfaCodeInvalid("the code is wrong or expired")
            elif row.last_used_step is not None and step <= row.last_used_step:
                refusal = MfaCodeReused("this code was already used: wait for the next one")
            else:
                row.last_used_step = step
        elif recovery is not None:
            if not _use_recovery_code(w.session, row, recovery, w.at):
                refusal = MfaCodeInvalid("the recovery code is wrong or was already used")
        else:
            refusal = MfaCodeInvalid("not a 6-digit code nor a recovery code (xxxxx-xxxxx)")
        if refusal is not None:
            refusal = _failed(rt, w, row, refusal)
        else:
            _set_attempts(row, Attempts())
            w.session.add(
                MfaVerificationRow(
                    id=new_id(), user_id=user_id, factor_id=row.id, method=method, verified_at=w.at
                )
            )
            left = _recovery_codes_left(w.session, row.id)
            w.record(
                action="mfa.verify",
                target_type="mfa_factor",
                target_id=row.id,
                before=None,
                after={"method": method, "recovery_codes_left": left, "user_id": user_id},
            )
    if refusal is not None:
        raise refusal
    return Verification(user_id, method, w.at, left, w.revision)


def fresh_verification(rt: Pimlico, *, user_id: str, at: datetime) -> datetime | None:
    """When ``user_id`` last verified, if that is still fresh at ``at`` (for step-up, the
    request workflow's ``MfaRule``); ``None`` if never, or no longer. Only verifications of
    the factor the user still has count."""
    with rt.reading() as s:
        return fresh_verifications(rt, s, [user_id], at).get(user_id)


def fresh_verifications(
    rt: Pimlico, s: Session, user_ids: Collection[str], at: datetime
) -> dict[str, datetime]:
    """``fresh_verification`` of many users in one query: user id → when they last verified,
    for those whose verification is still fresh at ``at``."""
    window = timedelta(seconds=rt.settings.mfa_freshness)
    rows = s.execute(
        select(MfaVerificationRow.user_id, func.max(MfaVerificationRow.verified_at))
        .join(MfaFactorRow, MfaFactorRow.id == MfaVerificationRow.factor_id)
        .where(
            MfaVerificationRow.user_id.in_(sorted(set(user_ids))),
            MfaVerificationRow.verified_at <= at,
            MfaVerificationRow.verified_at > at - window,
            MfaFactorRow.removed_at.is_(None),
        )
        .group_by(MfaVerificationRow.user_id)
    )
    return {user_id: latest for user_id, latest in rows if is_fresh(latest, at, window)}


def verified_recently(rt: Pimlico, *, actor: Actor) -> bool:
    """Did ``actor`` verify MFA within ``mfa_freshness``? What an administrator's request
    that the policy says needs MFA accepts (API and portal alike)."""
    if actor.principal_id is None:
        return False
    return fresh_verification(rt, user_id=actor.principal_id, at=rt.clock.now()) is not None


def factor_of(rt: Pimlico, *, actor: Actor, user_id: str) -> Factor | None:
    """The user's factor in use or being enrolled (never its secret), or ``None``. The user
    themselves may ask, and holders of ``pim.users.read``."""
    if not (actor.system or actor.principal_id == user_id):
        authorize(rt, actor, Perm.USERS_READ)
    with rt.reading() as s:
        row = s.scalars(
            select(MfaFactorRow).where(
                MfaFactorRow.user_id == user_id, MfaFactorRow.removed_at.is_(None)
            )
        ).first()
        return None if row is None else _factor(row)


def remove(
    rt: Pimlico, *, actor: Actor, user_id: str, reason: str | None = None
) -> Written[Factor]:
    """Remove a user's factor (confirmed or not): its secret is wiped, its recovery codes and
    verifications stop counting. The row stays, with who removed it, when and why."""
    reason = check_text(reason, "reason")
    own = actor.principal_id == user_id
    with rt.writing(actor) as w:
        if not own:
            authorize(rt, actor, Perm.USERS_WRITE)
        get_row(w.session, UserRow, user_id, "user", lock=True)
        row = _live_factor(w.session, user_id)
        if row is None:
            raise MfaNotEnrolled("the user has no MFA factor to remove")
        if own and not actor.system and row.confirmed_at is not None:
            window = timedelta(seconds=rt.settings.mfa_freshness)
            latest = _latest_verification(w.session, row.id)
            if not is_fresh(latest, w.at, window):
                raise MfaStepUpRequired("verify a code first: removing MFA needs a fresh one")
        factor = _end(w, row, reason=reason)
    return Written(factor, w.revision)


# -- helpers --------------------------------------------------------------------------------


def _must_be_self(actor: Actor, user_id: str) -> None:
    if actor.system or actor.principal_id == user_id:
        return
    raise PermissionDenied("only the user themselves may enrol or use their MFA factor")


def _fernet(rt: Pimlico) -> Fernet:
    try:
        return Fernet(rt.settings.encryption_key())
    except SecretKeyMissing as error:
        raise SecretKeyNotConfigured(str(error)) from None


def _seal(fernet: Fernet, factor_id: str, secret: str) -> str:
    return fernet.encrypt(f"{factor_id}:{secret}".encode()).decode("ascii")


def _open(fernet: Fernet, row: MfaFactorRow) -> str:
    try:
        plain = fernet.decrypt(row.secret.encode("ascii")).decode()
    except InvalidToken:
        raise SecretKeyNotConfigured(
            "the secret key cannot decrypt this MFA factor: was PIMLICO_SECRET_KEY changed?"
        ) from None
    factor_id, _, secret = plain.partition(":")
    if factor_id != row.id:
        raise SecretKeyNotConfigured("this MFA factor's secret belongs to another factor")
    return secret


def _match_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step (now, or one either side for clock drift) whose code is ``code``."""
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _use_recovery_code(session: Session, row: MfaFactorRow, code: str, now: datetime) -> bool:
    unused = session.scalars(
        select(MfaRecoveryCodeRow)
        .where(MfaRecoveryCodeRow.factor_id == row.id, MfaRecoveryCodeRow.used_at.is_(None))
        .with_for_update()
    )
    for candidate in unused:
        try:
            _HASHER.verify(candidate.code_hash, code)
        except (VerificationError, InvalidHashError):
            continue
        candidate.used_at = now
        return True
    return False


def _recovery_codes_left(session: Session, factor_id: str) -> int:
    return len(
        session.scalars(
            select(MfaRecoveryCodeRow.id).where(
                MfaRecoveryCodeRow.factor_id == factor_id, MfaRecoveryCodeRow.used_at.is_(None)
            )
        ).all()
    )


def _latest_verification(session: Session, factor_id: str) -> datetime | None:
    return session.scalars(
        select(MfaVerificationRow.verified_at)
        .where(MfaVerificationRow.factor_id == factor_id)
        .order_by(MfaVerificationRow.verified_at.desc())
        .limit(1)
    ).first()


def _live_factor(session: Session, user_id: str) -> MfaFactorRow | None:
    return session.scalars(
        select(MfaFactorRow)
        .where(MfaFactorRow.user_id == user_id, MfaFactorRow.removed_at.is_(None))
        .with_for_update()
    ).first()


def _attempts(row: MfaFactorRow) -> Attempts:
    return Attempts(row.failed_attempts, row.failures_since)


def _set_attempts(row: MfaFactorRow, attempts: Attempts) -> None:
    row.failed_attempts = attempts.failures
    row.failures_since = attempts.since


def _refuse_if_locked(rt: Pimlico, row: MfaFactorRow, now: datetime) -> None:
    until = _attempts(row).locked_until(now, limit=rt.settings.mfa_max_attempts, window=_window(rt))
    if until is not None:
        raise MfaLocked(
            f"too many failed codes: MFA verification is locked until {until:%Y-%m-%dT%H:%M:%SZ}",
            until,
        )


def _failed(rt: Pimlico, w: WriteContext, row: MfaFactorRow, refusal: MfaError) -> MfaError:
    """Count a failure (audited, without the code); returns the refusal to raise after
    the commit, saying when verification is now locked if this failure locked it."""
    attempts = _attempts(row).after_failure(w.at, window=_window(rt))
    _set_attempts(row, attempts)
    until = attempts.locked_until(w.at, limit=rt.settings.mfa_max_attempts, window=_window(rt))
    w.record(
        action="mfa.verify_failed",
        target_type="mfa_factor",
        target_id=row.id,
        before=None,
        after={"failed_attempts": attempts.failures, "locked_until": until, "user_id": row.user_id},
        reason=refusal.code,
    )
    if until is not None:
        refusal = type(refusal)(
            f"{refusal.message}; too many failed codes: locked until {until:%Y-%m-%dT%H:%M:%SZ}"
        )
    return refusal


def _window(rt: Pimlico) -> timedelta:
    return timedelta(seconds=rt.settings.mfa_attempt_window)


def _end(w: WriteContext, row: MfaFactorRow, *, reason: str | None) -> Factor:
    before = _snapshot(_factor(row))
    row.removed_at = w.at
    row.removed_by = w.actor
    row.remove_reason = reason
    row.secret = ""  # crypto-shredding is not enough if the key leaks later: drop the token
    factor = _factor(row)
    w.record(
        action="mfa.remove",
        target_type="mfa_factor",
        target_id=row.id,
        before=before,
        after=_snapshot(factor),
        reason=reason,
    )
    return factor


def _factor(row: MfaFactorRow) -> Factor:
    return Factor(
        id=row.id,
        user_id=row.user_id,
        method=row.method,
        created_at=row.created_at,
        confirmed_at=row.confirmed_at,
        removed_at=row.removed_at,
    )


def _snapshot(factor: Factor) -> dict[str, object]:
    return {
        "id": factor.id,
        "user_id": factor.user_id,
        "method": factor.method,
        "created_at": factor.created_at,
        "confirmed_at": factor.confirmed_at,
        "removed_at": factor.removed_at,
    }
