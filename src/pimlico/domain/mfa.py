"""The rules of multi-factor authentication that need no library: step-up freshness, attempt
limiting, and the format of recovery codes.

Pure: no clock (instants are passed in), no storage, no cryptography. TOTP itself and the
hashing of recovery codes are ``pimlico.services.mfa``'s, through their libraries.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

RECOVERY_CODE_COUNT = 10
"""How many recovery codes a confirmation hands out."""

RECOVERY_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
"""Crockford's base32: no i, l, o or u, so a code read aloud or copied by hand survives."""

_RECOVERY_HALF = 5
"""A code is two groups of five symbols, ``xxxxx-xxxxx``: 50 random bits."""

_TOTP_CODE = re.compile(r"^[0-9]{6}$")

# Crockford's decoding: the look-alikes read as the symbol they resemble.
_LOOK_ALIKES = str.maketrans({"i": "1", "l": "1", "o": "0"})


def is_fresh(verified_at: datetime | None, now: datetime, window: timedelta) -> bool:
    """Is a verification made at ``verified_at`` still fresh at ``now``?

    Fresh means ``verified_at <= now < verified_at + window``: a verification from the future
    (a clock that went back) does not count, and at exactly ``window`` later it has expired.
    """
    if verified_at is None:
        return False
    return verified_at <= now < verified_at + window


@dataclass(frozen=True, slots=True)
class Attempts:
    """Failed codes counted in a fixed window that opens with the first failure.

    ``limit`` failures within ``window`` of ``since`` lock verification until the window
    passes; a success, or a failure after the window, starts over. While locked nothing is
    counted, so hammering a locked factor does not extend its lock.
    """

    failures: int = 0
    since: datetime | None = None

    def locked_until(self, now: datetime, *, limit: int, window: timedelta) -> datetime | None:
        """When verification unlocks, if it is locked at ``now``; else ``None``."""
        if self.since is None or self.failures < limit:
            return None
        until = self.since + window
        return until if now < until else None

    def after_failure(self, now: datetime, *, window: timedelta) -> Attempts:
        if self.since is None or now >= self.since + window:
            return Attempts(1, now)
        return Attempts(self.failures + 1, self.since)

    def after_success(self) -> Attempts:
        return Attempts()


def new_recovery_codes(count: int = RECOVERY_CODE_COUNT) -> list[str]:
    """``count`` fresh random recovery codes, ``xxxxx-xxxxx``, distinct."""
    codes: set[str] = set()
    while len(codes) < count:
        symbols = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(2 * _RECOVERY_HALF))
        codes.add(f"{symbols[:_RECOVERY_HALF]}-{symbols[_RECOVERY_HALF:]}")
    return sorted(codes)


def normalise_recovery_code(text: str) -> str | None:
    """The canonical form of a recovery code as typed (any case, spaces or hyphens,
    look-alike letters), ``xxxxx-xxxxx``; ``None`` if it cannot be one."""
    compact = "".join(text.split()).replace("-", "").lower().translate(_LOOK_ALIKES)
    if len(compact) != 2 * _RECOVERY_HALF or any(c not in RECOVERY_ALPHABET for c in compact):
        return None
    return f"{compact[:_RECOVERY_HALF]}-{compact[_RECOVERY_HALF:]}"


def normalise_totp_code(text: str) -> str | None:
    """Six digits, as typed with spaces (``123 456``) or without; ``None`` otherwise."""
    compact = "".join(text.split())
    return compact if _TOTP_CODE.match(compact) else None
