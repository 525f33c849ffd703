"""My roles: the eligible and active assignments a person holds (directly and through their
groups), and the self-service requests on them — activate, deactivate, extend, renew — as a
browser without JavaScript sends them, on the demo directory."""

from __future__ import annotations

import base64
import re
from datetime import timedelta

import pyotp

from pimlico.clock import FixedClock
from pimlico.demo import Demo
from pimlico.domain.catalogue import SECURITY_READER
from pimlico.domain.model import AssignmentKind, PrincipalRef, PrincipalType, Target
from pimlico.domain.requests import RequestStatus
from pimlico.services import assignments, decisions, requests
from pimlico.services.runtime import Actor, Pimlico
from tests.portal.conftest import Portal, Visit, enrol_mfa

STEP = timedelta(seconds=30)
SP_PIM = "Search and Purge PIM"


def _row(page: str, name: str) -> str:
    """The table row of ``page`` that names ``name``."""
    for row in re.findall(r"<tr data-assignment=.*?</tr>", page, flags=re.S):
        if f"<strong>{name}</strong>" in row:
            return str(row)
    raise AssertionError(f"no row for {name}")


def _eligible_id(page: str, name: str) -> str:
    found = re.search(r'data-assignment="([^"]+)"', _row(page, name))
    assert found
    return found.group(1)


def _section(page: str, title: str) -> str:
    found = re.search(rf'<h2 id="{title}-title">.*?</section>', page, flags=re.S)
    assert found, title
    return found.group(0)


def _alex_with_mfa(rt: Pimlico, demo: Demo, visit: Visit) -> tuple[Portal, pyotp.TOTP]:
    """Alex signed in before enrolling (so no verification is fresh), then enrolled."""
    alex = visit("alex")
    totp = enrol_mfa(rt, demo.users["alex"])
    return alex, totp


def _actives(rt: Pimlico, user_id: str) -> list[str]:
    found = assignments.list_assignments(
        rt,
        actor=Actor.operator("test"),
        principal=PrincipalRef(PrincipalType.USER, user_id),
        kind=AssignmentKind.ACTIVE,
    )
    return [a.target.object_id for a in found]


def test_alex_sees_security_reader_and_search_and_purge_pim_as_eligible(
    demo: Demo, visit: Visit
) -> None:
    page = visit("alex").get("/portal/roles")
    assert page.status_code == 200
    eligible = _section(page.text, "eligible")
    assert "Security Reader" in eligible
    assert SP_PIM in eligible
    assert "group membership" in _row(eligible, SP_PIM)
    assert "<code>/</code>" in _row(eligible, "Security Reader")
    assert "ends in 365 d" in _row(eligible, "Security Reader")
    assert 'aria-label="Activate Security Reader"' in eligible
    assert "Nothing is active for you now." in _section(page.text, "active")


def test_a_person_with_nothing_reads_so_in_plain_words(demo: Demo, visit: Visit) -> None:
    page = visit("bob").get("/portal/roles").text
    assert "You have no eligible roles or group memberships." in page
    assert "Nothing is active for you now." in page


def test_the_security_reader_form_asks_only_for_the_duration_and_the_mfa_code(
    rt: Pimlico, demo: Demo, visit: Visit
) -> None:
    alex, _ = _alex_with_mfa(rt, demo, visit)
    roles = alex.get("/portal/roles").text
    form = alex.get(f"/portal/roles/activate?assignment={_eligible_id(roles, 'Security Reader')}")
    assert form.status_code == 200
    assert "Not needed: it is active as soon as you submit." in form.text
    assert 'name="justification"' not in form.text
    assert 'name="ticket_system"' not in form.text
    assert 'name="code"' in form.text
    options = re.findall(r'<option value="([^"]+)"( selected)?>', form.text)
    assert options[-1] == ("PT8H", " selected")  # up to the maximum, the maximum by default
    assert ("PT9H", "") not in options


def test_activating_security_reader_without_a_fresh_verification_is_refused_and_writes_nothing(
    rt: Pimlico, demo: Demo, visit: Visit
) -> None:
    alex, _ = _alex_with_mfa(rt, demo, visit)
    assignment = _eligible_id(alex.get("/portal/roles").text, "Security Reader")
    refused = alex.submit(
        f"/portal/roles/activate?assignment={assignment}",
        "/portal/roles/activate",
        {"assignment": assignment, "duration": "PT2H"},
    )
    assert refused.status_code == 400
    assert 'data-rule="MfaRule"' in refused.text
    assert "Verify a code from your authenticator app" in refused.text
    assert 'name="code"' in refused.text  # the form again, with the code field
    assert _actives(rt, demo.users["alex"]) == []
    mine = requests.list_requests(rt, actor=Actor.principal(demo.users["alex"]), mine=True)
    assert mine == []


