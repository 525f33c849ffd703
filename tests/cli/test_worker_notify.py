"""``pimlico worker`` sends the notifications its events call for: the wiring of the event
consumer, the job handlers and the sender, with a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from pimlico.cli import app
from tests.cli.conftest import Pimlico
from tests.notify.servers import SmtpServer

_REQUEST = re.compile(r"request ([0-9a-f-]{36}):")


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


def test_a_request_for_approval_is_mailed_to_its_approver_by_the_worker(
    pimlico: Pimlico, smtp: SmtpServer
) -> None:
    pimlico("user create alex --email alex@example.com")
    pimlico("user create bob --email bob@example.com")
    pimlico("group create Purge --role-assignable")
    pimlico("assignment add alex member:Purge --eligible --duration P30D")
    bob = re.search(r"bob\s.*?([0-9a-f-]{36})", pimlico("user list").stdout)
    assert bob is not None
    stages = json.dumps([{"approvers": [{"type": "user", "id": bob.group(1)}]}])
    pimlico(
        "settings set member:Purge --set activation.require_mfa=false "
        f"--set approval.required=true --set approval.stages={shlex.quote(stages)}"
    )
    asked = _REQUEST.search(
        pimlico("activate alex member:Purge --justification 'INC-7 phishing wave'").stdout
    )
    assert asked is not None
    assert smtp.inbox.to("bob@example.com") == []
    mailing = CliRunner(
        env={
            "PIMLICO_DATABASE_URL": f"sqlite:///{pimlico.database}",
            "PIMLICO_SMTP_HOST": "127.0.0.1",
            "PIMLICO_SMTP_PORT": str(smtp.port),
            "PIMLICO_SMTP_SECURITY": "none",
            "PIMLICO_PUBLIC_URL": "https://pim.example.com",
        }
    )
    ran = mailing.invoke(app, ["worker", "--once"])
    assert ran.exit_code == 0, ran.output
    # Bob's request to approve, and Alex's notice that he was made eligible.
    assert "sent 2 message(s)" in ran.stdout
    assert len(smtp.inbox.to("alex@example.com")) == 1
    [mail] = smtp.inbox.to("bob@example.com")
    text = mail.get_body(preferencelist=("plain",))
    assert text is not None
    content = text.get_content()
    assert "INC-7 phishing wave" in content
    assert f"https://pim.example.com/portal/approvals/{asked.group(1)}" in content
