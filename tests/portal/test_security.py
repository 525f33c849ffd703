"""Security: enrolling an authenticator app (an SVG QR code, the key once, the recovery codes
once), verifying now (step-up, back where one was) and removing it, as a browser without
JavaScript does, on the demo directory."""

from __future__ import annotations

import re
from datetime import timedelta

import pyotp

from pimlico.clock import FixedClock
from pimlico.demo import Demo
from pimlico.services import mfa
from pimlico.services.runtime import Actor, Pimlico
from tests.portal.conftest import Visit, enrol_mfa

STEP = timedelta(seconds=30)
_SECRET = re.compile(r'<code id="secret">([A-Z2-7]+)</code>')


def test_a_person_without_a_factor_is_offered_to_set_one_up(demo: Demo, visit: Visit) -> None:
    page = visit("alex").get("/portal/security")
    assert page.status_code == 200
    assert "You have no authenticator app set up." in page.text
    assert 'action="/portal/security/enrol"' in page.text


def test_enrolment_shows_an_svg_qr_code_and_the_key_and_keeps_them_out_of_cookies(
    rt: Pimlico, demo: Demo, visit: Visit
) -> None:
    alex = visit("alex")
    page = alex.submit("/portal/security", "/portal/security/enrol", {})
    assert page.status_code == 200
    svg = re.search(r'<div class="qr"><svg [^>]*viewBox="[^"]+".*?</svg></div>', page.text, re.S)
    assert svg, "an inline SVG QR code"
    assert "style=" not in svg.group(0)
    assert "<script" not in svg.group(0)
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    secret = _SECRET.search(page.text)
    assert secret
    assert secret.group(1) not in (page.headers.get("set-cookie") or "")
    assert all(secret.group(1) not in value for value in alex.client.cookies.values())
    factor = mfa.factor_of(rt, actor=Actor.operator("test"), user_id=demo.users["alex"])
    assert factor is not None
    assert factor.confirmed_at is None
    # Coming back shows no key again: enrolment starts over.
    again = alex.get("/portal/security").text
    assert secret.group(1) not in again
    assert "Start again" in again


def test_confirming_shows_the_recovery_codes_once(
    rt: Pimlico, demo: Demo, visit: Visit, clock: FixedClock
) -> None:
    alex = visit("alex")
    enrolled = alex.submit("/portal/security", "/portal/security/enrol", {})
    secret = _SECRET.search(enrolled.text)
    assert secret
    code = pyotp.TOTP(secret.group(1)).at(clock.now())
    confirmed = alex.post("/portal/security/confirm", {"code": code}, token=alex.csrf())
    assert confirmed.status_code == 200
    codes = re.findall(r"<li>([a-z0-9]{5}-[a-z0-9]{5})</li>", confirmed.text)
    assert len(codes) >= 8
    assert "shown only this once" in confirmed.text
    after = alex.get("/portal/security").text
    assert "Set up" in after
    assert "Verify now" in after
    assert all(c not in after for c in codes)
    factor = mfa.factor_of(rt, actor=Actor.operator("test"), user_id=demo.users["alex"])
    assert factor is not None
    assert factor.confirmed_at == clock.now()


def test_confirming_with_a_wrong_code_is_refused_and_leaves_the_factor_unconfirmed(
    rt: Pimlico, demo: Demo, visit: Visit
) -> None:
    alex = visit("alex")
    enrolled = alex.submit("/portal/security", "/portal/security/enrol", {})
    secret = _SECRET.search(enrolled.text)
    assert secret
    refused = alex.post("/portal/security/confirm", {"code": "000000"}, token=alex.csrf())
    assert refused.status_code == 400
    assert 'data-code="MfaCodeInvalid"' in refused.text
    assert secret.group(1) not in refused.text  # never shown again
    assert "Start again" in refused.text
    factor = mfa.factor_of(rt, actor=Actor.operator("test"), user_id=demo.users["alex"])
    assert factor is not None
    assert factor.confirmed_at is None


def test_verify_now_returns_to_the_portal_page_it_was_asked_from(
    rt: Pimlico, demo: Demo, visit: Visit, clock: FixedClock
) -> None:
    alex = visit("alex")
    totp = enrol_mfa(rt, demo.users["alex"])
    back = "/portal/roles/activate?assignment=x"
    form = alex.get(f"/portal/security/verify?next={back.replace('?', '%3F').replace('=', '%3D')}")
    assert f'name="next" value="{back}"' in form.text
    clock.advance(STEP)
    done = alex.post(
        "/portal/security/verify", {"code": totp.at(clock.now()), "next": back}, token=alex.csrf()
    )
    assert done.status_code == 303
    assert done.headers["location"] == back
    assert mfa.fresh_verification(rt, user_id=demo.users["alex"], at=clock.now()) is not None


def test_verify_now_never_sends_a_person_to_another_site(
    rt: Pimlico, demo: Demo, visit: Visit, clock: FixedClock
) -> None:
    alex = visit("alex")
    totp = enrol_mfa(rt, demo.users["alex"])
    clock.advance(STEP)
    done = alex.submit(
        "/portal/security/verify",
        "/portal/security/verify",
        {"code": totp.at(clock.now()), "next": "https://evil.example/"},
    )
    assert done.headers["location"] == "/portal/"


def test_a_wrong_code_at_verify_now_is_refused_in_plain_words(
    rt: Pimlico, demo: Demo, visit: Visit
) -> None:
    alex = visit("alex")
    enrol_mfa(rt, demo.users["alex"])
    refused = alex.submit("/portal/security/verify", "/portal/security/verify", {"code": "123"})
    assert refused.status_code == 400
    assert "Type the 6-digit code your authenticator app shows now." in refused.text


def test_removing_the_factor_needs_a_fresh_code(
    rt: Pimlico, demo: Demo, visit: Visit, clock: FixedClock
) -> None:
    alex = visit("alex")
    enrol_mfa(rt, demo.users["alex"])
    page = alex.get("/portal/security").text
    assert 'id="code"' in page  # not fresh: the remove form asks for a code
    refused = alex.post("/portal/security/remove", {}, token=alex.csrf())
    assert refused.status_code == 403
    assert 'data-code="MfaStepUpRequired"' in refused.text
    assert mfa.factor_of(rt, actor=Actor.operator("test"), user_id=demo.users["alex"]) is not None


def test_removing_the_factor_with_a_code_removes_it(
    rt: Pimlico, demo: Demo, visit: Visit, clock: FixedClock
) -> None:
    alex = visit("alex")
    totp = enrol_mfa(rt, demo.users["alex"])
    clock.advance(STEP)
    done = alex.submit(
        "/portal/security",
        "/portal/security/remove",
        {"code": totp.at(clock.now()), "reason": "new phone"},
    )
    assert done.status_code == 303, done.text
    assert mfa.factor_of(rt, actor=Actor.operator("test"), user_id=demo.users["alex"]) is None
    page = alex.get("/portal/security").text
    assert "Your authenticator app is removed from your account." in page
    assert "You have no authenticator app set up." in page
