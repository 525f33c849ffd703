"""The pure rules of MFA: freshness, attempt limiting, recovery-code format; and the key
settings that guard secrets at rest."""

from __future__ import annotations

import base64
import os
import stat
from datetime import timedelta
from pathlib import Path

import pydantic
import pytest
from pydantic import SecretStr

from pimlico.domain.mfa import (
    RECOVERY_ALPHABET,
    RECOVERY_CODE_COUNT,
    Attempts,
    is_fresh,
    new_recovery_codes,
    normalise_recovery_code,
    normalise_totp_code,
)
from pimlico.settings import SecretKeyMissing, Settings
from tests.factories import T0

WINDOW = timedelta(minutes=10)
LOCK = timedelta(minutes=15)
KEY = base64.urlsafe_b64encode(bytes(range(32))).decode()


# -- freshness ------------------------------------------------------------------------------


def test_a_verification_is_fresh_from_its_instant_until_the_window_ends() -> None:
    assert is_fresh(T0, T0, WINDOW)
    assert is_fresh(T0, T0 + WINDOW - timedelta(microseconds=1), WINDOW)


def test_a_verification_is_stale_once_the_window_has_passed() -> None:
    assert not is_fresh(T0, T0 + WINDOW, WINDOW)


def test_no_verification_is_never_fresh() -> None:
    assert not is_fresh(None, T0, WINDOW)


def test_a_verification_from_the_future_does_not_count() -> None:
    assert not is_fresh(T0 + timedelta(seconds=1), T0, WINDOW)


# -- attempt limiting -----------------------------------------------------------------------


def failures(n: int, *, step: timedelta = timedelta(seconds=1)) -> Attempts:
    attempts = Attempts()
    for i in range(n):
        attempts = attempts.after_failure(T0 + i * step, window=LOCK)
    return attempts


def test_fewer_failures_than_the_limit_do_not_lock() -> None:
    assert failures(4).locked_until(T0 + timedelta(seconds=5), limit=5, window=LOCK) is None


def test_the_limit_of_failures_locks_until_the_window_from_the_first_one_passes() -> None:
    attempts = failures(5)

    assert attempts.locked_until(T0 + timedelta(minutes=1), limit=5, window=LOCK) == T0 + LOCK
    assert attempts.locked_until(T0 + LOCK, limit=5, window=LOCK) is None


def test_a_failure_after_the_window_starts_a_new_count() -> None:
    attempts = failures(4).after_failure(T0 + LOCK, window=LOCK)

    assert attempts == Attempts(1, T0 + LOCK)


def test_a_success_clears_the_count() -> None:
    assert failures(3).after_success() == Attempts()


# -- codes ----------------------------------------------------------------------------------


def test_recovery_codes_are_ten_distinct_codes_of_two_groups_of_five() -> None:
    codes = new_recovery_codes()

    assert len(set(codes)) == RECOVERY_CODE_COUNT
    for code in codes:
        first, second = code.split("-")
        assert len(first) == len(second) == 5
        assert set(first + second) <= set(RECOVERY_ALPHABET)


def test_a_recovery_code_is_read_whatever_its_case_spacing_and_look_alike_letters() -> None:
    assert normalise_recovery_code(" ABCDE fgh1O ") == "abcde-fgh10"
    assert normalise_recovery_code("abcdefghIL") == "abcde-fgh11"
    assert normalise_recovery_code("abcde-fgh10") == "abcde-fgh10"


def test_text_that_cannot_be_a_recovery_code_is_refused() -> None:
    assert normalise_recovery_code("abcde-fgh1") is None
    assert normalise_recovery_code("abcde-fghu0") is None
    assert normalise_recovery_code("123456") is None


def test_a_totp_code_is_six_digits_spaces_allowed() -> None:
    assert normalise_totp_code("123 456") == "123456"
    assert normalise_totp_code("12345") is None
    assert normalise_totp_code("12345a") is None


# -- the secret key -------------------------------------------------------------------------


@pytest.mark.parametrize("placeholder", ["changeme", "secret", "A" * 43 + "=", "short"])
def test_a_placeholder_secret_key_is_refused(placeholder: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="secret"):
        Settings(secret_key=SecretStr(placeholder))


def test_a_secret_key_may_come_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text(KEY + "\n")

    settings = Settings(database_url="sqlite:///x.db", secret_key_file=path)

    assert settings.encryption_key() == KEY.encode()


def test_a_store_other_than_the_embedded_one_needs_a_configured_key() -> None:
    with pytest.raises(SecretKeyMissing):
        Settings(database_url="sqlite:///elsewhere.db").encryption_key()


def test_the_embedded_store_generates_its_key_once_into_a_private_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("PIMLICO_DATABASE_URL", "PIMLICO_SECRET_KEY", "PIMLICO_SECRET_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)

    first = Settings().encryption_key()
    second = Settings().encryption_key()

    assert first == second
    assert (tmp_path / "pimlico.key").read_text().strip() == first.decode()
    assert stat.S_IMODE(os.stat(tmp_path / "pimlico.key").st_mode) == 0o600
