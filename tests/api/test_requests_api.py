"""Requests through the API, on SQLite and PostgreSQL: self-service and administrators'
actions, policy refusals naming their rules, dry runs, idempotency keys, lists with filters
and cursors, cancel — from the DESIGN.md story (Alex, Security Reader, the purge group).

The helpers here (the story's set-up, MFA through HTTP) are shared with the approvals,
assignments and MFA API tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pyotp
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import event, func, select

from pimlico.clock import FixedClock
from pimlico.db.tables import AssignmentRow, RequestRow
from pimlico.domain.catalogue import SECURITY_READER
from pimlico.domain.model import AssignmentKind, PrincipalRef, PrincipalType, Target, TargetType
from pimlico.services import assignments, directory, role_settings
from pimlico.services.runtime import Pimlico
from pimlico.settings import Settings
from tests.api.conftest import ADMIN, PASSWORD, SignIn
from tests.api.test_auth import with_password
from tests.integration.world import OPERATOR, group, role

KEY = "q5wqT0Vf0mB3rXy2kZ8nN4pL7sD1gH6jC9vE2aR5tYU="
READER = Target(TargetType.ROLE, SECURITY_READER.id, "/")
READER_JSON = {"type": "role", "object_id": SECURITY_READER.id, "scope": "/"}
STEP = timedelta(seconds=30)


def mfa_settings(migrated_url: str) -> Settings:
    """The API tests' settings, with a secret key so that MFA can be enrolled."""
    return Settings(
        database_url=migrated_url,
        max_nesting_depth=4,
        token_cache_seconds=0,
        secret_key=SecretStr(KEY),
        mfa_freshness=600,
    )


@pytest.fixture
def settings(migrated_url: str) -> Settings:
    return mfa_settings(migrated_url)


# -- the story's set-up (through the services: directory and roles are other routes) ------


def eligible(rt: Pimlico, user_id: str, target: Target) -> str:
    return assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ELIGIBLE,
        principal=PrincipalRef(PrincipalType.USER, user_id),
        target=target,
        duration=timedelta(days=90),
    ).value.id


def policy(rt: Pimlico, target: Target, changes: dict[str, object]) -> None:
    role_settings.update_policy(
        rt, actor=OPERATOR, target_type=target.type, object_id=target.object_id, changes=changes
    )


def purge_group(rt: Pimlico, approver_id: str) -> Target:
    """Search and Purge PIM (MFA, justification, ticket, approval by ``approver_id``), nested
    into Search and Purge, which holds the role that may purge email."""
    pim = group(rt, "Search and Purge PIM", role_assignable=True)
    app = group(rt, "Search and Purge", role_assignable=True)
    directory.add_member(rt, actor=OPERATOR, group_id=app.id, member=pim)
    purger = role(rt, "Purger", "mail.purge")
    assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ACTIVE,
        principal=app,
        target=Target(TargetType.ROLE, purger, "/"),
        duration=timedelta(days=90),
        justification="application role group",
    )
    target = Target(TargetType.GROUP_MEMBER, pim.id)
    policy(
        rt,
        target,
        {
            "activation": {"require_ticket": True, "maximum_duration": "PT4H"},
            "approval": {
                "required": True,
                "stages": [{"approvers": [{"type": "user", "id": approver_id}]}],
            },
        },
    )
    return target


@dataclass
class Story:
    """Alex (eligible for Security Reader and the purge group) and Bob (its approver),
    each signed in; Eve, signed in, holds nothing."""

    alex_id: str
    bob_id: str
    eve_id: str
    alex: TestClient
    bob: TestClient
    eve: TestClient
    purge: Target

    @property
    def purge_json(self) -> dict[str, str]:
        return {"type": "group_member", "object_id": self.purge.object_id}


