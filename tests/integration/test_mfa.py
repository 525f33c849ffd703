"""TOTP multi-factor authentication on SQLite and PostgreSQL: enrol, confirm, verify, replay,
lockout, recovery codes, encryption at rest, step-up freshness, who may act, the audit."""

from __future__ import annotations

from datetime import datetime, timedelta

import pyotp
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from pimlico.clock import FixedClock
from pimlico.db.tables import AuditEventRow, MfaFactorRow, MfaRecoveryCodeRow
from pimlico.domain.catalogue import USER_ADMINISTRATOR
from pimlico.domain.model import AssignmentKind, Target
from pimlico.errors import (
    MfaAlreadyEnrolled,
    MfaCodeInvalid,
    MfaCodeReused,
    MfaLocked,
    MfaNotEnrolled,
    MfaStepUpRequired,
    PermissionDenied,
    SecretKeyNotConfigured,
)
from pimlico.services import assignments, mfa
from pimlico.services.runtime import Actor, Pimlico
from pimlico.settings import Settings
from tests.factories import HOUR
from tests.integration.world import OPERATOR, user

KEY = "q5wqT0Vf0mB3rXy2kZ8nN4pL7sD1gH6jC9vE2aR5tYU="
STEP = timedelta(seconds=30)


@pytest.fixture
def settings(migrated_url: str) -> Settings:
    return Settings(
        database_url=migrated_url,
        max_nesting_depth=4,
        secret_key=SecretStr(KEY),
        mfa_freshness=600,
        mfa_max_attempts=5,
        mfa_attempt_window=900,
    )


def code_at(secret: str, at: datetime) -> str:
    return pyotp.TOTP(secret).at(at)


def enrolled(rt: Pimlico, clock: FixedClock, name: str = "alex") -> tuple[Actor, str]:
    """A user with a confirmed factor, acting as themselves; and their secret. The clock
    moves one step on, so the confirming code's step is behind."""
    me = Actor.principal(user(rt, name).id)
    enrollment = mfa.enroll(rt, actor=me, user_id=me.name)
    mfa.confirm(rt, actor=me, user_id=me.name, code=code_at(enrollment.secret, clock.now()))
    clock.advance(STEP)
    return me, enrollment.secret


def recovery_codes(rt: Pimlico, clock: FixedClock) -> tuple[Actor, list[str]]:
    me = Actor.principal(user(rt, "alex").id)
    enrollment = mfa.enroll(rt, actor=me, user_id=me.name)
    codes = mfa.confirm(rt, actor=me, user_id=me.name, code=code_at(enrollment.secret, clock.now()))
    return me, codes


# -- enrol, confirm, verify -----------------------------------------------------------------


def test_a_user_enrols_confirms_with_a_first_code_and_then_verifies(
    rt: Pimlico, clock: FixedClock
) -> None:
    me = Actor.principal(user(rt, "alex").id)

    enrollment = mfa.enroll(rt, actor=me, user_id=me.name)
    assert enrollment.factor.confirmed_at is None
    assert enrollment.provisioning_uri.startswith("otpauth://totp/Pimlico:alex?")
    assert "issuer=Pimlico" in enrollment.provisioning_uri
    codes = mfa.confirm(rt, actor=me, user_id=me.name, code=code_at(enrollment.secret, clock.now()))
    assert len(codes) == 10
    clock.advance(STEP)
    verification = mfa.verify(
        rt, actor=me, user_id=me.name, code=code_at(enrollment.secret, clock.now())
    )

    assert (verification.method, verification.verified_at) == ("totp", clock.now())
    assert verification.recovery_codes_left == 10


def test_verifying_before_confirming_is_refused_as_not_enrolled(
    rt: Pimlico, clock: FixedClock
) -> None:
    me = Actor.principal(user(rt, "alex").id)
    enrollment = mfa.enroll(rt, actor=me, user_id=me.name)

    with pytest.raises(MfaNotEnrolled):
        mfa.verify(rt, actor=me, user_id=me.name, code=code_at(enrollment.secret, clock.now()))


