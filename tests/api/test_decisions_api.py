"""Decisions through the API: check, the batch, explain, effective access, and reading one's
own writes with ``at_least_revision``."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient

from pimlico.api.routes.decisions import DecisionOut, answer_json
from pimlico.domain.model import AssignmentKind, PrincipalRef, PrincipalType, Target
from pimlico.services import accounts, assignments, decisions, directory, role_settings
from pimlico.services.runtime import Pimlico
from tests.api.conftest import PASSWORD, SignIn
from tests.integration.world import OPERATOR, group, role, user


def purger_through_a_group(rt: Pimlico) -> tuple[str, str, str]:
    """Alex is in 'responders', which holds a purge role at /apps/mail: (alex, group, role)."""
    alex = user(rt, "alex").id
    accounts.set_password(rt, actor=OPERATOR, user_id=alex, password=PASSWORD)
    responders = group(rt, "responders", role_assignable=True).id
    directory.add_member(
        rt, actor=OPERATOR, group_id=responders, member=PrincipalRef(PrincipalType.USER, alex)
    )
    purger = role(rt, "Purger", "mail.purge")
    assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ACTIVE,
        principal=PrincipalRef(PrincipalType.GROUP, responders),
        target=Target.role(purger, "/apps/mail"),
        duration=timedelta(days=30),
        justification="responders purge",
    )
    return alex, responders, purger


def test_anyone_may_ask_about_themselves_and_explain_names_the_chain(
    rt: Pimlico, sign_in: SignIn
) -> None:
    alex_id, responders, purger = purger_through_a_group(rt)
    alex = sign_in("alex", PASSWORD)
    question = {"principal_id": alex_id, "permission": "mail.purge", "scope": "/apps/mail/x"}
    checked = alex.post("/api/v1/decisions/check", json=question)
    assert checked.status_code == 200, checked.text
    assert checked.json()["allowed"] is True
    assert "grant" not in checked.json()
    explained = alex.post("/api/v1/decisions/explain", json=question).json()
    grant = explained["grant"]
    assert (grant["role_id"], grant["holder_id"], grant["scope"]) == (
        purger,
        responders,
        "/apps/mail",
    )
    assert [(s["member_id"], s["group_id"]) for s in grant["chain"]] == [(alex_id, responders)]
    elsewhere = alex.post(
        "/api/v1/decisions/check", json={**question, "scope": "/apps/defender"}
    ).json()
    assert elsewhere["allowed"] is False


def test_the_batch_answers_every_question_in_order(rt: Pimlico, sign_in: SignIn) -> None:
    alex_id, _, _ = purger_through_a_group(rt)
    alex = sign_in("alex", PASSWORD)
    asked = [
        {"principal_id": alex_id, "permission": p, "scope": s}
        for p, s in [("mail.purge", "/apps/mail"), ("mail.read", "/apps/mail"), ("mail.purge", "/")]
    ]
    answer = alex.post("/api/v1/decisions/check-batch", json={"questions": asked})
    assert answer.status_code == 200
    assert [r["allowed"] for r in answer.json()["results"]] == [True, False, False]
    too_many = alex.post("/api/v1/decisions/check-batch", json={"questions": asked * 400})
    assert too_many.status_code == 400
    assert too_many.json()["errors"][0]["field"] == "questions"


def test_a_write_s_revision_makes_the_next_check_see_it(
    rt: Pimlico, admin: TestClient, admin_id: str
) -> None:
    bob = user(rt, "bob").id
    role_id = role(rt, "Reader", "app.read")
    role_settings.update_policy(
        rt,
        actor=OPERATOR,
        target_type=Target.role(role_id).type,
        object_id=role_id,
        changes={"activation": {"require_mfa": False}},
    )
    made = admin.post(
        "/api/v1/requests",
        json={
            "action": "admin_assign",
            "kind": "active",
            "principal": {"type": "user", "id": bob},
            "target": {"type": "role", "object_id": role_id, "scope": "/"},
            "schedule": {"expiration": {"type": "after_duration", "duration": "P1D"}},
            "justification": "bob reads",
        },
    )
    assert made.status_code == 201, made.text
    revision = int(made.headers["Pimlico-Revision"])
    answer = admin.post(
        "/api/v1/decisions/check",
        json={"principal_id": bob, "permission": "app.read", "at_least_revision": revision},
    ).json()
    assert answer["allowed"] is True
    assert answer["revision"] >= revision
    ahead = admin.post(
        "/api/v1/decisions/check",
        json={"principal_id": bob, "permission": "app.read", "at_least_revision": revision + 99},
    )
    assert ahead.status_code == 400
    access = admin.get(f"/api/v1/principals/{bob}/access").json()
    assert [r["role_id"] for r in access["roles"]] == [role_id]
    assert ["app.read", "/"] in access["permissions"]


def test_a_malformed_check_is_a_problem_naming_each_field(admin: TestClient) -> None:
    path = "/api/v1/decisions/check"
    missing = admin.post(path, json={"scope": "/"})
    assert missing.status_code == 400, missing.text
    assert missing.headers["content-type"] == "application/problem+json"
    fields = {(e["field"], e["rule"]) for e in missing.json()["errors"]}
    assert {("principal_id", "missing"), ("permission", "missing")} <= fields
    typed = admin.post(
        path, json={"principal_id": "x", "permission": "p", "at_least_revision": -1, "at": "no"}
    )
    assert typed.status_code == 400, typed.text
    named = {e["field"] for e in typed.json()["errors"]}
    assert {"at_least_revision", "at"} <= named
    broken = admin.post(
        path, content=b'{"principal_id": ', headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 400, broken.text
    assert broken.json()["code"] == "InvalidInput"
    anonymous_first = admin.post(path, json={}, headers={"Authorization": "Bearer nope"})
    assert anonymous_first.status_code == 401


def test_check_sends_what_the_decision_model_would(rt: Pimlico) -> None:
    """``check`` writes its answer without ``DecisionOut``: the bytes must be the model's."""
    alex_id, _, _ = purger_through_a_group(rt)
    instants = [
        None,
        datetime(2026, 11, 22, 12, 0, tzinfo=UTC),
        datetime(2026, 11, 22, 13, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2))),
        datetime(2026, 11, 22, 12, 0),  # noqa: DTZ001 (naive, as a body without an offset parses)
    ]
    answers = [
        decisions.check(
            rt, actor=None, principal_id=pid, permission="mail.purge", scope=scope, at=at
        )
        for at in instants
        for pid, scope in [(alex_id, "/apps/mail/x"), (alex_id, "/"), ("nobody", "/apps/mail")]
    ]
    assert {a.allowed for a in answers} == {True, False}
    assert any(a.grant is not None for a in answers)
    for decision in answers:
        model = DecisionOut.of(decision, explain=False).model_dump_json(exclude_none=True)
        assert answer_json(decision) == model.encode()


