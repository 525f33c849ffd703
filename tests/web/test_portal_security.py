"""The portal's defences as a real browser meets them: forms without their CSRF token, and the
cookie of a session that was signed out."""

from __future__ import annotations

from playwright.sync_api import expect

from pimlico.services import mfa
from tests.web.harness import OPERATOR, LivePimlico, NewContext, screenshot
from tests.web.test_stories import sign_in, sign_out


def test_a_form_posted_without_its_csrf_token_is_refused_and_changes_nothing(
    live_pimlico: LivePimlico, new_context: NewContext
) -> None:
    page = new_context("desktop").new_page()
    sign_in(page, live_pimlico, "alex")
    page.goto(live_pimlico.url + "/portal/security")
    # The form as a forged page would send it: the same fields, no token.
    page.evaluate("document.querySelectorAll('input[name=csrf_token]').forEach(e => e.remove())")
    with page.expect_response(lambda r: r.request.method == "POST") as answered:
        page.get_by_role("button", name="Set up an authenticator app").click()
    assert answered.value.status == 403
    expect(page.get_by_role("alert")).to_contain_text("did not come from this Pimlico page")
    screenshot(page, "csrf-refused")
    # Nothing was started: alex has no factor, enrolled or not.
    alex = live_pimlico.user_id("alex")
    assert mfa.factor_of(live_pimlico.rt, actor=OPERATOR, user_id=alex) is None


def test_the_cookie_of_a_signed_out_session_is_refused(
    live_pimlico: LivePimlico, new_context: NewContext
) -> None:
    first = new_context("desktop")
    page = first.new_page()
    sign_in(page, live_pimlico, "alex")
    kept = [c for c in first.cookies() if c["name"] == "pimlico_session"]
    assert kept, "signed in, the browser holds a session cookie"
    sign_out(page)

    replay = new_context("desktop")
    replay.add_cookies(kept)  # type: ignore[arg-type]
    other = replay.new_page()
    other.goto(live_pimlico.url + "/portal/roles")
    expect(other.get_by_role("heading", name="Sign in to Pimlico")).to_be_visible()
    assert "/portal/sign-in" in other.url
