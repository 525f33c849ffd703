"""Sending one rendered message: email over SMTP, or a JSON POST to a chat webhook.

Email: ``smtplib`` with an ``EmailMessage`` (plain text, HTML alternative); security
``none``, ``starttls`` (refused if the server does not offer it) or ``tls`` (implicit); AUTH
when a user is set; the server's certificate checked against the system's CAs or
``smtp_ca_file`` unless ``smtp_verify`` is off. One connection per message: notifications
are few, and a connection kept open would go stale between them.

Chat: Slack-compatible (``text`` with ``blocks``) and Teams-compatible (an Office 365
connector ``MessageCard``) payloads, POSTed with httpx.

Errors: ``Permanent`` for what a retry cannot fix (a recipient refused with a 5xx code, a
webhook answering 4xx other than 408/429); anything else raised is worth retrying. It must not
touch the store (the ``Sender`` records outcomes).
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import httpx

from pimlico.notify.render import Rendered
from pimlico.notify.settings import NotifySettings, SmtpSecurity

_SLACK_HEADER = 150
_SLACK_SECTION = 3000


class Permanent(Exception):
    """Sending failed in a way a retry will not change."""


def email_message(settings: NotifySettings, to: str, rendered: Rendered) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = to
    message["Subject"] = rendered.subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=_domain_of(settings.smtp_from))
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    return message


def send_email(settings: NotifySettings, to: str, rendered: Rendered) -> None:
    host = settings.smtp_host
    if not host:
        raise Permanent("email is off (no PIMLICO_SMTP_HOST)")
    message = email_message(settings, to, rendered)
    context = tls_context(settings)
    timeout = settings.smtp_timeout
    smtp: smtplib.SMTP
    if settings.smtp_security is SmtpSecurity.TLS:
        smtp = smtplib.SMTP_SSL(host, settings.smtp_port, timeout=timeout, context=context)
    else:
        smtp = smtplib.SMTP(host, settings.smtp_port, timeout=timeout)
    with smtp:
        if settings.smtp_security is SmtpSecurity.STARTTLS:
            smtp.starttls(context=context)
        if settings.smtp_user:
            password = settings.smtp_password
            smtp.login(settings.smtp_user, "" if password is None else password.get_secret_value())
        try:
            smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as error:
            codes = [code for code, _ in error.recipients.values()]
            if all(500 <= code < 600 for code in codes):
                raise Permanent(f"recipient refused: {error.recipients}") from error
            raise


def tls_context(settings: NotifySettings) -> ssl.SSLContext:
    ca = None if settings.smtp_ca_file is None else str(settings.smtp_ca_file)
    context = ssl.create_default_context(cafile=ca)
    if not settings.smtp_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def chat_payload(channel: str, rendered: Rendered, link: str | None) -> dict[str, Any]:
    """The JSON body of a chat message for ``channel`` (``slack`` or ``teams``)."""
    subject, text = rendered.subject, rendered.text.strip()
    if channel == "slack":
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": subject[:_SLACK_HEADER]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _slack(text)[:_SLACK_SECTION]}},
        ]
        if link:
            button = {"type": "plain_text", "text": "Open in Pimlico"}
            blocks.append(
                {"type": "actions", "elements": [{"type": "button", "text": button, "url": link}]}
            )
        return {"text": _slack(subject), "blocks": blocks}
    card: dict[str, Any] = {
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": subject,
        "title": subject,
        "text": text.replace("\n", "  \n"),
    }
    if link:
        target = {"os": "default", "uri": link}
        card["potentialAction"] = [
            {"@type": "OpenUri", "name": "Open in Pimlico", "targets": [target]}
        ]
    return card


def post_chat(client: httpx.Client, url: str, body: Mapping[str, Any]) -> None:
    response = client.post(url, json=dict(body))
    status = response.status_code
    if 400 <= status < 500 and status not in (408, 429):
        raise Permanent(f"the webhook answered {status}: {response.text[:200]}")
    response.raise_for_status()


def _slack(text: str) -> str:
    """Slack's mrkdwn escapes: ``&``, ``<`` and ``>`` are control characters there."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _domain_of(address: str) -> str | None:
    """The domain of the From address, for the Message-ID (the local host name if none)."""
    _, at, domain = address.rpartition("@")
    return domain.strip(" >") or None if at else None
