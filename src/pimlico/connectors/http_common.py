"""What the HTTP connectors (SCIM, webhook) share: URL checks, one request, its errors.

It owns the translation of everything httpx can raise and every non-2xx answer into
``ConnectorError``, so that both connectors classify failures alike:

- the network (connection refused or reset, a timeout, a dropped answer), 5xx, 408, 425 and
  429 answers are **retryable**: the system is down, overloaded or busy, and may recover;
- every other answer that is not 2xx (401, 403, 404, 400, a redirect, …) and a URL httpx
  cannot use are **not**: trying again sends the same refused request.

The message names what was attempted (the caller's ``what``) and the server's own explanation
(a SCIM error's or an RFC 9457 problem's ``detail``, else the start of the body). It never
contains request headers, so it cannot leak a bearer token or a signature.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from pimlico.connectors.base import ConnectorError

RETRYABLE_STATUSES = frozenset({408, 425, 429})
"""4xx answers that mean "not now" rather than "never": timeout, too early, too many requests."""

_DETAIL_LIMIT = 300


def check_http_url(value: str) -> str:
    """``value`` if it is an absolute http(s) URL with a host; ``ValueError`` otherwise."""
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise ValueError(f"not a URL: {exc}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("must be an absolute http:// or https:// URL")
    return value


def send(
    client: httpx.Client, method: str, url: str, *, what: str, **kwargs: Any
) -> httpx.Response:
    """Send one request; the 2xx answer, or ``ConnectorError`` saying what failed and whether
    trying again may help. ``what`` names the attempt (``"SCIM grant on group g1"``)."""
    try:
        response = client.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise ConnectorError(f"{what}: timed out ({type(exc).__name__})", retryable=True) from exc
    except httpx.UnsupportedProtocol as exc:
        raise ConnectorError(f"{what}: {exc}", retryable=False) from exc
    except httpx.TransportError as exc:
        # Refused, reset, unreachable, a TLS failure, a server that hung up mid-answer.
        raise ConnectorError(f"{what}: {type(exc).__name__}: {exc}", retryable=True) from exc
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise ConnectorError(f"{what}: {type(exc).__name__}: {exc}", retryable=False) from exc
    if response.is_success:
        return response
    status = response.status_code
    retryable = status >= 500 or status in RETRYABLE_STATUSES
    raise ConnectorError(f"{what}: HTTP {status}: {answer_detail(response)}", retryable=retryable)


def answer_detail(response: httpx.Response) -> str:
    """The server's explanation of an error answer, short enough for a log line."""
    text = response.text
    detail: object = None
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("title") or body.get("message")
    if isinstance(detail, str) and detail.strip():
        found = detail
    else:
        found = text.strip() or response.reason_phrase or "no detail"
    found = " ".join(found.split())
    if len(found) > _DETAIL_LIMIT:
        found = found[: _DETAIL_LIMIT - 1] + "…"
    return found