def story(rt: Pimlico, sign_in: SignIn) -> Story:
    alex_id, bob_id, eve_id = (with_password(rt, n) for n in ("alex", "bob", "eve"))
    eligible(rt, alex_id, READER)
    policy(rt, READER, {"activation": {"require_justification": False}})
    purge = purge_group(rt, bob_id)
    eligible(rt, alex_id, purge)
    return Story(
        alex_id,
        bob_id,
        eve_id,
        sign_in("alex", PASSWORD),
        sign_in("bob", PASSWORD),
        sign_in("eve", PASSWORD),
        purge,
    )


def verified(client: TestClient, clock: FixedClock) -> str:
    """Enrol, confirm and verify a TOTP factor through HTTP; returns its secret. The
    verification is fresh from now."""
    enrolled = client.post("/api/v1/me/mfa")
    assert enrolled.status_code == 201, enrolled.text
    totp = pyotp.TOTP(enrolled.json()["secret"])
    confirmed = client.post("/api/v1/me/mfa/confirm", json={"code": totp.at(clock.now())})
    assert confirmed.status_code == 200, confirmed.text
    clock.advance(STEP)
    checked = client.post("/api/v1/me/mfa/verify", json={"code": totp.at(clock.now())})
    assert checked.status_code == 200, checked.text
    return str(enrolled.json()["secret"])


def activation(target: dict[str, str], **fields: Any) -> dict[str, Any]:
    return {"action": "self_activate", "target": target, **fields}


def purge_request() -> dict[str, Any]:
    return {
        "schedule": {"expiration": {"type": "after_duration", "duration": "PT1H"}},
        "justification": "phishing campaign INC-42",
        "ticket": {"system": "ServiceNow", "number": "INC-42"},
    }


def allowed(client: TestClient, who: str, permission: str, revision: str) -> bool:
    answer = client.post(
        "/api/v1/decisions/check",
        json={
            "principal_id": who,
            "permission": permission,
            "scope": "/",
            "at_least_revision": int(revision),
        },
    )
    assert answer.status_code == 200, answer.text
    return bool(answer.json()["allowed"])


def rows(rt: Pimlico, table: type[RequestRow] | type[AssignmentRow]) -> int:
    with rt.reading() as s:
        return s.scalar(select(func.count()).select_from(table)) or 0


# -- self-service ----------------------------------------------------------------------------


def test_alex_activates_security_reader_with_mfa_and_no_justification(
    rt: Pimlico, sign_in: SignIn, clock: FixedClock
) -> None:
    s = story(rt, sign_in)
    verified(s.alex, clock)

    answer = s.alex.post(
        "/api/v1/requests",
        json=activation(
            READER_JSON, schedule={"expiration": {"type": "after_duration", "duration": "PT2H"}}
        ),
    )

    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["status"] == "provisioned"
    assert body["requested_by"] == s.alex_id
    assert body["mfa_verified_at"] is not None
    assert body["approval"] is None
    assert body["assignment_id"]
    assert body["window"]["end"] is not None
    assert allowed(s.alex, s.alex_id, "security.read", answer.headers["Pimlico-Revision"])


def test_an_activation_without_mfa_is_refused_naming_the_mfa_rule_and_writes_nothing(
    rt: Pimlico, sign_in: SignIn
) -> None:
    s = story(rt, sign_in)
    before = rows(rt, RequestRow), rows(rt, AssignmentRow)

    answer = s.alex.post("/api/v1/requests", json=activation(READER_JSON))

    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["code"] == "RoleAssignmentRequestPolicyValidationFailed"
    assert problem["rules"] == ["MfaRule"]
    assert [e["rule"] for e in problem["errors"]] == ["MfaRule"]
    assert (rows(rt, RequestRow), rows(rt, AssignmentRow)) == before


def test_every_rule_the_purge_request_breaks_is_named_at_once(
    rt: Pimlico, sign_in: SignIn, clock: FixedClock
) -> None:
    s = story(rt, sign_in)
    verified(s.alex, clock)

    answer = s.alex.post(
        "/api/v1/requests",
        json=activation(
            s.purge_json, schedule={"expiration": {"type": "after_duration", "duration": "PT8H"}}
        ),
    )

    assert answer.status_code == 400
    assert set(answer.json()["rules"]) == {"JustificationRule", "TicketingRule", "ExpirationRule"}


