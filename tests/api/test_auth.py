"""Signing in, tokens and their scopes, expiry and revocation, through the API."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select

from pimlico.clock import FixedClock
from pimlico.db.tables import ApiTokenRow, CredentialRow, RoleSettingsRow, UserRow
from pimlico.errors import NotAuthenticated
from pimlico.services import accounts, assignment_changes, directory
from pimlico.services.runtime import Actor, Pimlico
from tests.api.conftest import ADMIN, PASSWORD, SignIn
from tests.integration.world import OPERATOR, audit_count, user
from tests.unit.test_group_commit import wait_until


def with_password(rt: Pimlico, name: str, password: str = PASSWORD) -> str:
    user_id = user(rt, name).id
    accounts.set_password(rt, actor=OPERATOR, user_id=user_id, password=password)
    return user_id


def test_sign_in_gives_a_session_token_that_authenticates(
    rt: Pimlico, anonymous: TestClient
) -> None:
    alex = with_password(rt, "alex")
    answer = anonymous.post(
        "/api/v1/auth/sign-in", json={"user_name": "alex", "password": PASSWORD}
    )
    assert answer.status_code == 201, answer.text
    assert int(answer.headers["Pimlico-Revision"]) > 0
    body = answer.json()
    assert body["token"].startswith("pim_")
    assert body["details"]["kind"] == "session"
    me = anonymous.get("/api/v1/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.status_code == 200
    assert me.json()["principal_id"] == alex
    assert me.json()["name"] == "alex"


def test_unknown_user_and_wrong_password_get_the_same_answer(
    rt: Pimlico, anonymous: TestClient
) -> None:
    with_password(rt, "alex")
    unknown = anonymous.post(
        "/api/v1/auth/sign-in", json={"user_name": "nobody", "password": PASSWORD}
    )
    wrong = anonymous.post(
        "/api/v1/auth/sign-in", json={"user_name": "alex", "password": "not the password"}
    )
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json()["detail"] == wrong.json()["detail"]
    assert unknown.headers["content-type"] == "application/problem+json"
    assert unknown.json()["code"] == "NotAuthenticated"


def test_a_disabled_user_cannot_sign_in_even_with_the_right_password(
    rt: Pimlico, anonymous: TestClient
) -> None:
    alex = with_password(rt, "alex")
    directory.set_user_enabled(rt, actor=OPERATOR, user_id=alex, enabled=False)
    answer = anonymous.post(
        "/api/v1/auth/sign-in", json={"user_name": "alex", "password": PASSWORD}
    )
    assert answer.status_code == 401


def test_sign_in_locks_after_too_many_failures_until_the_window_passes(
    rt: Pimlico, anonymous: TestClient, clock: FixedClock
) -> None:
    with_password(rt, "alex")
    for _ in range(rt.settings.signin_max_attempts):
        failed = anonymous.post(
            "/api/v1/auth/sign-in", json={"user_name": "alex", "password": "wrong password!"}
        )
        assert failed.status_code == 401
    locked = anonymous.post(
        "/api/v1/auth/sign-in", json={"user_name": "alex", "password": PASSWORD}
    )
    assert locked.status_code == 429
    assert locked.json()["code"] == "TooManyAttempts"
    assert int(locked.headers["Retry-After"]) >= 1
    clock.advance(timedelta(seconds=rt.settings.signin_attempt_window))
    again = anonymous.post("/api/v1/auth/sign-in", json={"user_name": "alex", "password": PASSWORD})
    assert again.status_code == 201


def test_passwords_and_token_secrets_are_stored_only_as_hashes(
    rt: Pimlico, anonymous: TestClient
) -> None:
    with_password(rt, "alex")
    answer = anonymous.post(
        "/api/v1/auth/sign-in", json={"user_name": "alex", "password": PASSWORD}
    )
    # pim_<id>_<secret>: the id has no underscore, the secret may have some.
    secret = answer.json()["token"].split("_", 2)[2]
    with rt.reading() as s:
        stored = s.scalars(select(CredentialRow.password_hash)).all()
        hashes = s.scalars(select(ApiTokenRow.secret_hash)).all()
    assert stored
    assert all(h.startswith("$argon2id$") and PASSWORD not in h for h in stored)
    assert hashes
    assert all(secret not in h for h in hashes)


def test_calls_without_a_valid_token_are_refused(anonymous: TestClient, admin: TestClient) -> None:
    assert anonymous.get("/api/v1/me").status_code == 401
    bad = anonymous.get("/api/v1/me", headers={"Authorization": "Bearer pim_nonsense"})
    assert bad.status_code == 401
    assert bad.headers["WWW-Authenticate"].startswith("Bearer")
    token = admin.headers["Authorization"].removeprefix("Bearer ")
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert (
        anonymous.get("/api/v1/me", headers={"Authorization": f"Bearer {forged}"}).status_code
        == 401
    )
    basic = anonymous.get("/api/v1/me", headers={"Authorization": "Basic cm9vdDpwdw=="})
    assert basic.status_code == 401


def test_a_disabled_holder_s_tokens_stop_working_and_work_again_when_enabled(
    rt: Pimlico, anonymous: TestClient
) -> None:
    alex = with_password(rt, "alex")
    robot = directory.create_service_account(rt, actor=OPERATOR, name="robot").value.id
    person = accounts.issue_token(rt, actor=Actor.principal(alex), name="laptop").bearer
    script = accounts.issue_token(
        rt, actor=OPERATOR, name="nightly", service_account_id=robot
    ).bearer
    for bearer in (person, script):
        assert anonymous.get("/api/v1/me", headers=_bearer(bearer)).status_code == 200
    directory.set_user_enabled(rt, actor=OPERATOR, user_id=alex, enabled=False)
    directory.set_service_account_enabled(rt, actor=OPERATOR, account_id=robot, enabled=False)
    for bearer in (person, script):
        assert anonymous.get("/api/v1/me", headers=_bearer(bearer)).status_code == 401
    directory.set_user_enabled(rt, actor=OPERATOR, user_id=alex, enabled=True)
    directory.set_service_account_enabled(rt, actor=OPERATOR, account_id=robot, enabled=True)
    for bearer in (person, script):
        assert anonymous.get("/api/v1/me", headers=_bearer(bearer)).status_code == 200


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_sessions_expire(rt: Pimlico, admin: TestClient, clock: FixedClock) -> None:
    assert admin.get("/api/v1/me").status_code == 200
    clock.advance(timedelta(seconds=rt.settings.session_lifetime))
    assert admin.get("/api/v1/me").status_code == 401


def test_sign_out_revokes_the_token(admin: TestClient) -> None:
    assert admin.post("/api/v1/auth/sign-out").status_code == 204
    assert admin.get("/api/v1/me").status_code == 401


def test_a_personal_token_is_shown_once_listed_without_its_secret_and_revocable(
    admin: TestClient, anonymous: TestClient
) -> None:
    made = admin.post(
        "/api/v1/tokens", json={"name": "nightly", "scopes": ["pim.audit.read"], "lifetime": "P7D"}
    )
    assert made.status_code == 201, made.text
    bearer = made.json()["token"]
    token_id = made.json()["details"]["id"]
    listed = admin.get("/api/v1/tokens").json()["items"]
    assert token_id in {t["id"] for t in listed}
    assert bearer not in str(listed)
    using = {"Authorization": f"Bearer {bearer}"}
    assert anonymous.get("/api/v1/me", headers=using).json()["scopes"] == ["pim.audit.read"]
    assert admin.delete(f"/api/v1/tokens/{token_id}").status_code == 200
    assert anonymous.get("/api/v1/me", headers=using).status_code == 401


def test_a_scoped_token_cannot_use_permissions_outside_its_scopes(
    rt: Pimlico, admin: TestClient, anonymous: TestClient, admin_id: str
) -> None:
    made = admin.post("/api/v1/tokens", json={"name": "reader", "scopes": ["pim.audit.read"]})
    using = {"Authorization": f"Bearer {made.json()['token']}"}
    other = user(rt, "bob").id
    question = {"principal_id": other, "permission": "mail.purge", "scope": "/"}
    allowed = admin.post("/api/v1/decisions/check", json=question)
    assert allowed.status_code == 200
    refused = anonymous.post("/api/v1/decisions/check", json=question, headers=using)
    assert refused.status_code == 403
    assert refused.json()["code"] == "PermissionDenied"
    self_service = anonymous.put(
        "/api/v1/me/password",
        json={"password": "another long password", "current_password": PASSWORD},
        headers=using,
    )
    assert self_service.status_code == 403


def test_a_token_cannot_be_wider_than_the_token_that_made_it(
    admin: TestClient, anonymous: TestClient
) -> None:
    made = admin.post("/api/v1/tokens", json={"name": "narrow", "scopes": ["pim.audit.read"]})
    using = {"Authorization": f"Bearer {made.json()['token']}"}
    wider = anonymous.post("/api/v1/tokens", json={"name": "wide", "scopes": ["*"]}, headers=using)
    assert wider.status_code == 403


def test_bad_token_requests_name_the_field_and_rule(admin: TestClient) -> None:
    answer = admin.post(
        "/api/v1/tokens", json={"name": "x", "scopes": ["not a pattern"], "lifetime": "P9999D"}
    )
    assert answer.status_code == 400
    fields = {e["field"] for e in answer.json()["errors"]}
    assert "scopes[0]" in fields
    missing = admin.post("/api/v1/tokens", json={"scopes": ["*"]})
    assert missing.status_code == 400
    assert missing.json()["errors"][0]["field"] == "name"
    assert missing.json()["errors"][0]["rule"] == "missing"


def test_a_user_changes_their_password_with_the_current_one_and_sessions_end(
    rt: Pimlico, sign_in: SignIn, anonymous: TestClient
) -> None:
    with_password(rt, "alex")
    alex = sign_in("alex", PASSWORD)
    wrong = alex.put(
        "/api/v1/me/password", json={"password": "a new long password", "current_password": "x"}
    )
    assert wrong.status_code == 403
    changed = alex.put(
        "/api/v1/me/password",
        json={"password": "a new long password", "current_password": PASSWORD},
    )
    assert changed.status_code == 204
    assert alex.get("/api/v1/me").status_code == 401
    again = anonymous.post(
        "/api/v1/auth/sign-in", json={"user_name": "alex", "password": "a new long password"}
    )
    assert again.status_code == 201


def test_bootstrap_admin_stores_all_of_the_administrator_or_nothing(
    rt: Pimlico, anonymous: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the store failed while assigning")

    before = audit_count(rt)
    with monkeypatch.context() as patched:
        patched.setattr(assignment_changes, "create", broken)
        with pytest.raises(RuntimeError):
            accounts.bootstrap_admin(rt, user_name="root", password=PASSWORD)
    assert audit_count(rt) == before
    with rt.reading() as s:
        assert s.scalars(select(UserRow)).all() == []
        assert s.scalars(select(CredentialRow)).all() == []
        assert s.scalars(select(RoleSettingsRow)).all() == []
    accounts.bootstrap_admin(rt, user_name="root", password=PASSWORD)
    signed = anonymous.post(
        "/api/v1/auth/sign-in", json={"user_name": "root", "password": PASSWORD}
    )
    assert signed.status_code == 201, signed.text
    bearer = {"Authorization": f"Bearer {signed.json()['token']}"}
    assert anonymous.get("/api/v1/users", headers=bearer).status_code == 200


def test_bootstrap_admin_refuses_a_store_that_has_one(rt: Pimlico, admin_id: str) -> None:
    import pytest

    from pimlico.errors import Conflict

    with pytest.raises(Conflict):
        accounts.bootstrap_admin(rt, user_name="second", password=PASSWORD)
    assert ADMIN


def test_a_token_s_last_use_is_recorded_within_a_minute(
    admin: TestClient, anonymous: TestClient, clock: FixedClock
) -> None:
    made = admin.post("/api/v1/tokens", json={"name": "script"}).json()
    token_id = made["details"]["id"]
    assert made["details"]["last_used_at"] is None
    anonymous.get("/api/v1/me", headers={"Authorization": f"Bearer {made['token']}"})
    clock.advance(timedelta(minutes=1))
    answer = admin.get("/api/v1/tokens").json()["items"]  # (this use writes both)
    listed = {t["id"]: t for t in answer}
    assert listed[token_id]["last_used_at"] is not None


def test_tokens_first_used_at_the_same_time_are_read_together_each_answered_as_its_own(
    rt: Pimlico,
) -> None:
    holders = [user(rt, f"shift-{i}").id for i in range(5)]
    bearers = [
        accounts.issue_token(rt, actor=Actor.principal(h), name="session").bearer for h in holders
    ]
    revoked = accounts.issue_token(rt, actor=Actor.principal(holders[0]), name="old")
    accounts.revoke_token(rt, actor=Actor.principal(holders[0]), token_id=revoked.token.id)
    prefix, token_id, secret = bearers[1].split("_", 2)
    refused = {
        "revoked": revoked.bearer,
        "unknown": f"{prefix}_{uuid.uuid4()}_{secret}",
        "wrong secret": f"{prefix}_{token_id}_{secret[::-1]}",
    }
    asked = [*bearers, *refused.values()]
    reads: list[str] = []
    reading = accounts._cache(rt).reads

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "FROM api_tokens" in statement:
            reads.append(statement)
            if len(reads) == 1:  # the first read waits until every other caller is queued
                wait_until(lambda: reading.waiting() == len(asked) - 1)

    answers: dict[str, object] = {}

    def authenticate(bearer: str) -> None:
        try:
            answers[bearer] = accounts.authenticate(rt, bearer)[0].principal_id
        except NotAuthenticated as refusal:
            answers[bearer] = refusal

    event.listen(rt.engine, "before_cursor_execute", count)
    try:
        threads = [threading.Thread(target=authenticate, args=(b,)) for b in asked]
        threads[0].start()
        wait_until(lambda: len(reads) == 1)
        for thread in threads[1:]:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        event.remove(rt.engine, "before_cursor_execute", count)
    assert len(reads) == 2  # the first caller's read, then every other caller's in one
    assert [answers[b] for b in bearers] == holders
    for bearer in refused.values():
        assert isinstance(answers[bearer], NotAuthenticated)


def test_tokens_are_listed_newest_first_by_cursor_and_filtered(
    rt: Pimlico, admin: TestClient, admin_id: str, clock: FixedClock
) -> None:
    made: list[dict[str, str]] = []
    for n in range(5):
        clock.advance(timedelta(seconds=1))
        if n % 2:
            details = admin.post("/api/v1/tokens", json={"name": f"t{n}"}).json()["details"]
            made.append({"id": details["id"], "kind": details["kind"]})
        else:
            token = accounts.sign_in(rt, user_name=ADMIN, password=PASSWORD).token
            made.append({"id": token.id, "kind": token.kind})
    revoked = made[1]["id"]
    assert admin.delete(f"/api/v1/tokens/{revoked}").status_code == 200

    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = admin.get("/api/v1/tokens", params=params).json()
        assert len(page["items"]) <= 2
        seen += [t["id"] for t in page["items"]]
        cursor = page.get("next_cursor")
        if cursor is None:
            break
    everything = admin.get("/api/v1/tokens", params={"limit": 500}).json()["items"]
    assert seen == [t["id"] for t in everything]
    assert len(seen) == len(set(seen))
    created = [t["created_at"] for t in everything]
    assert created == sorted(created, reverse=True)
    assert {t["id"] for t in made} <= set(seen)

    personal = admin.get("/api/v1/tokens", params={"kind": "personal"}).json()["items"]
    assert {t["kind"] for t in personal} == {"personal"}
    assert {t["id"] for t in personal} == {t["id"] for t in made if t["kind"] == "personal"}
    usable = admin.get("/api/v1/tokens", params={"usable": True}).json()["items"]
    assert revoked in seen
    assert revoked not in {t["id"] for t in usable}
    assert all(t["revoked_at"] is None for t in usable)

    for params, field in (({"kind": "forever"}, "kind"), ({"cursor": "not-a-cursor"}, "cursor")):
        refused = admin.get("/api/v1/tokens", params=params)
        assert refused.status_code == 400, refused.text
        assert field in {e["field"] for e in refused.json()["errors"]}