def test_enrolling_again_replaces_an_unconfirmed_factor(rt: Pimlico, clock: FixedClock) -> None:
    me = Actor.principal(user(rt, "alex").id)
    first = mfa.enroll(rt, actor=me, user_id=me.name)
    second = mfa.enroll(rt, actor=me, user_id=me.name)

    with pytest.raises(MfaCodeInvalid):
        mfa.confirm(rt, actor=me, user_id=me.name, code=code_at(first.secret, clock.now()))
    mfa.confirm(rt, actor=me, user_id=me.name, code=code_at(second.secret, clock.now()))


def test_enrolling_over_a_confirmed_factor_is_refused_until_it_is_removed(
    rt: Pimlico, clock: FixedClock
) -> None:
    me, _ = enrolled(rt, clock)
    with pytest.raises(MfaAlreadyEnrolled):
        mfa.enroll(rt, actor=me, user_id=me.name)

    mfa.remove(rt, actor=OPERATOR, user_id=me.name, reason="lost phone")

    assert mfa.enroll(rt, actor=me, user_id=me.name).factor.confirmed_at is None


# -- wrong codes, replay, drift -------------------------------------------------------------


def test_a_wrong_code_is_refused(rt: Pimlico, clock: FixedClock) -> None:
    me, secret = enrolled(rt, clock)
    wrong = f"{(int(code_at(secret, clock.now())) + 1) % 1_000_000:06d}"

    with pytest.raises(MfaCodeInvalid):
        mfa.verify(rt, actor=me, user_id=me.name, code=wrong)


def test_the_same_code_twice_is_refused_as_a_replay(rt: Pimlico, clock: FixedClock) -> None:
    me, secret = enrolled(rt, clock)
    code = code_at(secret, clock.now())
    mfa.verify(rt, actor=me, user_id=me.name, code=code)

    with pytest.raises(MfaCodeReused):
        mfa.verify(rt, actor=me, user_id=me.name, code=code)


def test_the_code_that_confirmed_cannot_verify(rt: Pimlico, clock: FixedClock) -> None:
    me = Actor.principal(user(rt, "alex").id)
    enrollment = mfa.enroll(rt, actor=me, user_id=me.name)
    code = code_at(enrollment.secret, clock.now())
    mfa.confirm(rt, actor=me, user_id=me.name, code=code)

    with pytest.raises(MfaCodeReused):
        mfa.verify(rt, actor=me, user_id=me.name, code=code)


@pytest.mark.parametrize("steps", [-1, 1])
def test_a_code_one_step_either_side_is_accepted(
    rt: Pimlico, clock: FixedClock, steps: int
) -> None:
    me, secret = enrolled(rt, clock)
    clock.advance(STEP)  # the confirming step is two behind: a step back is still new

    mfa.verify(rt, actor=me, user_id=me.name, code=code_at(secret, clock.now() + steps * STEP))


@pytest.mark.parametrize("steps", [-2, 2])
def test_a_code_two_steps_away_is_refused(rt: Pimlico, clock: FixedClock, steps: int) -> None:
    me, secret = enrolled(rt, clock)
    clock.advance(3 * STEP)

    with pytest.raises(MfaCodeInvalid):
        mfa.verify(rt, actor=me, user_id=me.name, code=code_at(secret, clock.now() + steps * STEP))


# -- lockout --------------------------------------------------------------------------------


