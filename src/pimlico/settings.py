"""Pimlico's settings, read once from ``PIMLICO_*`` environment variables and passed in.

Nothing deeper in the code reads the environment: entry points build a ``Settings`` and hand
it down. The one exception to "no side effects" is ``Settings.encryption_key``: on the embedded
development store only, it may create a key file (see its docstring).
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from pathlib import Path
from typing import Self

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pimlico.notify.settings import NotifySettings

log = logging.getLogger(__name__)

DEFAULT_DATABASE_URL = "sqlite:///./pimlico.db"
DEFAULT_KEY_FILE = Path("pimlico.key")
"""Where the embedded development store keeps its generated key: next to ``./pimlico.db``."""

_PLACEHOLDERS = frozenset(
    {"changeme", "change-me", "change_me", "secret", "password", "key", "todo", "xxx", "example"}
)


class SecretKeyMissing(Exception):
    """No secret key is configured for a store that needs one. (A deployment problem, not a
    caller's: so not a ``PimlicoError``; services turn it into one.)"""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PIMLICO_", secrets_dir=None, extra="ignore")

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        description="SQLAlchemy URL: sqlite:///path or postgresql+psycopg://user@host/db",
    )
    database_pool_size: int = Field(
        default=40,
        ge=1,
        le=1000,
        description=(
            "Connections each process keeps to PostgreSQL (no more are opened): as many as "
            "the server runs requests at once (its 40 worker threads), so that no request "
            "waits for one or pays for opening one."
        ),
    )
    max_nesting_depth: int = Field(
        default=8,
        ge=1,
        le=32,
        description="How deep groups may nest (a user in G1 in G2 … in Gn: n ≤ this).",
    )
    decision_max_staleness: float = Field(
        default=1.0,
        ge=0.0,
        le=3600.0,
        description=(
            "Seconds a decision asked without at_least_revision may lag behind the store; "
            "authorization of Pimlico's own operations never lags."
        ),
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description=(
            "The Fernet key that encrypts secrets at rest (TOTP secrets): 32 random bytes, "
            "URL-safe base64 (`python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'`)."
        ),
    )
    secret_key_file: Path | None = Field(
        default=None,
        description="A file holding the secret key instead (a Docker or Kubernetes secret).",
    )
    mfa_freshness: int = Field(
        default=600,
        ge=1,
        le=86400,
        description="Seconds an MFA verification counts as fresh for step-up.",
    )
    mfa_max_attempts: int = Field(
        default=5,
        ge=1,
        le=100,
        description="Failed MFA codes allowed per window; then verification is locked.",
    )
    mfa_attempt_window: int = Field(
        default=900,
        ge=1,
        le=86400,
        description="Seconds of the MFA attempt window (and of the lockout it starts).",
    )
    session_lifetime: int = Field(
        default=8 * 3600,
        ge=60,
        le=7 * 86400,
        description="Seconds a sign-in session (its bearer token or cookie) lasts.",
    )
    token_max_lifetime: int = Field(
        default=365 * 86400,
        ge=3600,
        le=5 * 365 * 86400,
        description="The longest lifetime a personal or service-account token may be given.",
    )
    token_cache_seconds: float = Field(
        default=2.0,
        ge=0.0,
        le=60.0,
        description=(
            "Seconds a process trusts a token it has read before reading it again: a token "
            "revoked through another process stops working at most this late."
        ),
    )
    signin_max_attempts: int = Field(
        default=5,
        ge=1,
        le=100,
        description="Failed sign-ins allowed per account per window; then sign-in is locked.",
    )
    signin_attempt_window: int = Field(
        default=900,
        ge=1,
        le=86400,
        description="Seconds of the sign-in attempt window (and of the lockout it starts).",
    )
    provisioning_max_attempts: int = Field(
        default=8,
        ge=1,
        le=100,
        description=(
            "Tries of one downstream grant or revocation before its state is `failed` "
            "(with the error kept) and administrators are alerted."
        ),
    )
    provisioning_base_delay: float = Field(
        default=1.0,
        gt=0.0,
        le=3600.0,
        description=(
            "Seconds before the first retry of a failed downstream call; doubled on each "
            "further failure, plus up to 10 % jitter."
        ),
    )
    provisioning_lease: float = Field(
        default=60.0,
        ge=0.1,
        le=3600.0,
        description=(
            "Seconds a dispatcher holds the provisioning work it took: if its process dies, "
            "another takes the work over after this."
        ),
    )
    reconcile_interval: float = Field(
        default=3600.0,
        ge=0.0,
        le=7 * 86400.0,
        description=(
            "Seconds between reconcile passes of the dispatcher (one also runs when it "
            "starts); 0: only at start and on demand (`pimlico reconcile`)."
        ),
    )
    notify: NotifySettings = Field(
        default_factory=NotifySettings,
        description=(
            "Notifications: PIMLICO_SMTP_*, PIMLICO_PUBLIC_URL, PIMLICO_NOTIFY_TEMPLATES, "
            "PIMLICO_SLACK_WEBHOOK_URL, PIMLICO_TEAMS_WEBHOOK_URL (docs/notifications.md)."
        ),
    )

    _key: bytes | None = PrivateAttr(default=None)

    @field_validator("secret_key")
    @classmethod
    def _sound_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_secret_key(value.get_secret_value())
        return value

    @field_validator("secret_key_file")
    @classmethod
    def _sound_key_file(cls, value: Path | None) -> Path | None:
        if value is not None:
            _read_key_file(value)
        return value

    @model_validator(mode="after")
    def _one_key(self) -> Self:
        if self.secret_key is not None and self.secret_key_file is not None:
            raise ValueError("give PIMLICO_SECRET_KEY or PIMLICO_SECRET_KEY_FILE, not both")
        return self

    def encryption_key(self) -> bytes:
        """The key that encrypts secrets at rest (a Fernet key, as its base64 text in bytes).

        Configured keys (``PIMLICO_SECRET_KEY`` or ``PIMLICO_SECRET_KEY_FILE``) were checked
        when the settings were built. Without one, nothing is derived (not from the database
        URL, not from the host): a key derived from something guessable protects nothing.
        Only the embedded development store (the default ``sqlite:///./pimlico.db``) gets a
        key of its own, generated once into ``./pimlico.key`` (mode 0600) next to the
        database and logged as such, so ``pimlico`` works out of the box on a laptop; the
        key file must travel with the database, as a real deployment's key must. Any other
        store without a key raises ``SecretKeyMissing``.
        """
        if self._key is not None:
            return self._key
        if self.secret_key is not None:
            self._key = check_secret_key(self.secret_key.get_secret_value())
        elif self.secret_key_file is not None:
            self._key = _read_key_file(self.secret_key_file)
        else:
            if self.database_url != DEFAULT_DATABASE_URL:
                raise SecretKeyMissing(
                    "no secret key: set PIMLICO_SECRET_KEY or PIMLICO_SECRET_KEY_FILE"
                )
            self._key = _embedded_key(DEFAULT_KEY_FILE)
        return self._key


