"""Sending the recorded messages: SMTP outages and retries, TLS and AUTH, deployer templates,
Slack and Teams webhooks, administrator alerts — against real servers on loopback, on SQLite
and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from pimlico.clock import FixedClock
from pimlico.db.tables import JobRow
from pimlico.domain.requests import Schedule, Ticket
from pimlico.jobs.outbox import DONE, FAILED, PENDING, enqueue
from pimlico.notify import SEND_JOB
from pimlico.notify.sender import Sender
from pimlico.services import accounts, directory
from pimlico.services.provisioning_work import ALERT_JOB, ProvisioningFailed, encode_alert
from pimlico.services.runtime import Pimlico
from tests.integration.test_requests import READER, activate, purge_group, with_mfa
from tests.integration.world import OPERATOR
from tests.notify.conftest import (
    Notifier,
    bodies,
    eligible,
    mails,
    notify_settings,
    person,
    policy,
    ref,
)
from tests.notify.servers import Receiver, SmtpServer, self_signed, server_context


def send_jobs(rt: Pimlico) -> list[JobRow]:
    with rt.reading() as s:
        rows = list(s.scalars(select(JobRow).where(JobRow.kind == SEND_JOB)))
        s.expunge_all()
    return rows


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def test_with_smtp_down_the_message_is_retried_with_backoff_and_arrives_once_it_is_back(
    rt: Pimlico, clock: FixedClock
) -> None:
    server = SmtpServer()  # not started yet: connections are refused
    notifier = Notifier(rt, notify_settings(server))
    alex = person(rt, "alex")
    eligible(rt, ref(alex), READER)

    assert notifier.run() == 1
    [job] = send_jobs(rt)
    assert (job.status, job.attempts) == (PENDING, 1)
    assert "ConnectionRefusedError" in (job.last_error or "")
    assert clock.now() + timedelta(seconds=1) <= job.due_at <= clock.now() + timedelta(seconds=1.1)
    assert notifier.run() == 0  # not due again yet

    clock.advance(timedelta(seconds=2))
    server.start()
    try:
        assert notifier.run() == 1
    finally:
        server.stop()

    assert len(mails(server, "alex@example.org", "you were assigned")) == 1
    [job] = send_jobs(rt)
    assert (job.status, job.attempts, job.last_error) == (DONE, 2, None)


def test_a_message_that_keeps_failing_is_failed_after_the_last_attempt(
    rt: Pimlico, clock: FixedClock
) -> None:
    notifier = Notifier(rt, notify_settings(SmtpServer(), notify_max_attempts=2))
    eligible(rt, ref(person(rt, "alex")), READER)
    notifier.run()
    clock.advance(timedelta(seconds=2))
    notifier.run()

    [job] = send_jobs(rt)
    assert (job.status, job.attempts) == (FAILED, 2)


def test_starttls_and_auth_with_a_certificate_trusted_through_the_ca_file(
    rt: Pimlico, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    server = SmtpServer(
        tls_context=server_context(cert, key),
        require_starttls=True,
        login=("pimlico", "s3cret-pass"),
    ).start()
    try:
        settings = notify_settings(
            server,
            smtp_security="starttls",
            smtp_user="pimlico",
            smtp_password="s3cret-pass",
            smtp_ca_file=cert,
        )
        eligible(rt, ref(person(rt, "alex")), READER)
        Notifier(rt, settings).run()
    finally:
        server.stop()

    assert server.inbox.logins == ["pimlico"]
    [mail] = mails(server, "alex@example.org", "you were assigned")
    text, html = bodies(mail)
    assert "Security Reader" in text
    assert "<strong>eligible</strong>" in html


def test_implicit_tls_delivers_with_the_certificate_trusted_through_the_ca_file(
    rt: Pimlico, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    server = SmtpServer(ssl_context=server_context(cert, key)).start()
    try:
        settings = notify_settings(server, smtp_security="tls", smtp_ca_file=cert)
        eligible(rt, ref(person(rt, "alex")), READER)
        Notifier(rt, settings).run()
    finally:
        server.stop()

    assert len(mails(server, "alex@example.org", "you were assigned")) == 1


def test_a_certificate_nobody_trusts_gets_no_mail_through(rt: Pimlico, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server = SmtpServer(tls_context=server_context(cert, key), require_starttls=True).start()
    try:
        eligible(rt, ref(person(rt, "alex")), READER)
        Notifier(rt, notify_settings(server, smtp_security="starttls")).run()
    finally:
        server.stop()

    assert server.inbox.messages == []
    [job] = send_jobs(rt)
    assert job.status == PENDING
    assert "CERTIFICATE_VERIFY_FAILED" in (job.last_error or "")


def test_with_no_smtp_host_messages_are_recorded_as_skipped_not_failed(rt: Pimlico) -> None:
    eligible(rt, ref(person(rt, "alex")), READER)
    Notifier(rt, notify_settings(None)).run()

    [job] = send_jobs(rt)
    assert job.status == DONE
    assert job.last_error == "skipped: email is off (no PIMLICO_SMTP_HOST)"


def test_a_deployer_template_overrides_the_shipped_one_and_the_others_stay(
    rt: Pimlico, smtp: SmtpServer, tmp_path: Path
) -> None:
    (tmp_path / "assigned.subject.txt").write_text("[ACME] {{ assignment.target }} is yours\n")
    notifier = Notifier(rt, notify_settings(smtp, notify_templates=tmp_path))
    eligible(rt, ref(person(rt, "alex")), READER)
    notifier.run()

    [mail] = mails(smtp, "alex@example.org")
    assert mail["Subject"] == "[ACME] Security Reader at / is yours"
    assert "were made eligible for Security Reader at /" in bodies(mail)[0]


def test_a_write_goes_through_while_the_smtp_server_holds_a_message(rt: Pimlico) -> None:
    """The sender holds no transaction while it talks to the server, so the store's write
    lock is free: a write commits while the server sits on the message."""
    release = threading.Event()
    server = SmtpServer()
    server.inbox.hold = release
    server.start()
    notifier = Notifier(rt, notify_settings(server))
    eligible(rt, ref(person(rt, "alex")), READER)
    notifier.worker().run_once(rt.clock.now())
    sender = Sender(rt, notifier.settings, name="sender")
    sending = threading.Thread(target=sender.run_once)
    try:
        sending.start()
        assert server.inbox.holding.wait(10)
        written = directory.create_user(rt, actor=OPERATOR, user_name="bob").value
        assert sending.is_alive()
    finally:
        release.set()
        sending.join()
        sender.close()
        server.stop()

    assert written.user_name == "bob"
    [job] = send_jobs(rt)
    assert job.status == DONE
    assert len(mails(server, "alex@example.org")) == 1


def test_slack_and_teams_receive_well_formed_payloads_with_the_portal_link(
    rt: Pimlico, clock: FixedClock, smtp: SmtpServer, receiver: Receiver
) -> None:
    settings = notify_settings(
        smtp,
        slack_webhook_url=f"{receiver.url}/slack",
        teams_webhook_url=f"{receiver.url}/teams",
        chat_kinds=["approval_needed"],
    )
    alex, bob = person(rt, "alex"), person(rt, "bob")
    target = purge_group(rt, bob)
    eligible(rt, ref(alex), target)
    with_mfa(rt, clock, alex)
    asked = activate(
        rt,
        alex,
        target,
        schedule=Schedule(duration=timedelta(hours=1)),
        justification="phishing <campaign> & co",
        ticket=Ticket("ServiceNow", "INC-42"),
    ).value
    Notifier(rt, settings).run()

    link = f"https://pim.example.org/portal/approvals/{asked.request.id}"
    posts = {path: (content_type, body) for path, content_type, body in receiver.posts}
    assert sorted(posts) == ["/slack", "/teams"]  # only the kind chat was configured for
    slack_type, slack = posts["/slack"]
    assert slack_type == "application/json"
    assert slack["text"].startswith("PIM: Alex asks for membership of Search and Purge PIM")
    header, section, actions = slack["blocks"]
    assert header["type"] == "header"
    assert header["text"]["type"] == "plain_text"
    assert "phishing &lt;campaign&gt; &amp; co" in section["text"]["text"]
    assert "ServiceNow INC-42" in section["text"]["text"]
    assert actions["elements"][0]["url"] == link
    _, teams = posts["/teams"]
    assert teams["@type"] == "MessageCard"
    assert teams["@context"] == "https://schema.org/extensions"
    assert teams["title"] == header["text"]["text"]
    assert "phishing <campaign> & co" in teams["text"]
    assert teams["potentialAction"][0]["targets"] == [{"os": "default", "uri": link}]


def test_a_webhook_that_refuses_the_payload_fails_the_message_at_once(
    rt: Pimlico, smtp: SmtpServer, receiver: Receiver
) -> None:
    receiver.status = 400
    settings = notify_settings(smtp, slack_webhook_url=f"{receiver.url}/slack")
    eligible(rt, ref(person(rt, "alex")), READER)
    Notifier(rt, settings).run()

    [slack] = [j for j in send_jobs(rt) if j.payload["channel"] == "slack"]
    assert (slack.status, slack.attempts) == (FAILED, 1)
    assert "answered 400" in (slack.last_error or "")


def test_a_provisioning_failure_alerts_the_administrators(
    rt: Pimlico, clock: FixedClock, notifier: Notifier, smtp: SmtpServer
) -> None:
    accounts.bootstrap_admin(
        rt, user_name="root", password="correct horse battery", email="root@example.org"
    )
    alert = ProvisioningFailed(
        "corp-ldap", "cn=purge,ou=groups", "alex-id", True, 8, "server down", clock.now()
    )
    with rt.writing(OPERATOR) as w:
        payload = {"type": "ProvisioningFailed", "data": encode_alert(alert)}
        enqueue(w, kind=ALERT_JOB, payload=payload, due_at=w.at)
    notifier.run()

    [mail] = mails(smtp, "root@example.org", "provisioning into corp-ldap failed")
    text, _ = bodies(mail)
    assert "grant access in cn=purge,ou=groups" in text
    assert "server down" in text


def test_two_senders_at_once_send_each_message_once(rt: Pimlico, smtp: SmtpServer) -> None:
    copies = [f"copy{i}@example.org" for i in range(20)]
    rule = {"default_recipients": False, "additional_recipients": copies}
    policy(rt, READER, {"notifications": {"eligible_assignment": {"requestor": rule}}})
    notifier = Notifier(rt, notify_settings(smtp))
    eligible(rt, ref(person(rt, "alex")), READER)
    notifier.worker().run_once(rt.clock.now())
    senders = [Sender(rt, notifier.settings, name=f"sender{i}", batch=1) for i in range(2)]
    threads = [threading.Thread(target=sender.run_once) for sender in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for sender in senders:
        sender.close()

    assert sorted(to for rcpts, _ in smtp.inbox.messages for to in rcpts) == sorted(copies)
    assert {job.status for job in send_jobs(rt)} == {DONE}
