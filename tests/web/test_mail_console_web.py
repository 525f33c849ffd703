"""The example mail console's pages in a real Chromium, against a live Pimlico and a live
console: what the console lets a person do follows what is active for them in Pimlico.

Access is granted and ended here through the services (the portal's own story walks the same
steps through the portal's pages).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from examples.mail_console.web import COOKIE
from playwright.sync_api import BrowserContext, Page, expect

from pimlico.client import ApiError, Client
from pimlico.demo import demo_password
from pimlico.domain.catalogue import SECURITY_READER
from pimlico.domain.model import AssignmentKind, PrincipalRef, PrincipalType, Target
from pimlico.domain.requests import Ticket
from pimlico.services import assignments
from tests.web.harness import OPERATOR, LiveConsole, LivePimlico, screenshot

SEARCH_AND_PURGE = "Search and Purge PIM"


def sign_in_to_console(page: Page, console: LiveConsole, user_name: str) -> None:
    page.goto(console.url)
    page.get_by_label("User name").fill(user_name)
    page.get_by_label("Password").fill(demo_password(user_name))
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Suspicious messages")).to_be_visible()


def purge(page: Page, subject: str) -> int:
    """Press the Purge button of the message ``subject``; the answer's HTTP status."""
    with page.expect_response(lambda r: r.request.method == "POST") as answered:
        page.get_by_role("button", name=f"Purge {subject}").click()
    return answered.value.status


def grant(live: LivePimlico, user_name: str, target: Target) -> str:
    """An active assignment of ``target`` for ``user_name``, for an hour, made by an operator."""
    return assignments.assign(
        live.rt,
        actor=OPERATOR,
        kind=AssignmentKind.ACTIVE,
        principal=PrincipalRef(PrincipalType.USER, live.user_id(user_name)),
        target=target,
        duration=timedelta(hours=1),
        justification="Purge the phishing campaign of INC-4711",
        ticket=Ticket("ServiceNow", "INC-4711"),
    ).value.id


def session_token(context: BrowserContext) -> str:
    return next(c["value"] for c in context.cookies() if c["name"] == COOKIE)


def test_alex_may_purge_only_while_search_and_purge_is_active_for_him(
    live_pimlico: LivePimlico, live_console: LiveConsole, desktop: BrowserContext
) -> None:
    page = desktop.new_page()
    sign_in_to_console(page, live_console, "alex")
    screenshot(page, "console-messages")

    assert purge(page, "Invoice overdue") == 403
    expect(page.get_by_role("alert")).to_have_text("You need the Search and Purge role")
    expect(page.get_by_role("link", name="Pimlico")).to_have_attribute("href", live_pimlico.portal)
    screenshot(page, "console-refused")

    membership = Target.group_member(live_pimlico.demo.groups[SEARCH_AND_PURGE])
    assignment = grant(live_pimlico, "alex", membership)
    page.get_by_role("link", name="Back to the messages").click()
    assert purge(page, "Invoice overdue") == 200
    expect(page.get_by_role("heading", name="Purged")).to_be_visible()
    expect(page.get_by_text("Purged “Invoice overdue” from every mailbox.")).to_be_visible()
    screenshot(page, "console-purged")

    # Ended early: refused again at once.
    assignments.remove_assignment(
        live_pimlico.rt, actor=OPERATOR, assignment_id=assignment, reason="Campaign purged"
    )
    page.get_by_role("link", name="Back to the messages").click()
    assert purge(page, "Invoice overdue") == 403
    expect(page.get_by_role("alert")).to_have_text("You need the Search and Purge role")


def test_the_quarantine_report_needs_security_reader(
    live_pimlico: LivePimlico, live_console: LiveConsole, page: Page
) -> None:
    sign_in_to_console(page, live_console, "alex")
    page.get_by_role("link", name="Quarantine report").click()
    expect(page.get_by_role("alert")).to_have_text("You need the Security Reader role")

    grant(live_pimlico, "alex", Target.role(SECURITY_READER.id))
    page.reload()
    expect(page.get_by_role("heading", name="Quarantine report")).to_be_visible()
    # Escaped, not markup: the subject's angle brackets are text.
    expect(page.get_by_text("Urgent wire transfer <confidential>")).to_be_visible()


def test_signing_out_of_the_console_ends_the_pimlico_session(
    live_pimlico: LivePimlico, live_console: LiveConsole, phone: BrowserContext
) -> None:
    page = phone.new_page()
    sign_in_to_console(page, live_console, "bob")
    expect(page.get_by_text("Signed in as Bob Approver")).to_be_visible()
    screenshot(page, "console-messages")
    token = session_token(phone)
    with Client(live_pimlico.url, token) as pimlico:
        assert pimlico.me().principal_id == live_pimlico.user_id("bob")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert COOKIE not in {c["name"] for c in phone.cookies()}
    with Client(live_pimlico.url, token) as pimlico, pytest.raises(ApiError) as ended:
        pimlico.me()
    assert ended.value.status == 401


def test_a_wrong_password_is_refused_in_plain_words(
    live_console: LiveConsole, phone: BrowserContext
) -> None:
    page = phone.new_page()
    page.goto(live_console.url)
    screenshot(page, "console-sign-in")
    page.get_by_label("User name").fill("alex")
    page.get_by_label("Password").fill("not alex's password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("The user name or the password is wrong.")
    expect(page.get_by_label("User name")).to_have_value("alex")
    assert COOKIE not in {c["name"] for c in phone.cookies()}


def test_a_purge_without_the_form_s_csrf_token_is_refused(
    live_pimlico: LivePimlico, live_console: LiveConsole, desktop: BrowserContext
) -> None:
    page = desktop.new_page()
    sign_in_to_console(page, live_console, "alex")
    grant(
        live_pimlico,
        "alex",
        Target.group_member(live_pimlico.demo.groups[SEARCH_AND_PURGE]),
    )
    # The browser's own cookie, but a form the console did not serve.
    forged = desktop.request.post(
        f"{live_console.url}/web/messages/msg-1/purge", form={"csrf": "0" * 64}
    )
    assert forged.status == 403
    assert "This form has expired" in forged.text()
    assert purge(page, "Invoice overdue") == 200


def test_the_console_s_pages_carry_security_headers_and_a_strict_cookie(
    live_console: LiveConsole, desktop: BrowserContext
) -> None:
    page = desktop.new_page()
    answer = page.goto(live_console.url)
    assert answer is not None
    headers = answer.headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    sign_in_to_console(page, live_console, "alex")
    cookie = next(c for c in desktop.cookies() if c["name"] == COOKIE)
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
