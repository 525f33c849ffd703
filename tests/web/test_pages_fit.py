"""Every main page of the portal at phone and desktop width, in Chromium: it fits the screen
(nothing wider than the viewport), every form control has a label, the keyboard reaches the
page from a skip link with a visible focus, and a screenshot is saved for people to look at
(``artifacts/screenshots/<device>/page-<name>.png``)."""

from __future__ import annotations

from datetime import timedelta

import pyotp
import pytest
from playwright.sync_api import Page, expect

from pimlico.domain.model import AssignmentKind, Target
from pimlico.domain.requests import RequestAction, Schedule, Ticket
from pimlico.services import mfa, requests
from pimlico.services.runtime import Actor
from tests.web.harness import Device, LivePimlico, NewContext, screenshot
from tests.web.test_stories import sign_in

PAGES = {
    "my-roles": "/portal/roles",
    "my-requests": "/portal/requests",
    "approvals": "/portal/approvals",
    "security": "/portal/security",
    "admin": "/portal/admin",
    "admin-users": "/portal/admin/users",
    "admin-groups": "/portal/admin/groups",
    "admin-roles": "/portal/admin/roles",
    "admin-settings": "/portal/admin/settings",
    "admin-assignments": "/portal/admin/assignments",
    "admin-audit": "/portal/admin/audit",
}

_UNLABELLED = """
() => Array.from(document.querySelectorAll('input, select, textarea'))
  .filter(e => e.type !== 'hidden')
  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
               && !e.getAttribute('aria-labelledby'))
  .map(e => e.outerHTML)
"""


def _overflow(page: Page) -> int:
    """How many CSS pixels the page is wider than its viewport (0: it fits)."""
    width: int = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    return width


@pytest.mark.parametrize("device", ["phone", "desktop"])
def test_the_main_pages_fit_the_screen_label_every_field_and_are_saved_as_screenshots(
    live_pimlico: LivePimlico, new_context: NewContext, device: Device
) -> None:
    live = live_pimlico
    # Something on every page: a request of Alex's waiting for Bob (root sees it too).
    group = live.demo.groups["Search and Purge PIM"]
    _ask_for_membership(live, group)

    page = new_context(device).new_page()
    sign_in(page, live, "root")
    for name, path in PAGES.items():
        page.goto(live.url + path)
        expect(page.locator("main h1")).to_be_visible()
        assert page.evaluate(_UNLABELLED) == [], f"{path}: form controls without a label"
        assert _overflow(page) <= 0, f"{path} is {_overflow(page)} px wider than the {device}"
        screenshot(page, f"page-{name}")

    # The keyboard: the first Tab lands on the skip link, drawn with a focus outline.
    page.goto(live.url + "/portal/roles")
    page.keyboard.press("Tab")
    focused = page.evaluate(
        "() => [document.activeElement.textContent,"
        " getComputedStyle(document.activeElement).outlineStyle]"
    )
    assert focused == ["Skip to content", "solid"]


def _ask_for_membership(live: LivePimlico, group_id: str) -> None:
    """Alex (MFA verified through the use cases) asks for the membership, through the use
    case the portal calls; it waits for Bob."""
    alex = live.user_id("alex")
    actor = Actor.principal(alex)
    totp = pyotp.TOTP(mfa.enroll(live.rt, actor=actor, user_id=alex).secret)
    mfa.confirm(live.rt, actor=actor, user_id=alex, code=totp.at(live.clock.now()))
    live.clock.advance(timedelta(seconds=30))
    mfa.verify(live.rt, actor=actor, user_id=alex, code=totp.at(live.clock.now()))
    requests.submit(
        live.rt,
        actor=actor,
        action=RequestAction.SELF_ACTIVATE,
        kind=AssignmentKind.ACTIVE,
        target=Target.group_member(group_id),
        schedule=Schedule(duration=timedelta(hours=1)),
        justification="Purge the phishing campaign of INC-4711",
        ticket=Ticket("ServiceNow", "INC-4711"),
    )