def test_activating_twice_is_role_assignment_exists(
    rt: Pimlico, sign_in: SignIn, clock: FixedClock
) -> None:
    s = story(rt, sign_in)
    verified(s.alex, clock)
    first = s.alex.post("/api/v1/requests", json=activation(READER_JSON))
    assert first.status_code == 201
    before = rows(rt, RequestRow), rows(rt, AssignmentRow)

    again = s.alex.post("/api/v1/requests", json=activation(READER_JSON))

    assert again.status_code == 400
    assert again.json()["code"] == "RoleAssignmentExists"
    assert (rows(rt, RequestRow), rows(rt, AssignmentRow)) == before


def test_the_same_idempotency_key_answers_the_first_request(
    rt: Pimlico, sign_in: SignIn, clock: FixedClock
) -> None:
    s = story(rt, sign_in)
    verified(s.alex, clock)
    key = {"Idempotency-Key": "activate-reader-1"}

    first = s.alex.post("/api/v1/requests", json=activation(READER_JSON), headers=key)
    requests_after_first = rows(rt, RequestRow)
    again = s.alex.post("/api/v1/requests", json=activation(READER_JSON), headers=key)

    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["assignment_id"] == first.json()["assignment_id"]
    assert rows(rt, RequestRow) == requests_after_first


def test_a_dry_run_answers_what_would_happen_and_writes_nothing(
    rt: Pimlico, sign_in: SignIn, clock: FixedClock
) -> None:
    s = story(rt, sign_in)
    verified(s.alex, clock)
    before = rows(rt, RequestRow), rows(rt, AssignmentRow)

    dry = s.alex.post("/api/v1/requests", json=activation(READER_JSON, dry_run=True))

    assert dry.status_code == 200, dry.text
    assert dry.json()["dry_run"] is True
    assert dry.json()["status"] == "provisioned"
    assert "Pimlico-Revision" in dry.headers
    assert (rows(rt, RequestRow), rows(rt, AssignmentRow)) == before
    assert not allowed(s.alex, s.alex_id, "security.read", dry.headers["Pimlico-Revision"])


def test_a_dry_run_that_breaks_a_rule_is_refused_as_submitting_would_be(
    rt: Pimlico, sign_in: SignIn
) -> None:
    s = story(rt, sign_in)
    answer = s.alex.post("/api/v1/requests", json=activation(READER_JSON, dry_run=True))
    assert answer.status_code == 400
    assert answer.json()["rules"] == ["MfaRule"]


def test_alex_deactivates_early_and_access_stops(
    rt: Pimlico, sign_in: SignIn, clock: FixedClock
) -> None:
    s = story(rt, sign_in)
    verified(s.alex, clock)
    s.alex.post("/api/v1/requests", json=activation(READER_JSON))
    clock.advance(timedelta(minutes=10))

    answer = s.alex.post(
        "/api/v1/requests", json={"action": "self_deactivate", "target": READER_JSON}
    )

    assert answer.status_code == 201, answer.text
    assert answer.json()["status"] == "revoked"
    assert not allowed(s.alex, s.alex_id, "security.read", answer.headers["Pimlico-Revision"])


def test_deactivating_within_five_minutes_is_active_duration_too_short(
    rt: Pimlico, sign_in: SignIn, clock: FixedClock
) -> None:
    s = story(rt, sign_in)
    verified(s.alex, clock)
    s.alex.post("/api/v1/requests", json=activation(READER_JSON))
    answer = s.alex.post(
        "/api/v1/requests", json={"action": "self_deactivate", "target": READER_JSON}
    )
    assert answer.status_code == 400
    assert answer.json()["code"] == "ActiveDurationTooShort"


