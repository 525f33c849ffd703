"""Approve requests: the inbox of what the viewer may decide now, the approval page that the
approval mails link to, approving and denying (with the justification the stage asks for),
and the requester who never decides their own request."""

from __future__ import annotations

from html import unescape

from pimlico.clock import FixedClock
from pimlico.demo import Demo
from pimlico.domain.model import TargetType
from pimlico.domain.requests import RequestStatus
from pimlico.services import decisions, requests, role_settings
from pimlico.services.runtime import Actor, Pimlico
from tests.portal.conftest import Visit
from tests.portal.test_requests import WHY, ask, fresh_alex, signed_in_alex, text


def may_purge(rt: Pimlico, user_id: str) -> bool:
    return decisions.check(
        rt, actor=None, principal_id=user_id, permission="mail.purge", scope="/apps/mail"
    ).allowed


def test_bobs_inbox_lists_alexs_request_with_why_the_ticket_and_for_how_long(
    rt: Pimlico, clock: FixedClock, demo: Demo, visit: Visit
) -> None:
    alex = fresh_alex(rt, clock, demo)
    asked = ask(rt, demo, alex)
    bob = visit("bob")

    inbox = bob.get("/portal/approvals")

    assert inbox.status_code == 200
    shown = text(bob)
    assert "Alex Analyst: Activate membership of Search and Purge PIM" in shown
    assert WHY in shown
    assert "ServiceNow INC-42" in shown
    assert "1 h" in shown
    assert "Times out" in shown
    assert "in 1 d" in shown
    assert f'href="/portal/approvals/{asked.request.id}"' in inbox.text


def test_the_approval_page_the_mails_link_to_asks_for_the_justification_the_stage_requires(
    rt: Pimlico, clock: FixedClock, demo: Demo, visit: Visit
) -> None:
    alex = fresh_alex(rt, clock, demo)
    asked = ask(rt, demo, alex)
    bob = visit("bob")

    page = bob.get(f"/portal/approvals/{asked.request.id}")

    assert page.status_code == 200
    shown = text(bob)
    assert "Asked by" in shown
    assert "Alex Analyst" in shown
    assert "Justification (required)" in shown
    assert "asks approvers to say why" in shown
    assert f'action="/portal/approvals/{asked.request.id}/approve"' in page.text
    assert f'formaction="/portal/approvals/{asked.request.id}/deny"' in page.text
    assert "required>" in page.text


def test_bob_approves_with_a_justification_and_alex_can_purge(
    rt: Pimlico, clock: FixedClock, demo: Demo, visit: Visit
) -> None:
    alex = fresh_alex(rt, clock, demo)
    asked = ask(rt, demo, alex)
    assert not may_purge(rt, alex.id)
    bob = visit("bob")
    path = f"/portal/approvals/{asked.request.id}"

    approved = bob.submit(path, f"{path}/approve", {"justification": "INC-42 checked"})

    assert approved.status_code == 303
    assert approved.headers["location"] == "/portal/approvals"
    inbox = unescape(bob.get("/portal/approvals").text)
    assert "You approved Alex Analyst's request for Search and Purge PIM." in inbox
    assert "Nothing is waiting for your decision." in inbox
    after = requests.get_request(rt, actor=Actor.principal(alex.id), request_id=asked.request.id)
    assert after.request.status is RequestStatus.PROVISIONED
    assert [(d.approver_id, d.justification) for d in after.decisions] == [
        (demo.users["bob"], "INC-42 checked")
    ]
    assert may_purge(rt, alex.id)
    mine = signed_in_alex(visit, clock, alex)
    mine.get(f"/portal/requests/{asked.request.id}")
    assert "by Bob Approver" in text(mine)
    assert "“INC-42 checked”" in text(mine)
    assert 'class="badge badge-provisioned"' in mine.get("/portal/requests").text


def test_a_decision_without_the_justification_the_stage_asks_for_is_refused_beside_the_form(
    rt: Pimlico, clock: FixedClock, demo: Demo, visit: Visit
) -> None:
    alex = fresh_alex(rt, clock, demo)
    asked = ask(rt, demo, alex)
    bob = visit("bob")
    path = f"/portal/approvals/{asked.request.id}"

    refused = bob.submit(path, f"{path}/approve", {"justification": "  "})

    assert refused.status_code == 400
    assert 'role="alert"' in refused.text
    assert 'data-rule="Required"' in refused.text
    assert 'id="justification-error"' in refused.text
    assert f'action="{path}/approve"' in refused.text  # the form is there to try again
    still = requests.get_request(rt, actor=Actor.principal(alex.id), request_id=asked.request.id)
    assert still.request.status is RequestStatus.PENDING_APPROVAL