def _post(
    app: Any, path: str, authorization: str, messages: list[dict[str, Any]]
) -> tuple[int, bytes]:
    """``app`` called as a server would, with the request body in ``messages`` as given."""
    sent: list[dict[str, Any]] = []
    incoming = iter(messages)

    async def receive() -> dict[str, Any]:
        return next(incoming)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", authorization.encode()),
            (b"content-type", b"application/json"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    anyio.run(app, scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_check_reads_a_body_sent_in_pieces_and_a_client_gone_is_no_error(
    rt: Pimlico, sign_in: SignIn, caplog: pytest.LogCaptureFixture
) -> None:
    alex_id, _, _ = purger_through_a_group(rt)
    alex = sign_in("alex", PASSWORD)
    path, authorization = "/api/v1/decisions/check", alex.headers["Authorization"]
    body = json.dumps({"principal_id": alex_id, "permission": "mail.purge", "scope": "/apps/mail"})
    pieces = [body[:5], body[5:20], body[20:]]
    status, answer = _post(
        alex.app,
        path,
        authorization,
        [
            {"type": "http.request", "body": piece.encode(), "more_body": i < len(pieces) - 1}
            for i, piece in enumerate(pieces)
        ],
    )
    assert status == 200, answer
    assert json.loads(answer)["allowed"] is True

    with caplog.at_level(logging.INFO):
        status, answer = _post(
            alex.app,
            path,
            authorization,
            [
                {"type": "http.request", "body": body[:5].encode(), "more_body": True},
                {"type": "http.disconnect"},
            ],
        )
    assert status == 499  # logged and counted as the client's leaving, never a 500
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
