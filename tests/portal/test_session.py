"""Signing in and out of the portal, its sessions, CSRF and security headers."""

from __future__ import annotations

from datetime import timedelta

from pimlico.clock import FixedClock
from pimlico.demo import Demo, demo_password
from pimlico.services import accounts
from pimlico.services.runtime import Actor, Pimlico
from tests.portal.conftest import Portal, Visit, enrol_mfa

STEP = timedelta(seconds=30)


def test_a_visitor_without_a_session_is_sent_to_sign_in_and_back(
    demo: Demo, browser: Portal
) -> None:
    response = browser.get("/portal/requests?status=pending_approval")
    assert response.status_code == 303
    assert response.headers["location"] == (
        "/portal/sign-in?next=%2Fportal%2Frequests%3Fstatus%3Dpending_approval"
    )
    form = browser.get(response.headers["location"])
    assert 'name="next" value="/portal/requests?status=pending_approval"' in form.text
    signed_in = browser.post(
        "/portal/sign-in",
        {
            "user_name": "alex",
            "password": demo_password("alex"),
            "next": "/portal/requests?status=pending_approval",
        },
        token=browser.csrf(),
    )
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == "/portal/requests?status=pending_approval"


def test_sign_in_never_sends_a_person_to_another_site(demo: Demo, browser: Portal) -> None:
    for target in ("https://evil.example/", "//evil.example/portal/", "/api/v1/me"):
        response = browser.submit(
            "/portal/sign-in",
            "/portal/sign-in",
            {"user_name": "alex", "password": demo_password("alex"), "next": target},
        )
        assert response.headers["location"] == "/portal/"


def test_a_wrong_password_is_refused_in_plain_words_and_keeps_the_user_name(
    demo: Demo, browser: Portal
) -> None:
    response = browser.submit(
        "/portal/sign-in", "/portal/sign-in", {"user_name": "alex", "password": "wrong"}
    )
    assert response.status_code == 401
    assert 'role="alert"' in response.text
    assert 'value="alex"' in response.text
    assert "pimlico_session" not in response.cookies


def test_a_person_with_mfa_gives_a_code_before_the_session_starts(
    rt: Pimlico, demo: Demo, browser: Portal, clock: FixedClock
) -> None:
    totp = enrol_mfa(rt, demo.users["alex"])
    clock.advance(STEP)
    response = browser.submit(
        "/portal/sign-in",
        "/portal/sign-in",
        {"user_name": "alex", "password": demo_password("alex")},
    )
    assert response.headers["location"].startswith("/portal/sign-in/mfa")
    assert "pimlico_session" not in browser.client.cookies
    # The waiting session token is sealed: the cookie does not hold it in the clear.
    assert "pim_" not in browser.client.cookies["pimlico_pending"]
    assert browser.get("/portal/roles").status_code == 303

    wrong = browser.submit(response.headers["location"], "/portal/sign-in/mfa", {"code": "000000"})
    assert wrong.status_code == 400
    assert 'data-code="MfaCodeInvalid"' in wrong.text
    assert "pimlico_session" not in browser.client.cookies

    right = browser.submit(
        "/portal/sign-in/mfa", "/portal/sign-in/mfa", {"code": totp.at(rt.clock.now())}
    )
    assert right.status_code == 303
    assert "pimlico_session" in browser.client.cookies
    assert "pimlico_pending" not in browser.client.cookies


def test_a_form_posted_without_its_csrf_token_is_refused_and_changes_nothing(
    rt: Pimlico, demo: Demo, visit: Visit
) -> None:
    alex = visit("alex")
    for token in (None, "0" * 64, alex.csrf("/portal/sign-in")):
        refused = alex.post("/portal/sign-out", {}, token=token)
        assert refused.status_code == 403
        assert 'data-code="CsrfRefused"' in refused.text
    sessions = accounts.list_tokens(rt, actor=_actor(demo), principal_id=demo.users["alex"])
    assert [t.revoked_at for t in sessions] == [None]


def test_a_form_posted_from_another_site_is_refused_even_with_the_token(
    demo: Demo, visit: Visit
) -> None:
    alex = visit("alex")
    token = alex.csrf("/portal/roles")
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        response = alex.client.post("/portal/sign-out", data={"csrf_token": token}, headers=headers)
        assert response.status_code == 403


def test_signing_out_revokes_the_session_so_its_cookie_no_longer_works(
    rt: Pimlico, demo: Demo, visit: Visit, browser: Portal
) -> None:
    alex = visit("alex")
    cookie = alex.client.cookies["pimlico_session"]
    signed_out = alex.submit("/portal/roles", "/portal/sign-out", {})
    assert signed_out.status_code == 303
    browser.client.cookies.set("pimlico_session", cookie)
    assert browser.get("/portal/roles").status_code == 303
    tokens = accounts.list_tokens(rt, actor=_actor(demo), principal_id=demo.users["alex"])
    assert all(t.revoked_at is not None for t in tokens)