def test_activating_security_reader_with_a_code_makes_it_active_until_its_end(
    rt: Pimlico, demo: Demo, visit: Visit, clock: FixedClock
) -> None:
    alex, totp = _alex_with_mfa(rt, demo, visit)
    assignment = _eligible_id(alex.get("/portal/roles").text, "Security Reader")
    clock.advance(STEP)
    done = alex.submit(
        f"/portal/roles/activate?assignment={assignment}",
        "/portal/roles/activate",
        {"assignment": assignment, "duration": "PT2H", "code": totp.at(clock.now())},
    )
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/portal/roles"
    assert _actives(rt, demo.users["alex"]) == [SECURITY_READER.id]
    page = alex.get("/portal/roles").text
    assert "Security Reader is active until 11:00." in page  # T0 is 09:00 UTC
    active = _row(_section(page, "active"), "Security Reader")
    assert "ends in 2 h" in active
    assert "activated by you" in active
    assert 'aria-label="Deactivate Security Reader"' in active
    eligible = _row(_section(page, "eligible"), "Security Reader")
    assert "Activate" not in eligible
    assert "Already active" in eligible


def test_the_search_and_purge_pim_form_asks_for_a_justification_and_a_ticket_and_names_bob(
    rt: Pimlico, demo: Demo, visit: Visit
) -> None:
    alex, _ = _alex_with_mfa(rt, demo, visit)
    assignment = _eligible_id(alex.get("/portal/roles").text, SP_PIM)
    form = alex.get(f"/portal/roles/activate?assignment={assignment}").text
    assert 'name="justification"' in form
    assert 'name="ticket_system"' in form
    assert 'name="ticket_number"' in form
    assert "Needed: Bob Approver must approve" in form
    back = f"/portal/roles/activate%3Fassignment%3D{assignment}"
    assert f'href="/portal/security/verify?next={back}"' in form  # step-up, then back here
    assert 'autocomplete="one-time-code"' in form
    assert re.findall(r'<option value="([^"]+)" selected>', form) == ["PT2H"]


def test_asking_for_search_and_purge_pim_without_a_justification_names_the_rule_beside_it(
    rt: Pimlico, demo: Demo, visit: Visit, clock: FixedClock
) -> None:
    alex, totp = _alex_with_mfa(rt, demo, visit)
    assignment = _eligible_id(alex.get("/portal/roles").text, SP_PIM)
    clock.advance(STEP)
    refused = alex.submit(
        f"/portal/roles/activate?assignment={assignment}",
        "/portal/roles/activate",
        {
            "assignment": assignment,
            "duration": "PT1H",
            "ticket_system": "ServiceNow",
            "ticket_number": "INC-42",
            "code": totp.at(clock.now()),
        },
    )
    assert refused.status_code == 400
    assert 'data-rule="JustificationRule"' in refused.text
    assert 'data-rule="TicketingRule"' not in refused.text
    assert '<p class="field-error" id="justification-error">' in refused.text
    assert 'value="INC-42"' in refused.text  # what was typed stays
    assert requests.list_requests(rt, actor=Actor.principal(demo.users["alex"]), mine=True) == []


def test_asking_for_search_and_purge_pim_waits_for_bob(
    rt: Pimlico, demo: Demo, visit: Visit, clock: FixedClock
) -> None:
    alex, totp = _alex_with_mfa(rt, demo, visit)
    assignment = _eligible_id(alex.get("/portal/roles").text, SP_PIM)
    clock.advance(STEP)
    done = alex.submit(
        f"/portal/roles/activate?assignment={assignment}",
        "/portal/roles/activate",
        {
            "assignment": assignment,
            "duration": "PT2H",
            "justification": "phishing campaign",
            "ticket_system": "ServiceNow",
            "ticket_number": "INC-42",
            "code": totp.at(clock.now()),
        },
    )
    assert done.status_code == 303, done.text
    (mine,) = requests.list_requests(rt, actor=Actor.principal(demo.users["alex"]), mine=True)
    assert mine.request.status is RequestStatus.PENDING_APPROVAL
    assert mine.request.ticket is not None
    assert mine.request.ticket.number == "INC-42"
    assert done.headers["location"] == f"/portal/requests/{mine.request.id}"
    flash = alex.client.cookies.get("pimlico_flash")
    assert flash is not None
    assert base64.urlsafe_b64decode(flash).decode() == (
        "Your request is waiting for approval by Bob Approver."
    )


