"""``pimlico mfa``: enrol, confirm, verify and remove, as the operator, on SQLite."""

from __future__ import annotations

import re
from datetime import timedelta

import pyotp
import pytest

from pimlico.clock import FixedClock
from tests.cli.conftest import Pimlico

KEY = "q5wqT0Vf0mB3rXy2kZ8nN4pL7sD1gH6jC9vE2aR5tYU="
_SECRET = re.compile(r"^secret: ([A-Z2-7]+)$", re.MULTILINE)
_RECOVERY = re.compile(r"^\s+([0-9a-z]{5}-[0-9a-z]{5})$", re.MULTILINE)


@pytest.fixture
def cli(pimlico: Pimlico, monkeypatch: pytest.MonkeyPatch) -> Pimlico:
    monkeypatch.setenv("PIMLICO_SECRET_KEY", KEY)
    pimlico("user create alex")
    return pimlico


def enrol(cli: Pimlico) -> str:
    out = cli("mfa enroll alex").stdout
    match = _SECRET.search(out)
    assert match is not None, out
    return match.group(1)


def test_enroll_prints_the_secret_and_the_provisioning_uri_once(cli: Pimlico) -> None:
    out = cli("mfa enroll alex").stdout

    secret = _SECRET.search(out)
    assert secret is not None
    assert f"provisioning URI: otpauth://totp/Pimlico:alex?secret={secret.group(1)}" in out
    assert "unconfirmed" in out


def test_confirm_prints_ten_recovery_codes(cli: Pimlico, clock: FixedClock) -> None:
    secret = enrol(cli)

    out = cli(f"mfa confirm alex {pyotp.TOTP(secret).at(clock.now())}").stdout

    assert "confirmed the MFA factor of alex" in out
    assert len(_RECOVERY.findall(out)) == 10


def test_verify_accepts_a_fresh_code_and_then_a_recovery_code(
    cli: Pimlico, clock: FixedClock
) -> None:
    secret = enrol(cli)
    confirmed = cli(f"mfa confirm alex {pyotp.TOTP(secret).at(clock.now())}").stdout
    clock.advance(timedelta(seconds=30))

    totp = cli(f"mfa verify alex {pyotp.TOTP(secret).at(clock.now())}").stdout
    recovery = cli(f"mfa verify alex {_RECOVERY.findall(confirmed)[0]}").stdout

    assert "verified alex by totp at 2026-03-01T09:00:30Z; 10 recovery codes left" in totp
    assert "verified alex by recovery" in recovery
    assert "9 recovery codes left" in recovery


def test_remove_ends_the_factor_so_the_user_may_enrol_again(
    cli: Pimlico, clock: FixedClock
) -> None:
    secret = enrol(cli)
    cli(f"mfa confirm alex {pyotp.TOTP(secret).at(clock.now())}")

    out = cli("mfa remove alex --reason 'lost phone'").stdout

    assert "removed the MFA factor of alex" in out
    enrol(cli)


def test_a_wrong_code_is_one_red_line_and_exit_code_2(cli: Pimlico, clock: FixedClock) -> None:
    secret = enrol(cli)
    cli(f"mfa confirm alex {pyotp.TOTP(secret).at(clock.now())}")

    result = cli("mfa verify alex 12345x", code=2)

    assert result.stderr.strip().splitlines() == [
        "error: MfaCodeInvalid: not a 6-digit code nor a recovery code (xxxxx-xxxxx)"
    ]
    assert result.stdout == ""


def test_without_a_secret_key_enroll_says_which_setting_is_missing(
    pimlico: Pimlico, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PIMLICO_SECRET_KEY", raising=False)
    monkeypatch.delenv("PIMLICO_SECRET_KEY_FILE", raising=False)
    pimlico("user create alex")

    result = pimlico("mfa enroll alex", code=2)

    assert result.stderr.strip() == (
        "error: SecretKeyNotConfigured: no secret key: set PIMLICO_SECRET_KEY or "
        "PIMLICO_SECRET_KEY_FILE"
    )