def test_extending_ones_eligibility_near_its_end_waits_for_an_approver(
    rt: Pimlico, sign_in: SignIn, admin: TestClient
) -> None:
    eve_id = with_password(rt, "eve")
    assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ELIGIBLE,
        principal=PrincipalRef(PrincipalType.USER, eve_id),
        target=READER,
        duration=timedelta(days=10),
    )
    eve = sign_in("eve", PASSWORD)

    asked = eve.post(
        "/api/v1/requests",
        json={
            "action": "self_extend",
            "kind": "eligible",
            "target": READER_JSON,
            "schedule": {"expiration": {"type": "after_duration", "duration": "P60D"}},
            "justification": "still on the team",
        },
    )

    assert asked.status_code == 201, asked.text
    assert asked.json()["status"] == "pending_approval"
    stage = asked.json()["approval"]["stages"][0]
    assert stage["approvers"] == []  # holders of pim.requests.approve decide
    approved = admin.post(
        f"/api/v1/approvals/{asked.json()['id']}/approve", json={"justification": "ok"}
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "provisioned"


# -- bad input, who may ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({"action": "self_levitate", "target": READER_JSON}, "action", "enum"),
        (
            activation(
                READER_JSON, schedule={"expiration": {"type": "after_duration", "duration": "P1Y"}}
            ),
            "schedule.expiration.duration",
            "value_error",
        ),
        (
            activation(
                READER_JSON,
                schedule={"expiration": {"type": "after_datetime", "end": "2026-03-01T12:00:00"}},
            ),
            "schedule.expiration.end",
            "timezone_aware",
        ),
        ({"action": "self_activate"}, "target", "Required"),
        (activation({"type": "role"}), "target.object_id", "missing"),
        (
            activation(READER_JSON, schedule={"expiration": {"type": "no_expiration"}}, x=1),
            "x",
            "extra_forbidden",
        ),
        (
            activation(
                READER_JSON,
                schedule={"expiration": {"type": "after_datetime"}},
            ),
            "schedule.end",
            "ExpirationRule",
        ),
        ({"action": "admin_remove"}, "assignment_id", "Required"),
    ],
)
def test_bad_input_is_400_naming_the_field_and_the_rule(
    rt: Pimlico, sign_in: SignIn, body: dict[str, Any], field: str, rule: str
) -> None:
    s = story(rt, sign_in)
    before = rows(rt, RequestRow)
    answer = s.alex.post("/api/v1/requests", json=body)
    assert answer.status_code == 400, answer.text
    assert {"field": field, "rule": rule} in [
        {"field": e["field"], "rule": e["rule"]} for e in answer.json()["errors"]
    ], answer.json()
    assert rows(rt, RequestRow) == before


def test_the_body_and_idempotency_key_are_checked_as_the_document_declares(
    rt: Pimlico, sign_in: SignIn
) -> None:
    """``POST /requests`` reads its arguments by hand (``solved_by``): each declared check
    holds, with the errors FastAPI would give, and nothing is written."""
    s = story(rt, sign_in)
    before = rows(rt, RequestRow)
    raw = b'{"action": "self_activate", "target": {"type": "role", "object_id": "x"}}'

    def refused(content: bytes, content_type: str | None, **headers: str) -> set[tuple[str, str]]:
        if content_type is not None:
            headers["Content-Type"] = content_type
        answer = s.alex.post("/api/v1/requests", content=content, headers=headers)
        assert answer.status_code == 400, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["code"] == "InvalidInput"
        return {(e["field"], e["rule"]) for e in answer.json()["errors"]}

    too_long = "k" * 257
    assert refused(b'{"action": "nope"}', "application/json", **{"Idempotency-Key": too_long}) == {
        ("header.Idempotency-Key", "string_too_long"),
        ("action", "enum"),
    }
    assert refused(raw, "application/json", **{"Idempotency-Key": too_long}) == {
        ("header.Idempotency-Key", "string_too_long")
    }
    assert refused(b"", "application/json") == {("body", "missing")}
    assert refused(b'{"action": ', "application/json") == {("body", "json_invalid")}
    # JSON only by its Content-Type (as FastAPI's strict content type): else not read as JSON
    assert refused(raw, "text/plain") == {("body", "model_attributes_type")}
    assert refused(raw, None) == {("body", "model_attributes_type")}
    assert refused(b'{"action": "self_activate", "also": 1}', "application/merge-patch+json") == {
        ("also", "extra_forbidden")
    }
    assert rows(rt, RequestRow) == before


