"""The portal answers in a real Chromium: its sign-in page renders with labelled fields, and a
demo person signs in and lands on a portal page. The pages themselves have their own tests."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from pimlico.demo import demo_password
from tests.web.harness import LivePimlico, NewContext, screenshot

SIGN_IN = "/portal/sign-in"


def test_alex_signs_in_to_the_portal_with_his_password(
    live_pimlico: LivePimlico, new_context: NewContext
) -> None:
    for device in ("desktop", "phone"):
        context = new_context(device)
        page = context.new_page()
        answer = page.goto(live_pimlico.url + SIGN_IN)
        assert answer is not None
        assert answer.status == 200
        expect(page).to_have_title(re.compile("Pimlico"))
        user_name = page.get_by_label("User name")
        password = page.get_by_label("Password")
        expect(user_name).to_have_attribute("name", "user_name")
        expect(password).to_have_attribute("name", "password")
        screenshot(page, "portal-sign-in")

        user_name.fill("alex")
        password.fill(demo_password("alex"))
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda url: SIGN_IN not in url)
        expect(page).to_have_title(re.compile("Pimlico"))