def test_deactivating_ends_the_activation_and_the_access_with_it(
    rt: Pimlico, demo: Demo, visit: Visit, clock: FixedClock
) -> None:
    alex, totp = _alex_with_mfa(rt, demo, visit)
    user_id = demo.users["alex"]
    assignment = _eligible_id(alex.get("/portal/roles").text, "Security Reader")
    clock.advance(STEP)
    alex.submit(
        f"/portal/roles/activate?assignment={assignment}",
        "/portal/roles/activate",
        {"assignment": assignment, "duration": "PT8H", "code": totp.at(clock.now())},
    )

    def reads() -> bool:
        return decisions.check(
            rt, actor=None, principal_id=user_id, permission="security.read", scope="/"
        ).allowed

    assert reads()
    clock.advance(timedelta(minutes=10))
    active = _row(_section(alex.get("/portal/roles").text, "active"), "Security Reader")
    found = re.search(r'data-assignment="([^"]+)"', active)
    assert found
    done = alex.submit("/portal/roles", "/portal/roles/deactivate", {"assignment": found.group(1)})
    assert done.status_code == 303, done.text
    assert not reads()
    page = alex.get("/portal/roles").text
    assert "Security Reader is no longer active." in page
    assert "Nothing is active for you now." in page


def test_what_a_group_holds_shows_as_held_through_that_group(
    rt: Pimlico, demo: Demo, visit: Visit
) -> None:
    assignments.assign(
        rt,
        actor=Actor.operator("test"),
        kind=AssignmentKind.ACTIVE,
        principal=PrincipalRef(PrincipalType.USER, demo.users["alex"]),
        target=Target.group_member(demo.groups[SP_PIM]),
        duration=timedelta(days=1),
        justification="test",
    )
    active = _section(visit("alex").get("/portal/roles").text, "active")
    assert "ends in 1 d" in _row(active, SP_PIM)
    mail = _row(active, "Mail Search and Purge")
    assert "through the group Search and Purge" in mail
    assert "<code>/apps/mail</code>" in mail
    assert "Held through a group" in mail
    assert "through the group Search and Purge PIM" in _row(active, "Search and Purge")


def test_an_eligibility_ending_within_14_days_may_be_extended_with_an_approval(
    rt: Pimlico, demo: Demo, visit: Visit, clock: FixedClock
) -> None:
    clock.advance(timedelta(days=360))
    alex = visit("alex")
    row = _row(_section(alex.get("/portal/roles").text, "eligible"), "Security Reader")
    assert 'aria-label="Extend Security Reader"' in row
    found = re.search(r'data-assignment="([^"]+)"', row)
    assert found
    form = alex.get(f"/portal/roles/extend?assignment={found.group(1)}")
    assert "Needed: an administrator who may approve requests must approve." in form.text
    refused = alex.post("/portal/roles/extend", {"assignment": found.group(1)}, token=alex.csrf())
    assert 'data-rule="JustificationRule"' in refused.text
    done = alex.submit(
        f"/portal/roles/extend?assignment={found.group(1)}",
        "/portal/roles/extend",
        {"assignment": found.group(1), "duration": "P30D", "justification": "still on the team"},
    )
    assert done.status_code == 303, done.text
    (mine,) = requests.list_requests(rt, actor=Actor.principal(demo.users["alex"]), mine=True)
    assert mine.request.status is RequestStatus.PENDING_APPROVAL
    assert mine.request.action.value == "self_extend"


def test_an_expired_eligibility_may_be_renewed_with_an_approval(
    rt: Pimlico, demo: Demo, visit: Visit, clock: FixedClock
) -> None:
    clock.advance(timedelta(days=370))
    alex = visit("alex")
    page = alex.get("/portal/roles").text
    assert "You have no eligible roles" in page
    row = _row(_section(page, "expired"), "Security Reader")
    found = re.search(r'data-assignment="([^"]+)"', row)
    assert found
    done = alex.submit(
        f"/portal/roles/renew?assignment={found.group(1)}",
        "/portal/roles/renew",
        {"assignment": found.group(1), "justification": "back on the team"},
    )
    assert done.status_code == 303, done.text
    (mine,) = requests.list_requests(rt, actor=Actor.principal(demo.users["alex"]), mine=True)
    assert mine.request.action.value == "self_renew"


def test_someone_elses_eligibility_cannot_be_opened(demo: Demo, visit: Visit) -> None:
    alex_page = visit("alex").get("/portal/roles").text
    assignment = _eligible_id(alex_page, "Security Reader")
    response = visit("erin").get(f"/portal/roles/activate?assignment={assignment}")
    assert response.status_code == 404


def test_exact_times_are_shown_in_the_viewers_time_zone(demo: Demo, visit: Visit) -> None:
    alex = visit("alex")
    alex.client.cookies.set("pimlico_tz", "Europe/Berlin")
    row = _row(alex.get("/portal/roles").text, "Security Reader")
    # The eligibility ends 365 days after T0 (09:00 UTC): 10:00 in Berlin's winter time.
    assert 'title="Mon 01 Mar 2027, 10:00 CET"' in row