def test_a_created_request_is_answered_as_reading_it_back_answers(
    rt: Pimlico, sign_in: SignIn, clock: FixedClock
) -> None:
    """The answer is serialised without the response model's second validation: its bytes
    must be those of the same request read through ``GET``."""
    s = story(rt, sign_in)
    verified(s.alex, clock)
    created = s.alex.post("/api/v1/requests", json=activation(READER_JSON))
    assert created.status_code == 201, created.text
    assert created.headers["content-type"] == "application/json"
    assert int(created.headers["Pimlico-Revision"]) > 0
    read = s.alex.get(f"/api/v1/requests/{created.json()['id']}")
    assert read.status_code == 200, read.text
    assert created.content == read.content


def test_anonymous_callers_are_401_on_every_request_operation(anonymous: TestClient) -> None:
    missing = "00000000-0000-0000-0000-000000000000"
    answers = [
        anonymous.post("/api/v1/requests", json=activation(READER_JSON)),
        anonymous.get("/api/v1/requests"),
        anonymous.get(f"/api/v1/requests/{missing}"),
        anonymous.post(f"/api/v1/requests/{missing}/cancel", json={}),
    ]
    assert [a.status_code for a in answers] == [401] * 4


def test_a_token_without_the_self_scope_cannot_activate(
    rt: Pimlico, sign_in: SignIn, clock: FixedClock, anonymous: TestClient
) -> None:
    s = story(rt, sign_in)
    verified(s.alex, clock)
    made = s.alex.post("/api/v1/tokens", json={"name": "reader", "scopes": ["pim.audit.read"]})
    assert made.status_code == 201, made.text
    narrow = {"Authorization": f"Bearer {made.json()['token']}"}
    before = rows(rt, RequestRow), rows(rt, AssignmentRow)

    answer = anonymous.post("/api/v1/requests", json=activation(READER_JSON), headers=narrow)

    assert answer.status_code == 403
    assert answer.json()["code"] == "PermissionDenied"
    assert (rows(rt, RequestRow), rows(rt, AssignmentRow)) == before


# -- administrators' actions -----------------------------------------------------------------


def test_the_administrator_assigns_updates_extends_and_removes_through_requests(
    rt: Pimlico, sign_in: SignIn, admin: TestClient
) -> None:
    eve = with_password(rt, "eve")
    assigned = admin.post(
        "/api/v1/requests",
        json={
            "action": "admin_assign",
            "kind": "eligible",
            "principal": {"type": "user", "id": eve},
            "target": READER_JSON,
            "schedule": {"expiration": {"type": "after_duration", "duration": "P30D"}},
        },
    )
    assert assigned.status_code == 201, assigned.text
    assert assigned.json()["status"] == "provisioned"
    assignment = assigned.json()["assignment_id"]

    for action, expiration in (
        ("admin_update", {"type": "after_duration", "duration": "P60D"}),
        ("admin_extend", {"type": "after_duration", "duration": "P90D"}),
    ):
        changed = admin.post(
            "/api/v1/requests",
            json={
                "action": action,
                "kind": "eligible",
                "assignment_id": assignment,
                "schedule": {"expiration": expiration},
            },
        )
        assert changed.status_code == 201, changed.text
        assert changed.json()["action"] == action
    removed = admin.post(
        "/api/v1/requests",
        json={"action": "admin_remove", "assignment_id": assignment, "justification": "left"},
    )
    assert removed.status_code == 201, removed.text
    assert removed.json()["status"] == "revoked"
    listed = admin.get(f"/api/v1/assignments/eligible/schedules?principal_id={eve}")
    assert listed.json()["items"] == []


