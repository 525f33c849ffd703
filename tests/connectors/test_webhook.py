"""The webhook connector against a real HTTP receiver on loopback that checks signatures."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any
from wsgiref.types import StartResponse, WSGIEnvironment

import httpx
import pydantic
import pytest

from pimlico.clock import FixedClock
from pimlico.connectors.base import ConnectorError, Member
from pimlico.connectors.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookConfig,
    WebhookConnector,
    build,
    sign,
    verify,
)
from tests.connectors.loopback import LoopbackServer

SECRET = "a-shared-hmac-key"
T0 = datetime(2026, 11, 22, 14, 35, 0, 250000, tzinfo=UTC)


@dataclass
class Delivery:
    """What the receiver got: the raw body and the two headers, as they came."""

    body: bytes
    timestamp: str
    signature: str

    @property
    def payload(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.body)
        return loaded


@dataclass
class Receiver:
    """A webhook receiver, as a deployer would write one: it verifies, then acts or refuses.

    It answers 401 to a delivery ``verify`` rejects, ``status`` to the others (204 by default),
    and keeps what it accepted and what it refused."""

    clock: FixedClock
    secret: str = SECRET
    status: int = 204
    accepted: list[Delivery] = field(default_factory=list)
    refused: list[Delivery] = field(default_factory=list)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        delivery = Delivery(
            body=body,
            timestamp=environ.get("HTTP_PIMLICO_TIMESTAMP", ""),
            signature=environ.get("HTTP_PIMLICO_SIGNATURE", ""),
        )
        authentic = verify(
            self.secret,
            timestamp=delivery.timestamp,
            signature=delivery.signature,
            body=delivery.body,
            now=self.clock.now(),
        )
        status = self.status if authentic else 401
        (self.accepted if authentic else self.refused).append(delivery)
        answer = b"" if status == 204 else json.dumps({"detail": f"said {status}"}).encode()
        start_response(
            f"{status} {HTTPStatus(status).phrase}", [("Content-Type", "application/json")]
        )
        return [answer]


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def receiver(clock: FixedClock) -> Receiver:
    return Receiver(clock=clock)


@pytest.fixture
def server(receiver: Receiver) -> Iterator[LoopbackServer]:
    with LoopbackServer(receiver) as server:
        yield server


@pytest.fixture
def connector(server: LoopbackServer, clock: FixedClock) -> Iterator[WebhookConnector]:
    config = WebhookConfig(url=f"{server.url}/hooks/pimlico", timeout_seconds=5)
    connector = WebhookConnector(config, secret=SECRET, clock=clock)
    yield connector
    connector.close()


def test_grant_posts_one_signed_delivery_the_receiver_accepts(
    receiver: Receiver, connector: WebhookConnector
) -> None:
    connector.grant("mail-purge", ["carol", "alex", "bob", "alex"])

    assert receiver.refused == []
    (delivery,) = receiver.accepted
    payload = delivery.payload
    assert payload["action"] == "grant"
    assert payload["object"] == "mail-purge"
    assert payload["identities"] == ["alex", "bob", "carol"]
    assert datetime.fromisoformat(payload["timestamp"]) == T0
    assert payload["timestamp"].endswith("Z")
    assert delivery.timestamp == str(int(T0.timestamp()))
    assert delivery.signature == sign(SECRET, timestamp=delivery.timestamp, body=delivery.body)


def test_revoke_posts_a_revoke_delivery_and_every_delivery_has_its_own_id(
    receiver: Receiver, connector: WebhookConnector
) -> None:
    connector.revoke("mail-purge", ["alex"])
    connector.revoke("mail-purge", ["alex"])

    first, second = (delivery.payload for delivery in receiver.accepted)
    assert first["action"] == second["action"] == "revoke"
    assert first["identities"] == ["alex"]
    assert first["id"] != second["id"]


def test_no_identities_sends_nothing(receiver: Receiver, connector: WebhookConnector) -> None:
    connector.grant("mail-purge", [])
    connector.revoke("mail-purge", ())

    assert receiver.accepted == receiver.refused == []


def test_identities_are_user_names_and_membership_cannot_be_listed(
    connector: WebhookConnector,
) -> None:
    members = [
        Member(principal_id="p1", user_name="alex", email="alex@example.org"),
        Member(principal_id="p2", user_name="bob"),
    ]

    assert connector.resolve(members) == {"p1": "alex", "p2": "bob"}
    assert connector.list_current("mail-purge") is None


def test_a_receiver_with_another_key_refuses_the_delivery(
    receiver: Receiver, connector: WebhookConnector
) -> None:
    receiver.secret = "some-other-key"

    with pytest.raises(ConnectorError) as refused:
        connector.grant("mail-purge", ["alex"])

    assert not refused.value.retryable
    assert "HTTP 401" in str(refused.value)
    assert len(receiver.refused) == 1


def test_a_delivery_replayed_outside_the_window_is_refused(
    receiver: Receiver, server: LoopbackServer, connector: WebhookConnector, clock: FixedClock
) -> None:
    connector.grant("mail-purge", ["alex"])
    (captured,) = receiver.accepted
    headers = {TIMESTAMP_HEADER: captured.timestamp, SIGNATURE_HEADER: captured.signature}

    clock.advance(timedelta(minutes=10))
    replayed = httpx.post(f"{server.url}/hooks/pimlico", content=captured.body, headers=headers)

    assert replayed.status_code == 401
    assert len(receiver.refused) == 1


def test_verify_rejects_a_tampered_body_a_stale_or_future_timestamp_and_a_bad_header() -> None:
    body = b'{"action":"grant","object":"mail-purge","identities":["alex"]}'
    timestamp = str(int(T0.timestamp()))
    signature = sign(SECRET, timestamp=timestamp, body=body)

    def check(**changes: Any) -> bool:
        arguments: dict[str, Any] = {
            "timestamp": timestamp,
            "signature": signature,
            "body": body,
            "now": T0,
        }
        return verify(SECRET, **(arguments | changes))

    assert check()
    assert check(now=T0 + timedelta(minutes=4))
    assert check(now=T0.replace(tzinfo=None))
    assert not check(body=body.replace(b"alex", b"eve"))
    assert not check(now=T0 + timedelta(minutes=6))
    assert not check(now=T0 - timedelta(minutes=6))
    assert check(now=T0 + timedelta(minutes=6), tolerance=timedelta(minutes=10))
    assert not check(timestamp=str(int(T0.timestamp()) + 1))
    assert not check(timestamp="soon")
    assert not check(timestamp="9" * 5000)
    assert not check(timestamp="١٧٦٣")  # Arabic-Indic digits: isdigit() but not ASCII
    assert not check(signature="")
    assert not check(signature=signature.replace("v1=", "v0="))
    assert not check(signature="v1=ünïcode")
    assert check(signature=f"v1=deadbeef, {signature}")
    assert not verify("another-key", timestamp=timestamp, signature=signature, body=body, now=T0)


@pytest.mark.parametrize("status", [503, 500, 429])
def test_an_unavailable_receiver_is_retryable(
    receiver: Receiver, connector: WebhookConnector, status: int
) -> None:
    receiver.status = status

    with pytest.raises(ConnectorError) as failed:
        connector.grant("mail-purge", ["alex"])

    assert failed.value.retryable
    assert f"HTTP {status}" in str(failed.value)


def test_a_receiver_refusing_the_request_is_not_retryable_and_says_why(
    receiver: Receiver, connector: WebhookConnector
) -> None:
    receiver.status = 400

    with pytest.raises(ConnectorError) as refused:
        connector.revoke("mail-purge", ["alex"])

    assert not refused.value.retryable
    assert "HTTP 400: said 400" in str(refused.value)
    assert "'mail-purge'" in str(refused.value)


def test_a_closed_port_is_retryable(clock: FixedClock) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    connector = WebhookConnector(
        WebhookConfig(url=f"http://127.0.0.1:{port}/hook"), secret=SECRET, clock=clock
    )
    try:
        with pytest.raises(ConnectorError) as refused:
            connector.grant("mail-purge", ["alex"])
    finally:
        connector.close()

    assert refused.value.retryable
    assert "ConnectError" in str(refused.value)


def test_a_receiver_that_never_answers_times_out_retryably(clock: FixedClock) -> None:
    # A listening socket nobody accepts from: the connection is made, no answer ever comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
        config = WebhookConfig(url=url, timeout_seconds=0.2)
        connector = WebhookConnector(config, secret=SECRET, clock=clock)
        try:
            with pytest.raises(ConnectorError) as timed_out:
                connector.grant("mail-purge", ["alex"])
        finally:
            connector.close()

    assert timed_out.value.retryable
    assert "timed out" in str(timed_out.value)


def test_without_a_key_nothing_is_sent_and_the_failure_is_not_retryable(
    receiver: Receiver, server: LoopbackServer
) -> None:
    connector = build({"url": f"{server.url}/hooks/pimlico"}, None)
    try:
        with pytest.raises(ConnectorError) as unsigned:
            connector.grant("mail-purge", ["alex"])
    finally:
        connector.close()

    assert not unsigned.value.retryable
    assert "no signing key" in str(unsigned.value)
    assert receiver.accepted == receiver.refused == []


def test_build_checks_the_configuration() -> None:
    with pytest.raises(pydantic.ValidationError):
        build({"url": "https://hooks.example.org/pimlico", "secret": "inline"}, "key")
    with pytest.raises(pydantic.ValidationError):
        build({"url": "hooks.example.org/pimlico"}, "key")

    connector = build({"url": "https://hooks.example.org/pimlico", "verify_tls": False}, "key")
    try:
        assert connector.kind == "webhook"
        assert not connector.config.verify_tls
    finally:
        connector.close()
