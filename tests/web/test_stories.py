"""The stories of DESIGN.md walked in a real Chromium, through the portal's pages only: what a
person clicks, types and reads. The mail console (``examples/mail_console``) is the
application that asks Pimlico before it lets anyone purge.

The server runs in real time (``RunningClock``); where Entra's rules make a person wait (an
activation may be ended early only after five minutes) the test moves the server's clock on
instead of sleeping. TOTP codes come from the factor's key, read off the enrolment page as a
person would type it into an authenticator app.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pyotp
from playwright.sync_api import BrowserContext, Page, expect

from pimlico.demo import demo_password
from pimlico.services import decisions
from tests.web.harness import LiveConsole, LivePimlico, NewContext, screenshot
from tests.web.test_mail_console_web import purge

STEP = timedelta(seconds=30)


def sign_in(page: Page, live: LivePimlico, user_name: str, code: str | None = None) -> None:
    page.goto(live.portal)
    page.get_by_label("User name").fill(user_name)
    page.get_by_label("Password").fill(demo_password(user_name))
    page.get_by_role("button", name="Sign in").click()
    if code is not None:
        expect(page.get_by_role("heading", name="Verify it is you")).to_be_visible()
        page.get_by_label("Code").fill(code)
        page.get_by_role("button", name="Verify and sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def nav(page: Page, name: str) -> None:
    """Follow the main navigation's link ``name``."""
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name).click()


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You are signed out.")).to_be_visible()


def enrol(page: Page, live: LivePimlico) -> tuple[pyotp.TOTP, list[str]]:
    """Set up an authenticator app on the Security page; its generator and recovery codes."""
    nav(page, "Security")
    page.get_by_role("button", name="Set up an authenticator app").click()
    expect(page.locator(".qr svg")).to_be_visible()
    screenshot(page, f"security-enrol-{_device(page)}")
    totp = pyotp.TOTP(page.locator("#secret").inner_text().strip())
    page.get_by_label("Code from your authenticator app").fill(totp.at(live.clock.now()))
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("heading", name="Your authenticator app is set up")).to_be_visible()
    codes = [c.strip() for c in page.locator("#recovery-codes li").all_inner_texts()]
    assert len(codes) >= 8
    return totp, codes


def _device(page: Page) -> str:
    size = page.viewport_size
    return "phone" if size is not None and size["width"] < 600 else "desktop"


def may_purge(live: LivePimlico, user_name: str) -> bool:
    return decisions.check(
        live.rt,
        actor=None,
        principal_id=live.user_id(user_name),
        permission="mail.purge",
        scope="/apps/mail",
    ).allowed


def test_the_seed_story_alex_activates_bob_approves_alex_purges_then_deactivates(
    live_pimlico: LivePimlico, live_console: LiveConsole, new_context: NewContext
) -> None:
    live = live_pimlico
    alex_browser: BrowserContext = new_context("desktop")
    portal = alex_browser.new_page()
    console = alex_browser.new_page()

    # Alex signs in and sets up MFA, then signs in again with it.
    sign_in(portal, live, "alex")
    totp, recovery = enrol(portal, live)
    sign_out(portal)
    live.clock.advance(STEP)  # a new code: each is used once
    sign_in(portal, live, "alex", code=totp.at(live.clock.now()))
    screenshot(portal, "my-roles-eligible")

    # The console refuses him. (It signs him in to Pimlico, so it asks for his code too.)
    live.clock.advance(STEP)
    console.goto(live_console.url)
    console.get_by_label("User name").fill("alex")
    console.get_by_label("Password").fill(demo_password("alex"))
    console.get_by_label("Code from your authenticator app").fill(totp.at(live.clock.now()))
    console.get_by_role("button", name="Sign in").click()
    expect(console.get_by_role("heading", name="Suspicious messages")).to_be_visible()
    assert purge(console, "Invoice overdue") == 403
    expect(console.get_by_role("alert")).to_have_text("You need the Search and Purge role")

    # He activates Security Reader: MFA is fresh from sign-in, so the form asks no code.
    portal.bring_to_front()
    portal.get_by_role("link", name="Activate Security Reader").click()
    expect(portal.get_by_role("heading", name="Activate Security Reader")).to_be_visible()
    expect(portal.get_by_label("Code from your authenticator app")).to_have_count(0)
    screenshot(portal, "activate-security-reader")
    portal.get_by_role("button", name="Activate", exact=True).click()
    expect(portal.locator(".flash")).to_contain_text("Security Reader is active until")
    active = portal.locator("#active")
    expect(active).to_contain_text("Security Reader")
    expect(active).to_contain_text(re.compile(r"ends in (7 h 59 min|8 h)"))

    # He asks for the Search and Purge PIM membership: the form says Bob must approve, and
    # asks for a justification and a ticket.
    portal.get_by_role("link", name="Activate Search and Purge PIM").click()
    expect(portal.get_by_text("Bob Approver").first).to_be_visible()
    portal.get_by_label("Why you need it").fill("Purge the phishing campaign of INC-4711")
    portal.get_by_label("Ticket system").fill("ServiceNow")
    portal.get_by_label("Ticket number").fill("INC-4711")
    screenshot(portal, "activate-with-approval")
    portal.get_by_role("button", name="Ask for approval").click()
    expect(portal.locator(".flash")).to_contain_text("waiting for approval by Bob Approver")
    screenshot(portal, "my-request-pending")
    nav(portal, "My requests")
    expect(portal.locator(".badge-pending_approval").first).to_be_visible()
    screenshot(portal, "my-requests")
    sign_out(portal)
    assert not may_purge(live, "alex")

    # Bob, on his phone, approves.
    bob = new_context("phone").new_page()
    sign_in(bob, live, "bob")
    nav(bob, "Approve requests")
    expect(bob.get_by_text("Purge the phishing campaign of INC-4711")).to_be_visible()
    expect(bob.get_by_text("INC-4711").first).to_be_visible()
    screenshot(bob, "approvals-inbox")
    bob.get_by_role("link", name="Review and decide").click()
    screenshot(bob, "approval")
    bob.get_by_label(re.compile("Justification")).fill("Checked INC-4711 with the SOC")
    bob.get_by_role("button", name="Approve", exact=True).click()
    expect(bob.locator(".flash")).to_contain_text("You approved Alex Analyst's request")

    # Alex's purge now succeeds.
    console.bring_to_front()
    console.get_by_role("link", name="Back to the messages").click()
    assert purge(console, "Invoice overdue") == 200
    expect(console.get_by_role("heading", name="Purged")).to_be_visible()

    # Five minutes later (Entra's minimum) Alex deactivates early, with a recovery code at
    # sign-in, and is refused again at once.
    live.clock.advance(timedelta(minutes=5))
    portal.bring_to_front()
    sign_in(portal, live, "alex", code=recovery[0])
    row = portal.locator("#active tr", has_text="Search and Purge PIM")
    row.get_by_role("button", name=re.compile("Deactivate")).click()
    expect(portal.locator(".flash")).to_be_visible()
    expect(portal.locator("#active")).not_to_contain_text("Search and Purge PIM")
    assert not may_purge(live, "alex")
    console.bring_to_front()
    console.get_by_role("link", name="Back to the messages").click()
    assert purge(console, "Invoice overdue") == 403
    expect(console.get_by_role("alert")).to_have_text("You need the Search and Purge role")


