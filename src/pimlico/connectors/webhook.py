"""The webhook connector: one signed HTTP POST per grant or revocation, for any other system.

It owns the delivery format and its signature, and ``verify``, which receivers call (and the
tests do) to check both. Identities are Pimlico user names; objects are whatever names the
receiver understands. A webhook cannot be asked who is a member, so ``list_current`` is
``None`` and reconciliation only reports.

A delivery is a POST of a JSON body::

    {"action": "grant" | "revoke", "object": "...", "identities": ["alex", ...],
     "id": "<unique delivery id>", "timestamp": "2026-11-22T14:35:00.123Z"}

with the headers ``Pimlico-Timestamp: <unix seconds>`` and
``Pimlico-Signature: v1=<hex HMAC-SHA256 over "{Pimlico-Timestamp}.{body}">``, keyed with the
connector's secret. The signed timestamp lets a receiver refuse a captured delivery replayed
later: ``verify`` accepts only a timestamp within ``tolerance`` of the receiver's clock. A
receiver may also remember ``id``s inside that window to refuse a replay within it. A retried
call is a new delivery (new id, new timestamp) with the same meaning; since grant and revoke are
set-based, receiving it twice changes nothing.

Any 2xx answer is success. Redirects are not followed: a signed delivery goes where it was
configured to go, or fails.

It must not know about assignments or the store, and raises only ``ConnectorError`` from an
operation (``build`` raises ``ValueError``, pydantic's ``ValidationError`` included).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pimlico.clock import Clock, SystemClock, as_utc
from pimlico.connectors.base import ConnectorError, Member
from pimlico.connectors.http_common import check_http_url, send

TIMESTAMP_HEADER = "Pimlico-Timestamp"
SIGNATURE_HEADER = "Pimlico-Signature"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE = timedelta(minutes=5)


class WebhookConfig(BaseModel):
    """Where deliveries go. The HMAC key is the secret, kept apart."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    verify_tls: bool = True

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_http_url(value)


def build(config: Mapping[str, object], secret: str | None) -> WebhookConnector:
    """A webhook connector from its stored configuration and its HMAC key.

    Without a key it can still be built (so that a configuration can be checked before its
    secret is set), but every delivery fails, not retryably: it never sends unsigned."""
    return WebhookConnector(WebhookConfig.model_validate(dict(config)), secret=secret)


def sign(secret: str, *, timestamp: str, body: bytes) -> str:
    """The ``Pimlico-Signature`` header value for a body sent at ``timestamp`` (unix seconds)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={digest.hexdigest()}"


def verify(
    secret: str,
    *,
    timestamp: str,
    signature: str,
    body: bytes,
    now: datetime,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> bool:
    """Whether a delivery is authentic and fresh: for receivers.

    ``timestamp`` and ``signature`` are the ``Pimlico-Timestamp`` and ``Pimlico-Signature``
    header values, ``body`` the raw request body (not re-serialised JSON), ``now`` the
    receiver's clock (naive means UTC, as everywhere in Pimlico). True only if the timestamp
    is within ``tolerance`` of ``now`` (either side) and one of the signature's
    comma-separated ``v1=`` values (several while a key is rotated) is the HMAC of the
    timestamp and body. The comparison takes constant time.
    """
    # Ten digits last until 2286; a longer header is refused before int() would have to parse
    # an attacker's thousands of digits (or raise past Python's digit limit).
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return False
    if abs(as_utc(now).timestamp() - int(timestamp)) > tolerance.total_seconds():
        return False
    expected = sign(secret, timestamp=timestamp, body=body).encode()
    matched = False
    for candidate in signature.split(","):
        # Compare every candidate, so the time taken does not say which one matched.
        matched |= hmac.compare_digest(candidate.strip().encode("utf-8", "replace"), expected)
    return matched


class WebhookConnector:
    """Deliveries to one receiver URL, signed with one key, over one HTTP client."""

    kind = "webhook"

    def __init__(
        self, config: WebhookConfig, *, secret: str | None, clock: Clock | None = None
    ) -> None:
        self.config = config
        self._secret = secret
        self._clock: Clock = clock or SystemClock()
        self._client = httpx.Client(
            headers={"User-Agent": "pimlico"},
            timeout=config.timeout_seconds,
            verify=config.verify_tls,
            follow_redirects=False,
        )

    def resolve(self, members: Collection[Member]) -> dict[str, str | None]:
        return {member.principal_id: member.user_name for member in members}

    def grant(self, obj: str, identities: Collection[str]) -> None:
        self._deliver("grant", obj, identities)

    def revoke(self, obj: str, identities: Collection[str]) -> None:
        self._deliver("revoke", obj, identities)

    def list_current(self, obj: str) -> frozenset[str] | None:
        return None

    def close(self) -> None:
        self._client.close()

    def _deliver(
        self, action: Literal["grant", "revoke"], obj: str, identities: Collection[str]
    ) -> None:
        values = sorted(set(identities))
        if not values:
            return
        what = f"webhook {action} of {len(values)} identity(ies) on {obj!r}"
        if not self._secret:
            raise ConnectorError(f"{what}: no signing key is configured", retryable=False)
        at = self._clock.now().astimezone(UTC)
        payload = {
            "action": action,
            "object": obj,
            "identities": values,
            "id": str(uuid.uuid4()),
            "timestamp": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        timestamp = str(int(at.timestamp()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret, timestamp=timestamp, body=body),
        }
        send(self._client, "POST", self.config.url, what=what, content=body, headers=headers)