def test_five_failures_lock_verification_until_the_window_passes(
    rt: Pimlico, clock: FixedClock
) -> None:
    me, secret = enrolled(rt, clock)
    start = clock.now()
    for _ in range(5):
        with pytest.raises(MfaCodeInvalid):
            mfa.verify(rt, actor=me, user_id=me.name, code="000000x")
        clock.advance(timedelta(seconds=1))

    clock.advance(STEP)
    with pytest.raises(MfaLocked) as caught:  # even the right code, while locked
        mfa.verify(rt, actor=me, user_id=me.name, code=code_at(secret, clock.now()))
    assert caught.value.until == start + timedelta(minutes=15)
    assert caught.value.status == 429

    clock.set(start + timedelta(minutes=15))
    mfa.verify(rt, actor=me, user_id=me.name, code=code_at(secret, clock.now()))


def test_failures_are_counted_although_the_refusal_rolls_nothing_back(
    rt: Pimlico, clock: FixedClock
) -> None:
    me, _ = enrolled(rt, clock)
    with pytest.raises(MfaCodeInvalid):
        mfa.verify(rt, actor=me, user_id=me.name, code="not a code")

    with rt.reading() as s:
        row = s.scalars(select(MfaFactorRow).where(MfaFactorRow.user_id == me.name)).one()
    assert (row.failed_attempts, row.failures_since) == (1, clock.now())


# -- recovery codes -------------------------------------------------------------------------


def test_a_recovery_code_works_once(rt: Pimlico, clock: FixedClock) -> None:
    me, codes = recovery_codes(rt, clock)

    verification = mfa.verify(rt, actor=me, user_id=me.name, code=codes[3].upper())
    assert (verification.method, verification.recovery_codes_left) == ("recovery", 9)
    with pytest.raises(MfaCodeInvalid):
        mfa.verify(rt, actor=me, user_id=me.name, code=codes[3])


def test_recovery_codes_are_stored_hashed(rt: Pimlico, clock: FixedClock) -> None:
    _, codes = recovery_codes(rt, clock)

    with rt.reading() as s:
        hashes = s.scalars(select(MfaRecoveryCodeRow.code_hash)).all()
    assert len(hashes) == 10
    assert all(h.startswith("$argon2id$") for h in hashes)
    assert not any(code in h for h in hashes for code in codes)


# -- secrets at rest ------------------------------------------------------------------------


def test_the_secret_is_stored_encrypted(rt: Pimlico, clock: FixedClock) -> None:
    me = Actor.principal(user(rt, "alex").id)
    enrollment = mfa.enroll(rt, actor=me, user_id=me.name)

    with rt.reading() as s:
        stored = s.scalars(select(MfaFactorRow.secret)).one()
    assert enrollment.secret not in stored
    assert stored.startswith("gAAAAA")  # a Fernet token


def test_a_removed_factor_keeps_its_row_but_not_its_secret(rt: Pimlico, clock: FixedClock) -> None:
    me, _ = enrolled(rt, clock)
    mfa.remove(rt, actor=OPERATOR, user_id=me.name, reason="left the company")

    with rt.reading() as s:
        row = s.scalars(select(MfaFactorRow)).one()
    assert (row.secret, row.removed_at, row.remove_reason) == ("", clock.now(), "left the company")


def test_without_a_secret_key_enrolling_is_refused(migrated_url: str, clock: FixedClock) -> None:
    with Pimlico(Settings(database_url=migrated_url), clock=clock) as keyless:
        alex = user(keyless, "alex")
        with pytest.raises(SecretKeyNotConfigured):
            mfa.enroll(keyless, actor=OPERATOR, user_id=alex.id)


# -- step-up freshness ----------------------------------------------------------------------


def test_a_verification_is_fresh_inside_the_window_and_not_after(
    rt: Pimlico, clock: FixedClock
) -> None:
    me, secret = enrolled(rt, clock)
    assert mfa.fresh_verification(rt, user_id=me.name, at=clock.now()) is None
    verified = mfa.verify(rt, actor=me, user_id=me.name, code=code_at(secret, clock.now()))

    at = verified.verified_at
    assert mfa.fresh_verification(rt, user_id=me.name, at=at + timedelta(seconds=599)) == at
    assert mfa.fresh_verification(rt, user_id=me.name, at=at + timedelta(seconds=600)) is None