def test_bob_denies_and_alex_reads_who_denied_and_why(
    rt: Pimlico, clock: FixedClock, demo: Demo, visit: Visit
) -> None:
    alex = fresh_alex(rt, clock, demo)
    asked = ask(rt, demo, alex)
    bob = visit("bob")
    path = f"/portal/approvals/{asked.request.id}"

    denied = bob.submit(path, f"{path}/deny", {"justification": "no such incident"})

    assert denied.status_code == 303
    assert denied.headers["location"] == "/portal/approvals"
    inbox = unescape(bob.get("/portal/approvals").text)
    assert "You denied Alex Analyst's request for Search and Purge PIM." in inbox
    after = requests.get_request(rt, actor=Actor.principal(alex.id), request_id=asked.request.id)
    assert after.request.status is RequestStatus.DENIED
    assert not may_purge(rt, alex.id)
    mine = signed_in_alex(visit, clock, alex)
    listed = mine.get("/portal/requests")
    assert 'class="badge badge-denied"' in listed.text
    assert "Denied" in text(mine)
    assert "by Bob Approver" in text(mine)
    assert "“no such incident”" in text(mine)
    again = bob.get(path)
    assert "/approve" not in again.text
    assert "There is no request here waiting for your decision." in unescape(again.text)


def test_a_request_already_decided_is_not_decided_again_and_the_page_says_so(
    rt: Pimlico, clock: FixedClock, demo: Demo, visit: Visit
) -> None:
    alex = fresh_alex(rt, clock, demo)
    asked = ask(rt, demo, alex)
    bob = visit("bob")
    path = f"/portal/approvals/{asked.request.id}"
    token = bob.csrf(path)
    requests.cancel(rt, actor=Actor.principal(alex.id), request_id=asked.request.id)

    late = bob.post(f"{path}/approve", {"justification": "ok"}, token=token)

    assert late.status_code == 404
    assert "There is no request here waiting for your decision." in unescape(late.text)
    assert "/approve" not in late.text
    after = requests.get_request(rt, actor=Actor.principal(alex.id), request_id=asked.request.id)
    assert after.request.status is RequestStatus.CANCELED
    assert after.decisions == ()


def test_someone_who_is_not_an_approver_sees_nothing_and_a_forged_decision_is_refused(
    rt: Pimlico, clock: FixedClock, demo: Demo, visit: Visit
) -> None:
    alex = fresh_alex(rt, clock, demo)
    asked = ask(rt, demo, alex)
    erin = visit("erin")
    path = f"/portal/approvals/{asked.request.id}"

    assert "Nothing is waiting for your decision." in unescape(erin.get("/portal/approvals").text)
    seen = erin.get(path)
    forged = erin.post(f"{path}/approve", {"justification": "sure"}, token=erin.csrf())

    for answer in (seen, forged):
        assert answer.status_code == 404
        page = unescape(answer.text)
        assert "There is no request here waiting for your decision." in page
        for secret in (WHY, "INC-42", "Search and Purge", "Alex Analyst"):
            assert secret not in page
        assert "/approve" not in answer.text
    after = requests.get_request(rt, actor=Actor.principal(alex.id), request_id=asked.request.id)
    assert after.request.status is RequestStatus.PENDING_APPROVAL
    assert after.decisions == ()


def test_a_requester_who_is_also_an_approver_never_sees_their_own_request_as_decidable(
    rt: Pimlico, clock: FixedClock, demo: Demo, visit: Visit
) -> None:
    group = demo.groups["Search and Purge PIM"]
    approvers = [{"type": "user", "id": demo.users[n]} for n in ("alex", "bob")]
    role_settings.update_policy(
        rt,
        actor=Actor.operator("test"),
        target_type=TargetType.GROUP_MEMBER,
        object_id=group,
        changes={
            "approval": {
                "stages": [{"approvers": approvers, "approver_justification_required": False}]
            }
        },
    )
    alex = fresh_alex(rt, clock, demo)
    asked = ask(rt, demo, alex)
    mine = signed_in_alex(visit, clock, alex)
    path = f"/portal/approvals/{asked.request.id}"

    inbox = mine.get("/portal/approvals")
    assert asked.request.id not in inbox.text
    assert "Nothing is waiting for your decision." in unescape(inbox.text)
    own = mine.get(path)
    assert own.status_code == 200
    assert "This is your own request: you cannot approve or deny it." in unescape(own.text)
    assert "It waits for Bob Approver." in unescape(own.text)
    assert "/approve" not in own.text
    assert "/deny" not in own.text
    forged = mine.post(
        f"{path}/approve", {"justification": "me"}, token=mine.csrf("/portal/requests")
    )
    assert forged.status_code == 403
    assert 'data-code="PermissionDenied"' in forged.text
    assert "your own request" in unescape(forged.text)
    assert "/approve" not in forged.text
    after = requests.get_request(rt, actor=Actor.principal(alex.id), request_id=asked.request.id)
    assert after.request.status is RequestStatus.PENDING_APPROVAL
    assert after.decisions == ()

    bob = visit("bob")
    assert f'href="{path}"' in bob.get("/portal/approvals").text
    decide = bob.get(path)
    assert "Justification (optional)" in unescape(decide.text)
    assert bob.submit(path, f"{path}/approve", {}).status_code == 303
    done = requests.get_request(rt, actor=Actor.principal(alex.id), request_id=asked.request.id)
    assert done.request.status is RequestStatus.PROVISIONED