def check_secret_key(text: str) -> bytes:
    """The key in ``text`` if it is 32 random-looking bytes in URL-safe base64; refuse
    placeholders (``changeme``, ``AAAA…``) and anything else."""
    text = text.strip()
    if text.lower() in _PLACEHOLDERS:
        raise ValueError("the secret key is a placeholder: generate a real one")
    try:
        raw = base64.urlsafe_b64decode(text.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ValueError("the secret key must be 32 bytes in URL-safe base64 (a Fernet key)")
    if len(set(raw)) < 8:
        raise ValueError("the secret key is a placeholder (too few distinct bytes)")
    return text.encode("ascii")


def _read_key_file(path: Path) -> bytes:
    try:
        return check_secret_key(path.read_text())
    except OSError as error:
        raise ValueError(f"cannot read the secret key file {path}: {error.strerror}") from None


def _embedded_key(path: Path) -> bytes:
    """Read the development key at ``path``, creating it (0600, never overwritten) if absent."""
    try:
        return check_secret_key(path.read_text())
    except FileNotFoundError:
        pass
    key = base64.urlsafe_b64encode(os.urandom(32))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return check_secret_key(path.read_text())
    with os.fdopen(fd, "w") as out:
        out.write(key.decode("ascii") + "\n")
    log.warning("generated a new secret key for the embedded store in %s", path.resolve())
    return key
