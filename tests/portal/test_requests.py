"""My requests: the viewer's own requests with their approval's standing, one request in
full, and canceling while pending; nobody else sees them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from html import unescape

import pyotp
import pytest

from pimlico.clock import FixedClock
from pimlico.demo import Demo
from pimlico.domain.catalogue import SECURITY_READER
from pimlico.domain.model import GROUP_SCOPE, AssignmentKind, Target, TargetType
from pimlico.domain.requests import RequestAction, RequestStatus, Schedule, Ticket
from pimlico.services import mfa, requests
from pimlico.services.request_records import RequestView
from pimlico.services.runtime import Actor, Pimlico
from pimlico.web.views import requests as requests_views
from tests.portal.conftest import Portal, Visit, enrol_mfa

STEP = timedelta(seconds=30)
HOUR = timedelta(hours=1)
WHY = "phishing campaign INC-42"


@dataclass
class Alex:
    """Alex with a fresh MFA verification, and the code generator for signing in."""

    id: str
    totp: pyotp.TOTP


def fresh_alex(rt: Pimlico, clock: FixedClock, demo: Demo) -> Alex:
    alex = demo.users["alex"]
    totp = enrol_mfa(rt, alex)
    clock.advance(STEP)
    mfa.verify(rt, actor=Actor.principal(alex), user_id=alex, code=totp.at(clock.now()))
    return Alex(alex, totp)


def ask(
    rt: Pimlico,
    demo: Demo,
    alex: Alex,
    *,
    target: Target | None = None,
    action: RequestAction = RequestAction.SELF_ACTIVATE,
) -> RequestView:
    """Alex asks (through the use case the API calls) for the Search and Purge membership."""
    purge = Target(TargetType.GROUP_MEMBER, demo.groups["Search and Purge PIM"], GROUP_SCOPE)
    return requests.submit(
        rt,
        actor=Actor.principal(alex.id),
        action=action,
        kind=AssignmentKind.ACTIVE,
        target=target or purge,
        schedule=Schedule(duration=HOUR) if action is RequestAction.SELF_ACTIVATE else None,
        justification=WHY,
        ticket=Ticket("ServiceNow", "INC-42"),
    ).value


def signed_in_alex(visit: Visit, clock: FixedClock, alex: Alex) -> Portal:
    clock.advance(STEP)
    return visit("alex", code=alex.totp.at(clock.now()))


def text(page: Portal) -> str:
    assert page.last is not None
    return unescape(page.last.text)


def test_my_requests_shows_a_pending_request_waiting_for_bob_with_its_facts(
    rt: Pimlico, clock: FixedClock, demo: Demo, visit: Visit
) -> None:
    alex = fresh_alex(rt, clock, demo)
    asked = ask(rt, demo, alex)
    portal = signed_in_alex(visit, clock, alex)

    listed = portal.get("/portal/requests")

    assert listed.status_code == 200
    shown = text(portal)
    assert "Activate membership of Search and Purge PIM" in shown
    assert 'class="badge badge-pending_approval"' in listed.text
    assert "Stage 1 of 1, waiting for Bob Approver" in shown
    assert WHY in shown
    assert "ServiceNow INC-42" in shown
    assert "1 h" in shown
    assert f'href="/portal/requests/{asked.request.id}"' in listed.text
    assert "Times out" in shown


def test_one_request_in_full_shows_its_history_and_a_cancel_form_to_its_requester(
    rt: Pimlico, clock: FixedClock, demo: Demo, visit: Visit
) -> None:
    alex = fresh_alex(rt, clock, demo)
    asked = ask(rt, demo, alex)
    portal = signed_in_alex(visit, clock, alex)

    detail = portal.get(f"/portal/requests/{asked.request.id}")

    assert detail.status_code == 200
    shown = text(portal)
    assert "Activate membership of Search and Purge PIM" in shown
    assert "waiting for Bob Approver" in shown
    assert "History" in shown
    assert "submitted" in shown
    assert f'action="/portal/requests/{asked.request.id}/cancel"' in detail.text


def test_the_requester_cancels_a_pending_request_and_reads_a_confirmation(
    rt: Pimlico, clock: FixedClock, demo: Demo, visit: Visit
) -> None:
    alex = fresh_alex(rt, clock, demo)
    asked = ask(rt, demo, alex)
    portal = signed_in_alex(visit, clock, alex)
    path = f"/portal/requests/{asked.request.id}"

    canceled = portal.submit(path, f"{path}/cancel", {"reason": "found another way"})

    assert canceled.status_code == 303
    assert canceled.headers["location"] == path
    after = requests.get_request(rt, actor=Actor.principal(alex.id), request_id=asked.request.id)
    assert after.request.status is RequestStatus.CANCELED
    assert after.request.history[-1].reason == "found another way"
    page = portal.get(path)
    shown = text(portal)
    assert "You canceled your request for Search and Purge PIM." in shown
    assert 'class="badge badge-canceled"' in page.text
    assert "/cancel" not in page.text
    assert "found another way" in shown


def test_a_request_no_longer_pending_cannot_be_canceled_and_the_page_says_why(
    rt: Pimlico, clock: FixedClock, demo: Demo, visit: Visit
) -> None:
    alex = fresh_alex(rt, clock, demo)
    asked = ask(rt, demo, alex)
    portal = signed_in_alex(visit, clock, alex)
    path = f"/portal/requests/{asked.request.id}"
    token = portal.csrf(path)
    requests.cancel(rt, actor=Actor.principal(alex.id), request_id=asked.request.id)

    again = portal.post(f"{path}/cancel", {}, token=token)

    assert again.status_code == 400
    assert 'data-code="RequestNotCancelable"' in again.text
    assert 'role="alert"' in again.text


def test_someone_else_cannot_see_alexs_request_and_learns_nothing_of_it(
    rt: Pimlico, clock: FixedClock, demo: Demo, visit: Visit
) -> None:
    alex = fresh_alex(rt, clock, demo)
    asked = ask(rt, demo, alex)
    erin = visit("erin")
    path = f"/portal/requests/{asked.request.id}"

    seen = erin.get(path)
    unknown = erin.get("/portal/requests/00000000-0000-0000-0000-000000000000")
    forged = erin.post(f"{path}/cancel", {}, token=erin.csrf("/portal/requests"))

    for answer in (seen, unknown, forged):
        assert answer.status_code == 404
        page = unescape(answer.text)
        assert "There is no request here that you may see." in page
        for secret in (WHY, "INC-42", "Search and Purge", "Alex Analyst", "Bob Approver"):
            assert secret not in page
    still = requests.get_request(rt, actor=Actor.principal(alex.id), request_id=asked.request.id)
    assert still.request.status is RequestStatus.PENDING_APPROVAL
    assert "You have not asked for anything yet." in unescape(erin.get("/portal/requests").text)


def test_my_requests_are_newest_first_filtered_by_status_and_paged(
    rt: Pimlico,
    clock: FixedClock,
    demo: Demo,
    visit: Visit,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(requests_views, "PAGE", 2)
    alex = fresh_alex(rt, clock, demo)
    reader = Target.role(SECURITY_READER.id)
    activated = ask(rt, demo, alex, target=reader)
    clock.advance(timedelta(minutes=6))  # an activation ends early after 5 minutes at least
    ended = ask(rt, demo, alex, target=reader, action=RequestAction.SELF_DEACTIVATE)
    clock.advance(timedelta(minutes=1))
    pending = ask(rt, demo, alex)
    assert activated.request.status is RequestStatus.PROVISIONED
    assert ended.request.status is RequestStatus.REVOKED
    portal = signed_in_alex(visit, clock, alex)

    first = portal.get("/portal/requests")
    order = [pending.request.id, ended.request.id, activated.request.id]
    assert first.text.index(order[0]) < first.text.index(order[1])
    assert order[2] not in first.text
    assert "Deactivate Security Reader" in text(portal)
    older = first.text.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0]
    second = portal.get(unescape(older))
    assert second.status_code == 200
    assert order[2] in second.text
    assert order[0] not in second.text
    assert "Activate Security Reader" in text(portal)
    assert 'rel="next"' not in second.text

    filtered = portal.get("/portal/requests?status=pending_approval")
    assert order[0] in filtered.text
    assert order[1] not in filtered.text
    assert order[2] not in filtered.text
    assert 'value="pending_approval" selected' in filtered.text
    none = portal.get("/portal/requests?status=denied")
    assert "You have no requests with this status." in unescape(none.text)
    bad = portal.get("/portal/requests?status=whatever")
    assert bad.status_code == 400
    assert "There is no such status." in unescape(bad.text)
