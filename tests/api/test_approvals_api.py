"""Approvals through the API, on SQLite and PostgreSQL: the inbox, approve, deny, and the
DESIGN.md story end to end — Alex asks for the purge group, cannot approve his own request,
Bob approves, and a check that passes the approval's revision answers allowed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from pimlico.clock import FixedClock
from pimlico.db.tables import AssignmentRow
from pimlico.services.runtime import Pimlico
from pimlico.settings import Settings
from tests.api.conftest import SignIn
from tests.api.test_requests_api import (
    READER_JSON,
    activation,
    allowed,
    eligible,
    mfa_settings,
    purge_request,
    rows,
    story,
    verified,
)


@pytest.fixture
def settings(migrated_url: str) -> Settings:
    return mfa_settings(migrated_url)


def test_the_story_alex_asks_bob_approves_and_alex_may_purge(
    rt: Pimlico, sign_in: SignIn, clock: FixedClock
) -> None:
    s = story(rt, sign_in)
    verified(s.alex, clock)
    reader = s.alex.post("/api/v1/requests", json=activation(READER_JSON))
    assert reader.status_code == 201, reader.text
    assert not allowed(s.alex, s.alex_id, "mail.purge", reader.headers["Pimlico-Revision"])

    asked = s.alex.post("/api/v1/requests", json=activation(s.purge_json, **purge_request()))
    assert asked.status_code == 201, asked.text
    request = asked.json()
    assert request["status"] == "pending_approval"
    assert request["ticket"] == {"system": "ServiceNow", "number": "INC-42"}
    assert request["approval"]["current_stage"] == 1
    assert request["approval"]["stages"][0]["approvers"] == [{"type": "user", "id": s.bob_id}]
    assert not allowed(s.alex, s.alex_id, "mail.purge", asked.headers["Pimlico-Revision"])

    assert s.alex.get("/api/v1/approvals").json()["items"] == []
    own = s.alex.post(
        f"/api/v1/approvals/{request['id']}/approve", json={"justification": "it is me"}
    )
    assert own.status_code == 403
    assert own.json()["code"] == "PermissionDenied"
    assert s.alex.get(f"/api/v1/requests/{request['id']}").json()["status"] == "pending_approval"

    inbox = s.bob.get("/api/v1/approvals").json()["items"]
    assert [r["id"] for r in inbox] == [request["id"]]
    clock.advance(timedelta(minutes=5))
    approved = s.bob.post(
        f"/api/v1/approvals/{request['id']}/approve", json={"justification": "INC-42 checked"}
    )

    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert body["status"] == "provisioned"
    assert body["approval"]["current_stage"] is None
    assert [
        (d["stage"], d["approver_id"], d["approved"]) for d in body["approval"]["decisions"]
    ] == [(1, s.bob_id, True)]
    assert allowed(s.alex, s.alex_id, "mail.purge", approved.headers["Pimlico-Revision"])
    assert s.bob.get("/api/v1/approvals").json()["items"] == []


def test_a_stage_that_asks_for_a_justification_refuses_a_decision_without_one(
    rt: Pimlico, sign_in: SignIn, clock: FixedClock
) -> None:
    s = story(rt, sign_in)
    verified(s.alex, clock)
    asked = s.alex.post("/api/v1/requests", json=activation(s.purge_json, **purge_request()))
    path = f"/api/v1/approvals/{asked.json()['id']}"

    bare = s.bob.post(f"{path}/deny")

    assert bare.status_code == 400
    assert [(e["field"], e["rule"]) for e in bare.json()["errors"]] == [
        ("justification", "Required")
    ]
    assert s.bob.get("/api/v1/approvals").json()["items"] != []


def test_bob_denies_nothing_is_granted_and_a_later_decision_is_already_decided(
    rt: Pimlico, sign_in: SignIn, clock: FixedClock
) -> None:
    s = story(rt, sign_in)
    verified(s.alex, clock)
    asked = s.alex.post("/api/v1/requests", json=activation(s.purge_json, **purge_request()))
    path = f"/api/v1/approvals/{asked.json()['id']}"
    assignments_before = rows(rt, AssignmentRow)

    denied = s.bob.post(f"{path}/deny", json={"justification": "no such incident"})

    assert denied.status_code == 200, denied.text
    assert denied.json()["status"] == "denied"
    assert denied.json()["assignment_id"] is None
    assert rows(rt, AssignmentRow) == assignments_before
    assert not allowed(s.alex, s.alex_id, "mail.purge", denied.headers["Pimlico-Revision"])
    late = s.bob.post(f"{path}/approve", json={"justification": "changed my mind"})
    assert late.status_code == 409
    assert late.json()["code"] == "AlreadyDecided"


def test_someone_who_is_not_an_approver_sees_nothing_to_decide_and_may_not_decide(
    rt: Pimlico, sign_in: SignIn, clock: FixedClock
) -> None:
    s = story(rt, sign_in)
    verified(s.alex, clock)
    asked = s.alex.post("/api/v1/requests", json=activation(s.purge_json, **purge_request()))

    assert s.eve.get("/api/v1/approvals").json()["items"] == []
    refused = s.eve.post(
        f"/api/v1/approvals/{asked.json()['id']}/approve", json={"justification": "sure"}
    )
    assert refused.status_code == 403
    assert (
        s.alex.get(f"/api/v1/requests/{asked.json()['id']}").json()["approval"]["decisions"] == []
    )


def test_deciding_an_unknown_request_is_404(rt: Pimlico, sign_in: SignIn) -> None:
    s = story(rt, sign_in)
    answer = s.bob.post(
        "/api/v1/approvals/00000000-0000-0000-0000-000000000000/approve",
        json={"justification": "x"},
    )
    assert answer.status_code == 404


def test_anonymous_callers_are_401_on_every_approval_operation(anonymous: TestClient) -> None:
    missing = "00000000-0000-0000-0000-000000000000"
    answers = [
        anonymous.get("/api/v1/approvals"),
        anonymous.post(f"/api/v1/approvals/{missing}/approve", json={}),
        anonymous.post(f"/api/v1/approvals/{missing}/deny", json={}),
    ]
    assert [a.status_code for a in answers] == [401] * 3


def test_the_inbox_walks_by_cursor(rt: Pimlico, sign_in: SignIn, clock: FixedClock) -> None:
    s = story(rt, sign_in)
    verified(s.alex, clock)
    asked = s.alex.post("/api/v1/requests", json=activation(s.purge_json, **purge_request()))
    verified(s.eve, clock)  # Eve is made eligible too, and asks as well
    eligible(rt, s.eve_id, s.purge)
    clock.advance(timedelta(seconds=1))
    other = s.eve.post("/api/v1/requests", json=activation(s.purge_json, **purge_request()))
    assert other.status_code == 201, other.text

    first = s.bob.get("/api/v1/approvals", params={"limit": 1}).json()
    second = s.bob.get(
        "/api/v1/approvals", params={"limit": 1, "cursor": first["next_cursor"]}
    ).json()

    assert [r["id"] for r in first["items"] + second["items"]] == [
        other.json()["id"],
        asked.json()["id"],
    ]
    assert second.get("next_cursor") is None
