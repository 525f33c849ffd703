"""MFA through the API, on SQLite and PostgreSQL: enrol, confirm, verify (step-up), remove —
and a request that requires MFA accepted only while a verification made through HTTP is
fresh. Codes are computed with pyotp from the secret the enrolment showed."""

from __future__ import annotations

from datetime import datetime, timedelta

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from pimlico.clock import FixedClock
from pimlico.db.tables import AssignmentRow, AuditEventRow, MfaFactorRow
from pimlico.services.runtime import Pimlico
from pimlico.settings import Settings
from tests.api.conftest import PASSWORD, SignIn
from tests.api.test_auth import with_password
from tests.api.test_requests_api import (
    READER,
    READER_JSON,
    STEP,
    activation,
    mfa_settings,
    policy,
    rows,
    story,
    verified,
)


@pytest.fixture
def settings(migrated_url: str) -> Settings:
    return mfa_settings(migrated_url)


def enrolled(client: TestClient) -> pyotp.TOTP:
    answer = client.post("/api/v1/me/mfa")
    assert answer.status_code == 201, answer.text
    return pyotp.TOTP(answer.json()["secret"])


def test_enrol_confirm_and_verify_show_each_secret_once(
    rt: Pimlico, sign_in: SignIn, clock: FixedClock
) -> None:
    alex = with_password(rt, "alex")
    client = sign_in("alex", PASSWORD)

    enrolment = client.post("/api/v1/me/mfa")
    assert enrolment.status_code == 201, enrolment.text
    assert int(enrolment.headers["Pimlico-Revision"]) > 0
    body = enrolment.json()
    assert body["factor"]["user_id"] == alex
    assert body["factor"]["confirmed_at"] is None
    assert body["provisioning_uri"].startswith("otpauth://totp/")
    totp = pyotp.TOTP(body["secret"])

    confirmed = client.post("/api/v1/me/mfa/confirm", json={"code": totp.at(clock.now())})
    assert confirmed.status_code == 200, confirmed.text
    assert int(confirmed.headers["Pimlico-Revision"]) > int(enrolment.headers["Pimlico-Revision"])
    codes = confirmed.json()["recovery_codes"]
    assert len(codes) == len(set(codes)) >= 8

    clock.advance(STEP)
    checked = client.post("/api/v1/me/mfa/verify", json={"code": totp.at(clock.now())})
    assert checked.status_code == 200, checked.text
    assert checked.json()["method"] == "totp"
    assert datetime.fromisoformat(checked.json()["fresh_until"]) == clock.now() + timedelta(
        seconds=rt.settings.mfa_freshness
    )
    assert body["secret"] not in checked.text + confirmed.text
    with rt.reading() as s:
        stored = s.scalars(select(MfaFactorRow.secret)).one()
        audit = " ".join(str(e.after) for e in s.scalars(select(AuditEventRow)))
    assert body["secret"] not in stored
    assert body["secret"] not in audit
    assert all(code not in audit for code in codes)


def test_step_up_through_http_is_what_a_request_requiring_mfa_accepts_while_fresh(
    rt: Pimlico, sign_in: SignIn, clock: FixedClock
) -> None:
    s = story(rt, sign_in)
    totp = enrolled(s.alex)
    s.alex.post("/api/v1/me/mfa/confirm", json={"code": totp.at(clock.now())})
    refused = s.alex.post("/api/v1/requests", json=activation(READER_JSON, dry_run=True))
    assert refused.status_code == 400
    assert refused.json()["rules"] == ["MfaRule"]  # confirming is not a verification

    clock.advance(STEP)
    verification = s.alex.post("/api/v1/me/mfa/verify", json={"code": totp.at(clock.now())})
    assert verification.status_code == 200, verification.text
    accepted = s.alex.post("/api/v1/requests", json=activation(READER_JSON, dry_run=True))
    assert accepted.status_code == 200, accepted.text
    assert datetime.fromisoformat(accepted.json()["mfa_verified_at"]) == datetime.fromisoformat(
        verification.json()["verified_at"]
    )

    clock.advance(timedelta(seconds=rt.settings.mfa_freshness))
    stale = s.alex.post("/api/v1/requests", json=activation(READER_JSON, dry_run=True))
    assert stale.status_code == 400
    assert stale.json()["rules"] == ["MfaRule"]


def test_a_wrong_or_replayed_code_is_refused(
    rt: Pimlico, sign_in: SignIn, clock: FixedClock
) -> None:
    with_password(rt, "alex")
    client = sign_in("alex", PASSWORD)
    totp = enrolled(client)

    near = {totp.at(clock.now() + k * STEP) for k in (-1, 0, 1)}
    bad = next(c for c in ("000000", "111111", "222222", "333333") if c not in near)
    wrong = client.post("/api/v1/me/mfa/confirm", json={"code": bad})
    assert wrong.status_code == 400
    assert wrong.json()["code"] == "MfaCodeInvalid"
    assert client.post("/api/v1/me/mfa/confirm", json={"code": totp.at(clock.now())}).is_success
    clock.advance(STEP)
    code = totp.at(clock.now())
    assert client.post("/api/v1/me/mfa/verify", json={"code": code}).is_success

    replayed = client.post("/api/v1/me/mfa/verify", json={"code": code})

    assert replayed.status_code == 400
    assert replayed.json()["code"] == "MfaCodeReused"
    garbage = client.post("/api/v1/me/mfa/verify", json={"code": "not a code"})
    assert garbage.status_code == 400
    assert garbage.json()["code"] == "MfaCodeInvalid"