def test_every_page_carries_the_security_headers(demo: Demo, browser: Portal) -> None:
    for path in ("/portal/sign-in", "/portal/no-such-page"):
        headers = browser.get(path).headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "script-src 'self'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "same-origin"
        assert headers["cache-control"] == "no-store"


def test_the_session_cookie_is_httponly_and_samesite(demo: Demo, browser: Portal) -> None:
    response = browser.submit(
        "/portal/sign-in",
        "/portal/sign-in",
        {"user_name": "alex", "password": demo_password("alex")},
    )
    cookie = next(
        v for k, v in response.headers.multi_items() if k == "set-cookie" and "session" in v
    )
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Secure" not in cookie  # served over plain HTTP here; see the HTTPS test


def test_over_https_the_cookie_is_secure_and_host_only(rt: Pimlico, demo: Demo) -> None:
    from fastapi.testclient import TestClient

    from pimlico.api import create_app

    with TestClient(
        create_app(rt.settings, runtime=rt),
        base_url="https://testserver",
        follow_redirects=False,
    ) as client:
        portal = Portal(client)
        response = portal.submit(
            "/portal/sign-in",
            "/portal/sign-in",
            {"user_name": "alex", "password": demo_password("alex")},
        )
    cookie = next(
        v for k, v in response.headers.multi_items() if k == "set-cookie" and "session" in v
    )
    assert cookie.startswith("__Host-pimlico_session=")
    assert "Secure" in cookie
    assert "Path=/" in cookie
    assert "strict-transport-security" in response.headers


def test_an_unknown_portal_page_is_a_page_but_an_unknown_api_path_is_a_problem(
    demo: Demo, visit: Visit
) -> None:
    alex = visit("alex")
    page = alex.get("/portal/no-such-page")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "Alex Analyst" in page.text
    api = alex.get("/api/v1/no-such-thing")
    assert api.headers["content-type"] == "application/problem+json"


def _actor(demo: Demo) -> Actor:
    return Actor.operator("test")


def test_through_the_api_too_a_password_alone_opens_no_session_of_an_account_with_mfa(
    rt: Pimlico, demo: Demo, clock: FixedClock
) -> None:
    from fastapi.testclient import TestClient

    from pimlico.api import create_app

    alex = demo.users["alex"]
    totp = enrol_mfa(rt, alex)
    clock.advance(STEP)
    before = accounts.list_tokens(rt, actor=_actor(demo), principal_id=alex)
    password = demo_password("alex")
    with TestClient(create_app(rt.settings, runtime=rt)) as api:
        alone = api.post("/api/v1/auth/sign-in", json={"user_name": "alex", "password": password})
        assert alone.status_code == 401
        assert alone.json()["code"] == "MfaCodeRequired"
        wrong = api.post(
            "/api/v1/auth/sign-in",
            json={"user_name": "alex", "password": password, "code": "000000"},
        )
        assert wrong.json()["code"] == "MfaCodeInvalid"
        # A wrong password says nothing about MFA.
        guessed = api.post(
            "/api/v1/auth/sign-in",
            json={"user_name": "alex", "password": "guess", "code": totp.at(clock.now())},
        )
        assert guessed.json()["code"] == "NotAuthenticated"
        assert accounts.list_tokens(rt, actor=_actor(demo), principal_id=alex) == before
        right = api.post(
            "/api/v1/auth/sign-in",
            json={"user_name": "alex", "password": password, "code": totp.at(clock.now())},
        )
        assert right.status_code == 201, right.text
    assert len(accounts.list_tokens(rt, actor=_actor(demo), principal_id=alex)) == len(before) + 1


def test_the_mfa_step_of_a_portal_sign_in_expires_after_five_minutes(
    rt: Pimlico, demo: Demo, browser: Portal, clock: FixedClock
) -> None:
    totp = enrol_mfa(rt, demo.users["alex"])
    started = browser.submit(
        "/portal/sign-in",
        "/portal/sign-in",
        {"user_name": "alex", "password": demo_password("alex")},
    )
    token = browser.csrf(started.headers["location"])
    clock.advance(timedelta(minutes=5, seconds=1))
    late = browser.post("/portal/sign-in/mfa", {"code": totp.at(clock.now())}, token=token)
    assert late.status_code == 303
    assert late.headers["location"] == "/portal/sign-in"
    assert "pimlico_session" not in browser.client.cookies


def test_signed_in_the_pre_sign_in_csrf_token_no_longer_counts(
    rt: Pimlico, demo: Demo, visit: Visit
) -> None:
    alex = visit("alex")
    planted = "known-to-an-attacker"
    alex.client.cookies.set("pimlico_pre", planted)
    from pimlico.web.session import csrf_token_for

    refused = alex.post("/portal/sign-out", {}, token=csrf_token_for(planted))
    assert refused.status_code == 403
    sessions = accounts.list_tokens(rt, actor=_actor(demo), principal_id=demo.users["alex"])
    assert [t.revoked_at for t in sessions] == [None]