def test_removing_the_factor_ends_the_freshness_of_its_verifications(
    rt: Pimlico, clock: FixedClock
) -> None:
    me, secret = enrolled(rt, clock)
    mfa.verify(rt, actor=me, user_id=me.name, code=code_at(secret, clock.now()))

    mfa.remove(rt, actor=me, user_id=me.name, reason="new phone")

    assert mfa.fresh_verification(rt, user_id=me.name, at=clock.now()) is None


def test_removing_ones_own_confirmed_factor_needs_a_fresh_verification(
    rt: Pimlico, clock: FixedClock
) -> None:
    me, _ = enrolled(rt, clock)

    with pytest.raises(MfaStepUpRequired):
        mfa.remove(rt, actor=me, user_id=me.name, reason="new phone")


# -- who may act ----------------------------------------------------------------------------


def test_another_user_cannot_enrol_verify_or_remove_someones_factor(
    rt: Pimlico, clock: FixedClock
) -> None:
    alex, secret = enrolled(rt, clock)
    bob = Actor.principal(user(rt, "bob").id)

    with pytest.raises(PermissionDenied):
        mfa.enroll(rt, actor=bob, user_id=alex.name)
    with pytest.raises(PermissionDenied):
        mfa.verify(rt, actor=bob, user_id=alex.name, code=code_at(secret, clock.now()))
    with pytest.raises(PermissionDenied):
        mfa.remove(rt, actor=bob, user_id=alex.name, reason="mischief")


def test_a_user_administrator_may_remove_but_not_enrol_someones_factor(
    rt: Pimlico, clock: FixedClock
) -> None:
    alex, _ = enrolled(rt, clock)
    admin_ref = user(rt, "admin")
    assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ACTIVE,
        principal=admin_ref,
        target=Target.role(USER_ADMINISTRATOR.id, "/"),
        duration=HOUR,
        justification="help desk shift",
    )
    admin = Actor.principal(admin_ref.id)

    removed = mfa.remove(rt, actor=admin, user_id=alex.name, reason="lost phone").value
    assert removed.removed_at == clock.now()
    with pytest.raises(PermissionDenied):
        mfa.enroll(rt, actor=admin, user_id=alex.name)


# -- the audit ------------------------------------------------------------------------------


def test_every_mfa_write_is_audited_without_the_secret_or_any_code(
    rt: Pimlico, clock: FixedClock
) -> None:
    me = Actor.principal(user(rt, "alex").id)
    enrollment = mfa.enroll(rt, actor=me, user_id=me.name)
    first = code_at(enrollment.secret, clock.now())
    codes = mfa.confirm(rt, actor=me, user_id=me.name, code=first)
    clock.advance(STEP)
    second = code_at(enrollment.secret, clock.now())
    mfa.verify(rt, actor=me, user_id=me.name, code=second)
    with pytest.raises(MfaCodeReused):
        mfa.verify(rt, actor=me, user_id=me.name, code=second)
    mfa.verify(rt, actor=me, user_id=me.name, code=codes[0])
    mfa.remove(rt, actor=OPERATOR, user_id=me.name, reason="rotation")

    with rt.reading() as s:
        events = s.scalars(
            select(AuditEventRow)
            .where(AuditEventRow.target_type == "mfa_factor")
            .order_by(AuditEventRow.sequence)
        ).all()
    assert [e.action for e in events] == [
        "mfa.enroll",
        "mfa.confirm",
        "mfa.verify",
        "mfa.verify_failed",
        "mfa.verify",
        "mfa.remove",
    ]
    assert events[3].reason == "MfaCodeReused"
    text = " ".join(f"{e.before} {e.after} {e.reason}" for e in events)
    for secret in (enrollment.secret, first, second, *codes):
        assert secret not in text