def test_a_user_without_permission_cannot_assign_and_nothing_is_written(
    rt: Pimlico, sign_in: SignIn
) -> None:
    s = story(rt, sign_in)
    before = rows(rt, RequestRow), rows(rt, AssignmentRow)
    answer = s.eve.post(
        "/api/v1/requests",
        json={
            "action": "admin_assign",
            "kind": "active",
            "principal": {"type": "user", "id": s.eve_id},
            "target": READER_JSON,
            "schedule": {"expiration": {"type": "after_duration", "duration": "PT8H"}},
            "justification": "let me in",
        },
    )
    assert answer.status_code == 403
    assert answer.json()["code"] == "PermissionDenied"
    assert (rows(rt, RequestRow), rows(rt, AssignmentRow)) == before


# -- reading and canceling -------------------------------------------------------------------


def test_mine_lists_ones_own_requests_and_all_needs_the_read_permission(
    rt: Pimlico, sign_in: SignIn, clock: FixedClock, admin: TestClient
) -> None:
    s = story(rt, sign_in)
    verified(s.alex, clock)
    asked = s.alex.post("/api/v1/requests", json=activation(s.purge_json, **purge_request()))
    assert asked.status_code == 201

    mine = s.alex.get("/api/v1/requests?mine=true")
    assert [r["id"] for r in mine.json()["items"]] == [asked.json()["id"]]
    assert s.eve.get("/api/v1/requests?mine=true").json()["items"] == []
    assert s.eve.get("/api/v1/requests").status_code == 403
    every = admin.get("/api/v1/requests?action=self_activate")
    assert [r["id"] for r in every.json()["items"]] == [asked.json()["id"]]
    pending = admin.get(
        "/api/v1/requests",
        params={
            "status": "pending_approval",
            "target_type": "group_member",
            "target_id": s.purge.object_id,
            "principal_id": s.alex_id,
        },
    )
    assert [r["id"] for r in pending.json()["items"]] == [asked.json()["id"]]
    assert admin.get("/api/v1/requests?status=denied&action=self_activate").json()["items"] == []


def test_a_request_list_walks_by_cursor_newest_first_without_repeats(
    rt: Pimlico, sign_in: SignIn, clock: FixedClock, admin: TestClient
) -> None:
    made: list[str] = []
    for n in range(5):
        clock.advance(timedelta(seconds=1))
        user_id = with_password(rt, f"user{n}")
        answer = admin.post(
            "/api/v1/requests",
            json={
                "action": "admin_assign",
                "kind": "eligible",
                "principal": {"type": "user", "id": user_id},
                "target": READER_JSON,
                "schedule": {"expiration": {"type": "after_duration", "duration": "P30D"}},
            },
        )
        made.append(answer.json()["id"])
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = admin.get(
            "/api/v1/requests", params={"limit": 2, **({"cursor": cursor} if cursor else {})}
        ).json()
        seen += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    at_once = admin.get("/api/v1/requests", params={"limit": 500}).json()["items"]
    assert [r["id"] for r in seen] == [r["id"] for r in at_once]
    assert len({r["id"] for r in seen}) == len(seen)
    assert [r["id"] for r in seen[:5]] == made[::-1]  # newest first
    stamps = [r["requested_at"] for r in seen]
    assert stamps == sorted(stamps, reverse=True)
    assert admin.get("/api/v1/requests?cursor=nonsense").status_code == 400


def test_a_request_is_seen_by_its_requester_and_approver_not_by_others(
    rt: Pimlico, sign_in: SignIn, clock: FixedClock
) -> None:
    s = story(rt, sign_in)
    verified(s.alex, clock)
    asked = s.alex.post("/api/v1/requests", json=activation(s.purge_json, **purge_request()))
    path = f"/api/v1/requests/{asked.json()['id']}"

    assert s.alex.get(path).status_code == 200
    seen = s.bob.get(path)
    assert seen.status_code == 200
    assert seen.json()["approval"]["current_stage"] == 1
    assert s.eve.get(path).status_code == 403
    assert s.alex.get("/api/v1/requests/00000000-0000-0000-0000-000000000000").status_code == 404


