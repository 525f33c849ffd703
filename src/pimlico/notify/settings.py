"""The notification settings: SMTP, chat webhooks, templates and the portal's address.

Read once from ``PIMLICO_*`` environment variables (``PIMLICO_SMTP_HOST``,
``PIMLICO_PUBLIC_URL``, …) by an entry point and passed in, as ``pimlico.settings`` does for
the rest; nothing in ``pimlico.notify`` reads the environment itself. With no SMTP host, email
is off: messages are still recorded, and marked skipped when their turn comes, never failed.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class SmtpSecurity(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"
    """Implicit TLS from the first byte (SMTPS, usually port 465)."""


class NotifySettings(BaseSettings):
    """Where and how notifications go."""

    model_config = SettingsConfigDict(env_prefix="PIMLICO_", secrets_dir=None, extra="ignore")

    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Pimlico's address as people reach it: links in messages start with it.",
    )
    smtp_host: str | None = Field(default=None, description="No host: email is off.")
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_security: SmtpSecurity = SmtpSecurity.STARTTLS
    smtp_user: str | None = Field(default=None, description="AUTH only when set.")
    smtp_password: SecretStr | None = None
    smtp_from: str = Field(default="Pimlico <pimlico@localhost>", description="The From header.")
    smtp_timeout: float = Field(default=10.0, gt=0, le=300)
    smtp_verify: bool = Field(
        default=True, description="Check the server's certificate and host name (TLS)."
    )
    smtp_ca_file: Path | None = Field(
        default=None, description="CA certificates to trust instead of the system's."
    )
    slack_webhook_url: SecretStr | None = Field(
        default=None, description="Slack-compatible incoming webhook for every chat event."
    )
    teams_webhook_url: SecretStr | None = Field(
        default=None, description="Teams-compatible incoming webhook for every chat event."
    )
    slack_webhook_urls: dict[str, SecretStr] = Field(
        default_factory=dict, description="Per message kind (JSON): overrides the Slack URL."
    )
    teams_webhook_urls: dict[str, SecretStr] = Field(
        default_factory=dict, description="Per message kind (JSON): overrides the Teams URL."
    )
    chat_kinds: list[str] | None = Field(
        default=None, description="Message kinds sent to chat (JSON list); none given: all."
    )
    webhook_timeout: float = Field(default=10.0, gt=0, le=300)
    notify_templates: Path | None = Field(
        default=None, description="A directory of templates searched before the shipped ones."
    )
    notify_max_attempts: int = Field(default=8, ge=1, le=100)
    notify_base_delay: float = Field(
        default=5.0, gt=0, description="Seconds before the first retry; doubled each time."
    )

    @property
    def email_enabled(self) -> bool:
        return bool(self.smtp_host)

    def chat_url(self, channel: str, kind: str) -> str | None:
        """The webhook URL of ``channel`` (``slack`` or ``teams``) for messages of ``kind``."""
        if self.chat_kinds is not None and kind not in self.chat_kinds:
            return None
        if channel == "slack":
            url = self.slack_webhook_urls.get(kind, self.slack_webhook_url)
        else:
            url = self.teams_webhook_urls.get(kind, self.teams_webhook_url)
        return None if url is None else url.get_secret_value()
