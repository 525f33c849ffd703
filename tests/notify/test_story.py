"""The notifications of the DESIGN.md story, from events to mails received by a real SMTP
server: who gets what, following the target's notification rules (SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import func, select

from pimlico.clock import FixedClock
from pimlico.db.tables import JobRow
from pimlico.domain.model import AssignmentKind
from pimlico.domain.requests import Schedule, Ticket
from pimlico.jobs import events
from pimlico.jobs.outbox import PENDING
from pimlico.notify import SEND_JOB
from pimlico.services import accounts, approvals, assignments, directory
from pimlico.services.runtime import Pimlico
from tests.factories import HOUR
from tests.integration.test_requests import READER, activate, purge_group, with_mfa
from tests.integration.world import OPERATOR, group
from tests.notify.conftest import DAY, Notifier, bodies, eligible, mails, person, policy, ref
from tests.notify.servers import SmtpServer


def test_a_request_needing_approval_mails_the_approver_with_justification_ticket_and_link(
    rt: Pimlico, clock: FixedClock, smtp: SmtpServer, notifier: Notifier
) -> None:
    alex, bob = person(rt, "alex"), person(rt, "bob")
    target = purge_group(rt, bob)
    eligible(rt, ref(alex), target)
    with_mfa(rt, clock, alex)

    asked = activate(
        rt,
        alex,
        target,
        schedule=Schedule(duration=HOUR),
        justification="phishing campaign <INC-42>",
        ticket=Ticket("ServiceNow", "INC-42"),
    ).value
    notifier.run()

    [mail] = mails(smtp, "bob@example.org", "approval needed")
    assert mail["To"] == "bob@example.org"
    assert "Search and Purge PIM" in mail["Subject"]
    text, html = bodies(mail)
    link = f"https://pim.example.org/portal/approvals/{asked.request.id}"
    assert "phishing campaign <INC-42>" in text
    assert "ServiceNow INC-42" in text
    assert link in text
    assert "phishing campaign &lt;INC-42&gt;" in html
    assert f'href="{link}"' in html
    assert mails(smtp, "alex@example.org", "approval needed") == []


def test_approval_mails_the_requester_and_the_activation_reaches_the_administrators(
    rt: Pimlico, clock: FixedClock, smtp: SmtpServer, notifier: Notifier
) -> None:
    accounts.bootstrap_admin(
        rt, user_name="root", password="correct horse battery", email="root@example.org"
    )
    alex, bob = person(rt, "alex"), person(rt, "bob")
    target = purge_group(rt, bob)
    eligible(rt, ref(alex), target)
    with_mfa(rt, clock, alex)
    asked = activate(
        rt,
        alex,
        target,
        schedule=Schedule(duration=HOUR),
        justification="phishing campaign INC-42",
        ticket=Ticket("ServiceNow", "INC-42"),
    ).value
    notifier.run()

    approvals.approve(rt, actor=bob, request_id=asked.request.id, justification="looks right")
    notifier.run()

    [approved] = mails(smtp, "alex@example.org", "was approved")
    text, _ = bodies(approved)
    assert "Bob" in text
    assert "phishing campaign INC-42" in text
    [activated] = mails(smtp, "root@example.org", "activated")
    assert "Alex activated membership of Search and Purge PIM" in str(activated["Subject"])
    assert "ServiceNow INC-42" in bodies(activated)[0]


def test_an_assignee_group_hears_of_its_assignment_expiring_soon_and_expired(
    rt: Pimlico, clock: FixedClock, smtp: SmtpServer, notifier: Notifier
) -> None:
    carol, dave = person(rt, "carol"), person(rt, "dave", email=False)
    team = group(rt, "Readers", role_assignable=True)
    for member in (carol, dave):
        directory.add_member(rt, actor=OPERATOR, group_id=team.id, member=ref(member))
    made = assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ELIGIBLE,
        principal=team,
        target=READER,
        duration=30 * DAY,
    ).value
    assert made.end is not None
    for instant in (made.end - 14 * DAY, made.end - DAY, made.end):
        clock.set(instant)
        notifier.run()

    subjects = sorted(str(m["Subject"]) for m in smtp.inbox.to("carol@example.org"))
    assert subjects == [
        "PIM: you were assigned eligible Security Reader at /",
        "PIM: your eligible assignment to Security Reader at / ends in 1 day",
        "PIM: your eligible assignment to Security Reader at / ends in 14 days",
        "PIM: your eligible assignment to Security Reader at / expired",
    ]
    assert len(smtp.inbox.messages) == 4  # dave has no address: skipped, not an error
    with rt.reading() as s:
        assert s.scalar(select(func.count()).where(JobRow.status == "failed")) == 0


def test_rules_switched_off_send_nothing_and_additional_recipients_receive(
    rt: Pimlico, smtp: SmtpServer, notifier: Notifier
) -> None:
    alex, erin = person(rt, "alex"), person(rt, "erin")
    rule = {"default_recipients": False, "additional_recipients": ["secops@example.org"]}
    policy(rt, READER, {"notifications": {"eligible_assignment": {"requestor": rule}}})
    eligible(rt, ref(alex), READER)
    notifier.run()
    policy(rt, READER, {"notifications": {"eligible_assignment": {"requestor": {"level": "none"}}}})
    eligible(rt, ref(erin), READER)
    notifier.run()

    assert mails(smtp, "alex@example.org") == []
    assert mails(smtp, "erin@example.org") == []
    [copy] = mails(smtp, "secops@example.org")
    assert copy["Subject"] == "PIM: you were assigned eligible Security Reader at /"
    assert len(smtp.inbox.messages) == 1


def test_critical_only_keeps_the_approval_request_and_drops_the_outcome(
    rt: Pimlico, clock: FixedClock, smtp: SmtpServer, notifier: Notifier
) -> None:
    alex, bob = person(rt, "alex"), person(rt, "bob")
    target = purge_group(rt, bob)
    critical = {"level": "critical"}
    policy(
        rt, target, {"notifications": {"activation": {"approver": critical, "requestor": critical}}}
    )
    eligible(rt, ref(alex), target)
    with_mfa(rt, clock, alex)
    asked = activate(
        rt,
        alex,
        target,
        schedule=Schedule(duration=HOUR),
        justification="x",
        ticket=Ticket("T", "1"),
    ).value
    approvals.approve(rt, actor=bob, request_id=asked.request.id, justification="ok")
    notifier.run()

    assert len(mails(smtp, "bob@example.org", "approval needed")) == 1
    assert mails(smtp, "alex@example.org", "was approved") == []


def test_a_second_delivery_of_the_same_event_sends_nothing_more(
    rt: Pimlico, smtp: SmtpServer, notifier: Notifier
) -> None:
    alex = person(rt, "alex")
    eligible(rt, ref(alex), READER)
    notifier.run()
    assert len(mails(smtp, "alex@example.org")) == 1
    with rt.reading() as s:
        [created] = [e for e in events.published(s) if type(e).__name__ == "AssignmentCreated"]

    follow = notifier.consumers()["notify"]
    with rt.writing(OPERATOR) as w:
        follow(rt, w, created)
    with rt.reading() as s:
        waiting = s.scalar(
            select(func.count()).where(JobRow.kind == SEND_JOB, JobRow.status == PENDING)
        )
    notifier.run()

    assert waiting == 0
    assert len(mails(smtp, "alex@example.org")) == 1


def test_group_approvers_are_expanded_then_escalation_asks_more_and_a_denial_tells_why(
    rt: Pimlico, clock: FixedClock, smtp: SmtpServer, notifier: Notifier
) -> None:
    alex, frank, gina, hank = (person(rt, n) for n in ("alex", "frank", "gina", "hank"))
    approvers = group(rt, "Approvers")
    for member in (alex, frank, gina):
        directory.add_member(rt, actor=OPERATOR, group_id=approvers.id, member=ref(member))
    stage = {
        "approvers": [{"type": "group", "id": approvers.id}],
        "escalation_enabled": True,
        "escalation_approvers": [{"type": "user", "id": hank.name}],
        "escalation_after": "PT1H",
    }
    policy(
        rt,
        READER,
        {"activation": {"require_mfa": False}, "approval": {"required": True, "stages": [stage]}},
    )
    eligible(rt, ref(alex), READER)
    asked = activate(rt, alex, READER, schedule=Schedule(duration=HOUR), justification="audit")
    notifier.run()
    asked_first = {
        a
        for a in ("alex", "frank", "gina", "hank")
        if mails(smtp, f"{a}@example.org", "approval needed")
    }

    clock.advance(HOUR)
    notifier.run()
    escalated = mails(smtp, "hank@example.org", "approval needed")
    approvals.deny(rt, actor=frank, request_id=asked.value.request.id, justification="not now")
    notifier.run()

    assert asked_first == {"frank", "gina"}  # the requester is never asked
    assert len(escalated) == 1
    [denied] = mails(smtp, "alex@example.org", "was denied")
    text, _ = bodies(denied)
    assert "denied by Frank" in text
    assert "Reason: not now" in text


def test_a_stage_without_approvers_asks_whoever_may_approve_and_its_expiry_tells_the_requester(
    rt: Pimlico, clock: FixedClock, smtp: SmtpServer, notifier: Notifier
) -> None:
    accounts.bootstrap_admin(
        rt, user_name="root", password="correct horse battery", email="root@example.org"
    )
    alex = person(rt, "alex")
    stage = {"approvers": [], "timeout": "PT2H"}
    policy(
        rt,
        READER,
        {"activation": {"require_mfa": False}, "approval": {"required": True, "stages": [stage]}},
    )
    eligible(rt, ref(alex), READER)
    activate(rt, alex, READER, schedule=Schedule(duration=HOUR), justification="audit")
    notifier.run()
    asked = mails(smtp, "root@example.org", "approval needed")

    clock.advance(2 * HOUR)
    notifier.run()

    assert len(asked) == 1
    [expired] = mails(smtp, "alex@example.org", "expired")
    assert "Nobody decided your request" in bodies(expired)[0]