def test_a_recovery_code_verifies_once(rt: Pimlico, sign_in: SignIn, clock: FixedClock) -> None:
    with_password(rt, "alex")
    client = sign_in("alex", PASSWORD)
    totp = enrolled(client)
    codes = client.post("/api/v1/me/mfa/confirm", json={"code": totp.at(clock.now())}).json()[
        "recovery_codes"
    ]

    used = client.post("/api/v1/me/mfa/verify", json={"code": codes[0]})

    assert used.status_code == 200, used.text
    assert used.json()["method"] == "recovery"
    assert used.json()["recovery_codes_left"] == len(codes) - 1
    again = client.post("/api/v1/me/mfa/verify", json={"code": codes[0]})
    assert again.status_code == 400
    assert again.json()["code"] == "MfaCodeInvalid"


def test_a_confirmed_factor_must_be_removed_before_enrolling_again(
    rt: Pimlico, sign_in: SignIn, clock: FixedClock
) -> None:
    with_password(rt, "alex")
    client = sign_in("alex", PASSWORD)
    verified(client, clock)

    again = client.post("/api/v1/me/mfa")

    assert again.status_code == 409
    assert again.json()["code"] == "MfaAlreadyEnrolled"


def test_removing_ones_own_factor_needs_a_fresh_verification(
    rt: Pimlico, sign_in: SignIn, clock: FixedClock
) -> None:
    with_password(rt, "alex")
    client = sign_in("alex", PASSWORD)
    totp = pyotp.TOTP(verified(client, clock))
    clock.advance(timedelta(seconds=rt.settings.mfa_freshness))

    stale = client.delete("/api/v1/me/mfa", params={"reason": "new phone"})
    assert stale.status_code == 403
    assert stale.json()["code"] == "MfaStepUpRequired"

    clock.advance(STEP)
    assert client.post("/api/v1/me/mfa/verify", json={"code": totp.at(clock.now())}).is_success
    removed = client.delete("/api/v1/me/mfa", params={"reason": "new phone"})
    assert removed.status_code == 200, removed.text
    assert removed.json()["removed_at"] is not None
    assert "Pimlico-Revision" in removed.headers
    assert client.post("/api/v1/me/mfa").status_code == 201  # enrolling again is possible


def test_another_users_factor_is_removed_only_with_the_user_admin_permission(
    rt: Pimlico, sign_in: SignIn, clock: FixedClock, admin: TestClient
) -> None:
    alex = with_password(rt, "alex")
    with_password(rt, "eve")
    verified(sign_in("alex", PASSWORD), clock)

    refused = sign_in("eve", PASSWORD).delete(f"/api/v1/users/{alex}/mfa")
    assert refused.status_code == 403
    removed = admin.delete(f"/api/v1/users/{alex}/mfa", params={"reason": "lost the phone"})
    assert removed.status_code == 200, removed.text
    assert removed.json()["user_id"] == alex
    assert removed.json()["removed_at"] is not None


def test_mfa_needs_a_signed_in_caller_acting_for_themselves(
    rt: Pimlico, sign_in: SignIn, anonymous: TestClient
) -> None:
    with_password(rt, "alex")
    answers = [
        anonymous.post("/api/v1/me/mfa"),
        anonymous.post("/api/v1/me/mfa/confirm", json={"code": "123456"}),
        anonymous.post("/api/v1/me/mfa/verify", json={"code": "123456"}),
        anonymous.delete("/api/v1/me/mfa"),
        anonymous.delete("/api/v1/users/00000000-0000-0000-0000-000000000000/mfa"),
    ]
    assert [a.status_code for a in answers] == [401] * 5
    made = sign_in("alex", PASSWORD).post(
        "/api/v1/tokens", json={"name": "reader", "scopes": ["pim.audit.read"]}
    )
    narrow = {"Authorization": f"Bearer {made.json()['token']}"}
    assert anonymous.post("/api/v1/me/mfa", headers=narrow).status_code == 403


def test_a_code_that_is_not_a_string_of_sensible_length_names_the_field(
    rt: Pimlico, sign_in: SignIn
) -> None:
    with_password(rt, "alex")
    answer = sign_in("alex", PASSWORD).post("/api/v1/me/mfa/verify", json={"code": "1" * 65})
    assert answer.status_code == 400
    assert [e["field"] for e in answer.json()["errors"]] == ["code"]


def test_an_administrators_assignment_that_requires_mfa_accepts_their_step_up(
    rt: Pimlico, sign_in: SignIn, clock: FixedClock, admin: TestClient
) -> None:
    eve = with_password(rt, "eve")
    policy(rt, READER, {"assignment": {"active_require_mfa": True}})
    assign = {
        "action": "admin_assign",
        "kind": "active",
        "principal": {"type": "user", "id": eve},
        "target": READER_JSON,
        "schedule": {"expiration": {"type": "after_duration", "duration": "P1D"}},
        "justification": "incident cover",
    }
    before = rows(rt, AssignmentRow)

    refused = admin.post("/api/v1/requests", json=assign)
    assert refused.status_code == 400
    assert refused.json()["rules"] == ["MfaRule"]
    assert rows(rt, AssignmentRow) == before

    verified(admin, clock)
    dry = admin.post("/api/v1/requests", json={**assign, "dry_run": True})
    assert dry.status_code == 200, dry.text
    assert rows(rt, AssignmentRow) == before
    made = admin.post("/api/v1/requests", json=assign)
    assert made.status_code == 201, made.text
    assert made.json()["status"] == "provisioned"
    assert rows(rt, AssignmentRow) == before + 1