def test_the_requester_cancels_a_pending_request_once(
    rt: Pimlico, sign_in: SignIn, clock: FixedClock
) -> None:
    s = story(rt, sign_in)
    verified(s.alex, clock)
    asked = s.alex.post("/api/v1/requests", json=activation(s.purge_json, **purge_request()))
    path = f"/api/v1/requests/{asked.json()['id']}/cancel"

    assert s.eve.post(path, json={"reason": "not mine"}).status_code == 403
    canceled = s.alex.post(path, json={"reason": "not needed"})

    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled"
    assert int(canceled.headers["Pimlico-Revision"]) > int(asked.headers["Pimlico-Revision"])
    again = s.alex.post(path, json={})
    assert again.status_code == 400
    assert again.json()["code"] == "RequestNotCancelable"


def test_an_expired_eligibility_is_renewed_by_request_or_by_the_administrator(
    rt: Pimlico, sign_in: SignIn, clock: FixedClock, admin_id: str
) -> None:
    eve_id, finn_id = with_password(rt, "eve"), with_password(rt, "finn")
    expired = {
        who: assignments.assign(
            rt,
            actor=OPERATOR,
            kind=AssignmentKind.ELIGIBLE,
            principal=PrincipalRef(PrincipalType.USER, who),
            target=READER,
            duration=timedelta(days=1),
        ).value.id
        for who in (eve_id, finn_id)
    }
    clock.advance(timedelta(days=2))
    eve, admin = sign_in("eve", PASSWORD), sign_in(ADMIN, PASSWORD)

    asked = eve.post(
        "/api/v1/requests",
        json={
            "action": "self_renew",
            "kind": "eligible",
            "target": READER_JSON,
            "schedule": {"expiration": {"type": "after_duration", "duration": "P30D"}},
            "justification": "back on the team",
        },
    )
    assert asked.status_code == 201, asked.text
    assert asked.json()["status"] == "pending_approval"
    approved = admin.post(
        f"/api/v1/approvals/{asked.json()['id']}/approve", json={"justification": "welcome"}
    )
    assert approved.json()["status"] == "provisioned", approved.text

    renewed = admin.post(
        "/api/v1/requests",
        json={
            "action": "admin_renew",
            "kind": "eligible",
            "assignment_id": expired[finn_id],
            "schedule": {"expiration": {"type": "after_duration", "duration": "P30D"}},
        },
    )
    assert renewed.status_code == 201, renewed.text
    assert renewed.json()["status"] == "provisioned"
    for who in (eve_id, finn_id):
        now = admin.get(
            "/api/v1/assignments/eligible/instances", params={"principal_id": who}
        ).json()["items"]
        assert len(now) == 1
        assert now[0]["id"] != expired[who]


def test_a_page_of_requests_runs_as_many_queries_for_many_requests_as_for_few(
    rt: Pimlico, admin: TestClient, clock: FixedClock
) -> None:
    def add(n: int) -> None:
        for i in range(n):
            clock.advance(timedelta(seconds=1))
            eligible(rt, with_password(rt, f"u{n}-{i}"), READER)

    def statements(path: str) -> int:
        count = 0

        def note(*_: object) -> None:
            nonlocal count
            count += 1

        event.listen(rt.engine, "before_cursor_execute", note)
        try:
            assert admin.get(path).status_code == 200
        finally:
            event.remove(rt.engine, "before_cursor_execute", note)
        return count

    admin.get("/api/v1/me")  # the token's first use is a write of its own, once
    add(3)
    first = admin.get("/api/v1/requests?limit=2").json()
    path = f"/api/v1/requests?limit=2&cursor={first['next_cursor']}"
    few = statements("/api/v1/requests?limit=2"), statements(path)
    add(12)
    assert (statements("/api/v1/requests?limit=2"), statements(path)) == few
