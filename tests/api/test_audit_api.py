"""The audit log through the API: query with filters and cursor paging, export as JSON lines
and CSV (streamed), verify the chain; and only holders of ``pim.audit.read`` get any of it."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from pimlico.api.routes import audit as audit_routes
from pimlico.clock import FixedClock
from pimlico.db.audit import EXPORT_FIELDS
from pimlico.db.tables import AuditEventRow
from pimlico.domain.audit import AuditRecord, canonical_json, verify_chain
from pimlico.services import accounts, directory
from pimlico.services.runtime import Pimlico
from tests.api.conftest import PASSWORD, SignIn
from tests.factories import T0
from tests.integration.world import OPERATOR

EVENTS = "/api/v1/audit/events"
EXPORT = "/api/v1/audit/export"
VERIFY = "/api/v1/audit/verify"


def person(rt: Pimlico, name: str) -> str:
    """A user who can sign in and holds nothing."""
    made = directory.create_user(rt, actor=OPERATOR, user_name=name).value
    accounts.set_password(rt, actor=OPERATOR, user_id=made.id, password=PASSWORD)
    return made.id


def every_event(client: TestClient, **filters: str) -> list[dict[str, Any]]:
    answer = client.get(EVENTS, params={**filters, "limit": "500"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body.get("next_cursor") is None
    items: list[dict[str, Any]] = body["items"]
    return items


def test_every_filter_narrows_the_events_and_they_come_oldest_first(
    rt: Pimlico, admin: TestClient, clock: FixedClock
) -> None:
    early = directory.create_user(rt, actor=OPERATOR, user_name="early").value
    clock.advance(timedelta(hours=1))
    late = directory.create_user(rt, actor=OPERATOR, user_name="late").value

    everything = every_event(admin)
    sequences = [e["sequence"] for e in everything]
    assert sequences == sorted(sequences)
    assert len(set(sequences)) == len(sequences)

    created = every_event(admin, action="user.create", actor=OPERATOR.name)
    assert [e["target_id"] for e in created] == [early.id, late.id]
    assert created[0]["after"]["user_name"] == "early"
    assert created[0]["before"] is None

    about_late = every_event(admin, target_type="user", target_id=late.id)
    assert {e["target_id"] for e in about_late} == {late.id}
    assert [e["action"] for e in about_late] == ["user.create"]

    since = (T0 + timedelta(minutes=30)).isoformat()
    after_the_hour = every_event(admin, action="user.create", since=since)
    assert [e["target_id"] for e in after_the_hour] == [late.id]
    before_the_hour = every_event(admin, action="user.create", until=since)
    assert late.id not in {e["target_id"] for e in before_the_hour}
    assert early.id in {e["target_id"] for e in before_the_hour}

    assert every_event(admin, actor="nobody-at-all") == []


def test_pages_follow_each_other_without_repeats_or_gaps(rt: Pimlico, admin: TestClient) -> None:
    for n in range(7):
        directory.create_user(rt, actor=OPERATOR, user_name=f"user{n}")
    everything = [e["sequence"] for e in every_event(admin)]

    seen: list[object] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        answer = admin.get(EVENTS, params=params)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert len(body["items"]) <= 3
        seen.extend(e["sequence"] for e in body["items"])
        pages += 1
        cursor = body.get("next_cursor")
        if cursor is None:
            break
    assert seen == everything
    assert pages == -(-len(everything) // 3)


def test_a_cursor_this_list_did_not_give_is_refused_by_name(admin: TestClient) -> None:
    for cursor in ("not-a-cursor", "WyJhIiwiYiJd"):  # the second: ["a","b"], another list's
        answer = admin.get(EVENTS, params={"cursor": cursor})
        assert answer.status_code == 400, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert [e["field"] for e in answer.json()["errors"]] == ["cursor"]


def test_the_jsonl_export_holds_every_field_and_re_verifies(
    rt: Pimlico, admin: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small chunks and one chunk of slack, so that this export streams in many pieces with
    # the writer waiting on the reader.
    monkeypatch.setattr(audit_routes, "_CHUNK", 200)
    monkeypatch.setattr(audit_routes, "_CHUNKS_AHEAD", 1)
    for n in range(5):
        directory.create_user(rt, actor=OPERATOR, user_name=f"user{n}")

    answer = admin.get(EXPORT, params={"format": "jsonl"})

    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/x-ndjson"
    assert "pimlico-audit.jsonl" in answer.headers["content-disposition"]
    lines = [json.loads(line) for line in answer.text.splitlines()]
    assert [line["sequence"] for line in lines] == [e["sequence"] for e in every_event(admin)]
    assert set(lines[0]) == set(EXPORT_FIELDS)
    records = [
        AuditRecord(
            **{
                **line,
                "occurred_at": datetime.fromisoformat(line["occurred_at"]),
                "before": _canonical(line["before"]),
                "after": _canonical(line["after"]),
            }
        )
        for line in lines
    ]
    assert verify_chain(records) is None


def test_the_csv_export_has_a_header_and_one_row_per_event_and_takes_filters(
    rt: Pimlico, admin: TestClient
) -> None:
    made = directory.create_user(rt, actor=OPERATOR, user_name="someone").value

    answer = admin.get(EXPORT, params={"format": "csv", "actor": OPERATOR.name})

    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert tuple(rows[0]) == EXPORT_FIELDS
    body = [dict(zip(EXPORT_FIELDS, row, strict=True)) for row in rows[1:]]
    assert [r["target_id"] for r in body] == [made.id]
    assert json.loads(body[0]["after"])["user_name"] == "someone"


def test_an_unknown_export_format_is_refused_by_name(admin: TestClient) -> None:
    answer = admin.get(EXPORT, params={"format": "xlsx"})
    assert answer.status_code == 400
    assert [e["field"] for e in answer.json()["errors"]] == ["format"]


def test_verify_says_the_chain_is_intact_then_names_the_edited_event(
    rt: Pimlico, admin: TestClient
) -> None:
    directory.create_user(rt, actor=OPERATOR, user_name="someone")
    intact = admin.get(VERIFY)
    assert intact.status_code == 200, intact.text
    events = len(every_event(admin))
    assert intact.json() == {"intact": True, "events": events}

    with rt.sessions() as s, s.begin():
        s.execute(update(AuditEventRow).where(AuditEventRow.sequence == 3).values(reason="edited"))
    broken = admin.get(VERIFY).json()

    assert broken["intact"] is False
    assert broken["broken"]["sequence"] == 3
    assert broken["broken"]["reason"]


@pytest.mark.parametrize("path", [EVENTS, EXPORT, VERIFY])
def test_anonymous_callers_get_401(anonymous: TestClient, path: str) -> None:
    answer = anonymous.get(path)
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("path", [EVENTS, EXPORT, VERIFY])
def test_a_user_without_audit_read_gets_403_and_no_event(
    rt: Pimlico, admin: TestClient, sign_in: SignIn, path: str
) -> None:
    person(rt, "mallory")
    answer = sign_in("mallory", PASSWORD).get(path)
    assert answer.status_code == 403, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "PermissionDenied"


@pytest.mark.parametrize("path", [EVENTS, EXPORT, VERIFY])
def test_an_administrator_s_token_scoped_without_audit_read_gets_403(
    admin: TestClient, anonymous: TestClient, path: str
) -> None:
    issued = admin.post("/api/v1/tokens", json={"name": "checks", "scopes": ["pim.decisions.*"]})
    assert issued.status_code == 201, issued.text
    answer = anonymous.get(path, headers={"Authorization": f"Bearer {issued.json()['token']}"})
    assert answer.status_code == 403, answer.text
    assert admin.get(path).status_code == 200


def _canonical(value: object) -> str | None:
    return None if value is None else canonical_json(value)