def test_an_administrator_activates_privileged_role_administrator_and_the_next_activation_obeys_the_settings_she_changes(  # noqa: E501
    live_pimlico: LivePimlico, new_context: NewContext
) -> None:
    live = live_pimlico
    priya = new_context("desktop").new_page()

    # Priya holds no admin right until she activates one (it needs MFA and a reason).
    sign_in(priya, live, "priya")
    expect(priya.get_by_role("link", name="Administration", exact=True)).to_have_count(0)
    totp, _ = enrol(priya, live)
    nav(priya, "My roles")
    priya.get_by_role("link", name="Activate Privileged Role Administrator").click()
    priya.get_by_label("Why you need it").fill("Change Security Reader's settings (CHG-9)")
    live.clock.advance(STEP)
    priya.get_by_label("Code from your authenticator app").fill(totp.at(live.clock.now()))
    priya.get_by_role("button", name="Activate", exact=True).click()
    expect(priya.locator(".flash")).to_contain_text("Privileged Role Administrator is active")

    # She changes Security Reader's settings: approval by Bob, at most 2 hours.
    nav(priya, "Administration")
    screenshot(priya, "admin")
    priya.get_by_role("link", name="Role settings").click()
    priya.get_by_role("link", name="Security Reader", exact=True).click()
    priya.locator('[id="activation.maximum_duration"]').fill("2")
    priya.locator('[id="activation.maximum_duration.unit"]').select_option("hours")
    priya.get_by_label("Require approval to activate").check()
    priya.locator('[id="approval.stages[0].approvers"]').fill("bob")
    screenshot(priya, "admin-role-settings")
    priya.get_by_role("button", name="Save settings").click()
    expect(priya.locator(".flash")).to_be_visible()
    screenshot(priya, "admin-role-settings-saved")
    for section in ("Users", "Groups", "Assignments", "Audit log"):
        nav(priya, "Administration")
        priya.get_by_role("link", name=section, exact=True).click()
        screenshot(priya, "admin-" + section.lower().replace(" ", "-"))

    # Alex's next activation of Security Reader obeys them: at most 2 h, and Bob approves.
    alex = new_context("phone").new_page()
    sign_in(alex, live, "alex")
    totp, _ = enrol(alex, live)
    nav(alex, "My roles")
    alex.get_by_role("link", name="Activate Security Reader").click()
    live.clock.advance(STEP)
    alex.get_by_label("Code from your authenticator app").fill(totp.at(live.clock.now()))
    expect(alex.get_by_text("Bob Approver must approve")).to_be_visible()
    options = alex.locator("#duration option").all_inner_texts()
    assert options[-1].strip() == "2 h"
    assert "8 h" not in options
    alex.get_by_label("Why you need it").fill("Review the alerts of INC-5000")
    screenshot(alex, "activate-needs-approval")
    alex.get_by_role("button", name="Ask for approval").click()
    expect(alex.locator(".flash")).to_contain_text("waiting for approval by Bob Approver")
    assert not decisions.check(
        live.rt,
        actor=None,
        principal_id=live.user_id("alex"),
        permission="pim.audit.read",
        scope="/",
    ).allowed
