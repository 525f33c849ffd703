"""Assignment schedules and instances through the API, on SQLite and PostgreSQL: one's own
without any admin permission, everyone's with ``pim.assignments.read``, filters, cursors."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from pimlico.clock import FixedClock
from pimlico.domain.catalogue import SECURITY_READER
from pimlico.domain.model import AssignmentKind, PrincipalRef, PrincipalType, Target
from pimlico.services import accounts, assignments, directory
from pimlico.services.runtime import Pimlico
from pimlico.settings import Settings
from tests.api.conftest import PASSWORD, SignIn
from tests.api.test_auth import with_password
from tests.api.test_requests_api import (
    READER,
    READER_JSON,
    activation,
    mfa_settings,
    story,
    verified,
)
from tests.integration.world import OPERATOR

LISTS = [
    "/api/v1/assignments/eligible/schedules",
    "/api/v1/assignments/eligible/instances",
    "/api/v1/assignments/active/schedules",
    "/api/v1/assignments/active/instances",
]


@pytest.fixture
def settings(migrated_url: str) -> Settings:
    return mfa_settings(migrated_url)


def ids(answer: Any) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [a["id"] for a in answer.json()["items"]]


def test_a_user_sees_their_own_eligibilities_without_any_admin_permission(
    rt: Pimlico, sign_in: SignIn
) -> None:
    s = story(rt, sign_in)

    mine = s.alex.get("/api/v1/assignments/eligible/schedules?mine=true").json()["items"]

    assert {(a["target"]["type"], a["target"]["object_id"]) for a in mine} == {
        ("role", READER.object_id),
        ("group_member", s.purge.object_id),
    }
    assert all(a["principal"] == {"type": "user", "id": s.alex_id} for a in mine)
    assert all(a["in_force"] for a in mine)
    assert ids(s.eve.get("/api/v1/assignments/eligible/schedules?mine=true")) == []
    assert ids(s.alex.get("/api/v1/assignments/active/instances?mine=true")) == []


def test_an_activation_is_an_active_instance_of_its_holder(
    rt: Pimlico, sign_in: SignIn, clock: FixedClock
) -> None:
    s = story(rt, sign_in)
    verified(s.alex, clock)
    activated = s.alex.post("/api/v1/requests", json=activation(READER_JSON))

    active = s.alex.get("/api/v1/assignments/active/instances?mine=true").json()["items"]

    assert [a["id"] for a in active] == [activated.json()["assignment_id"]]
    assert active[0]["activated_from"] is not None
    assert active[0]["request_id"] == activated.json()["id"]


def test_others_assignments_need_the_read_permission(
    rt: Pimlico, sign_in: SignIn, admin: TestClient
) -> None:
    s = story(rt, sign_in)
    for path in LISTS:
        assert s.eve.get(path).status_code == 403, path
        assert s.eve.get(path, params={"principal_id": s.alex_id}).status_code == 403, path
    everyone = ids(admin.get("/api/v1/assignments/eligible/schedules"))
    alex = ids(
        admin.get("/api/v1/assignments/eligible/schedules", params={"principal_id": s.alex_id})
    )
    assert len(alex) == 2
    assert set(alex) <= set(everyone)
    purge = admin.get(
        "/api/v1/assignments/eligible/schedules",
        params={"target_type": "group_member", "target_id": s.purge.object_id},
    ).json()["items"]
    assert [a["principal"]["id"] for a in purge] == [s.alex_id]


def test_a_future_assignment_is_a_schedule_but_not_yet_an_instance(
    rt: Pimlico, sign_in: SignIn, clock: FixedClock
) -> None:
    eve = with_password(rt, "eve")
    later = assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ELIGIBLE,
        principal=PrincipalRef(PrincipalType.USER, eve),
        target=READER,
        start=clock.now() + timedelta(days=1),
        duration=timedelta(days=30),
    ).value
    client = sign_in("eve", PASSWORD)

    schedules = client.get("/api/v1/assignments/eligible/schedules?mine=true").json()["items"]
    assert [(a["id"], a["in_force"]) for a in schedules] == [(later.id, False)]
    assert ids(client.get("/api/v1/assignments/eligible/instances?mine=true")) == []
    clock.advance(timedelta(days=1))
    client = sign_in("eve", PASSWORD)  # the first session has expired meanwhile
    assert ids(client.get("/api/v1/assignments/eligible/instances?mine=true")) == [later.id]


def test_assignment_lists_walk_by_cursor_without_repeats(
    rt: Pimlico, admin: TestClient, clock: FixedClock
) -> None:
    made = []
    for n in range(5):
        clock.advance(timedelta(seconds=1))
        user_id = with_password(rt, f"user{n}")
        made.append(
            assignments.assign(
                rt,
                actor=OPERATOR,
                kind=AssignmentKind.ELIGIBLE,
                principal=PrincipalRef(PrincipalType.USER, user_id),
                target=READER,
                duration=timedelta(days=30),
            ).value.id
        )
    path = "/api/v1/assignments/eligible/schedules"
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = admin.get(path, params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        seen += ids(page)
        cursor = page.json().get("next_cursor")
        if not cursor:
            break
    assert seen == ids(admin.get(path, params={"limit": 500}))
    assert seen[:5] == made[::-1]  # newest first


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"target_type": "role"}, "target_id"),
        ({"mine": "true", "principal_id": "x"}, "principal_id"),
        ({"target_type": "galaxy", "target_id": "x"}, "target_type"),
        ({"limit": 0}, "limit"),
    ],
)
def test_bad_filters_are_400_naming_the_field(
    rt: Pimlico, sign_in: SignIn, params: dict[str, str], field: str
) -> None:
    s = story(rt, sign_in)
    answer = s.alex.get("/api/v1/assignments/eligible/schedules", params=params)
    assert answer.status_code == 400, answer.text
    assert field in [e["field"] for e in answer.json()["errors"]]


def test_anonymous_callers_are_401_on_every_assignment_list(anonymous: TestClient) -> None:
    assert [anonymous.get(path).status_code for path in LISTS] == [401] * len(LISTS)


def statements(rt: Pimlico, client: TestClient, path: str) -> int:
    """How many SQL statements one ``GET path`` runs."""
    count = 0

    def note(*_: object) -> None:
        nonlocal count
        count += 1

    event.listen(rt.engine, "before_cursor_execute", note)
    try:
        assert client.get(path).status_code == 200
    finally:
        event.remove(rt.engine, "before_cursor_execute", note)
    return count


def test_assignment_lists_run_as_many_queries_for_many_items_as_for_few(
    rt: Pimlico, admin: TestClient
) -> None:
    def add(n: int) -> None:
        for i in range(n):
            holder = with_password(rt, f"u{n}-{i}")
            for kind in AssignmentKind:
                assignments.assign(
                    rt,
                    actor=OPERATOR,
                    kind=kind,
                    principal=PrincipalRef(PrincipalType.USER, holder),
                    target=READER,
                    duration=timedelta(days=30),
                    justification="query count",
                )

    admin.get("/api/v1/me")  # the token's first use is a write of its own, once
    add(2)
    few = [statements(rt, admin, path) for path in LISTS]
    add(10)
    many = [statements(rt, admin, path) for path in LISTS]
    assert many == few


def test_a_service_account_s_own_active_assignments_are_its_mine(
    rt: Pimlico, anonymous: TestClient
) -> None:
    robot = directory.create_service_account(rt, actor=OPERATOR, name="robot").value.id
    held = assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ACTIVE,
        principal=PrincipalRef(PrincipalType.SERVICE_ACCOUNT, robot),
        target=Target.role(SECURITY_READER.id),
        duration=timedelta(days=1),
        justification="a policy point",
    ).value
    bearer = accounts.issue_token(rt, actor=OPERATOR, name="n", service_account_id=robot).bearer
    headers = {"Authorization": f"Bearer {bearer}"}
    for path in ("/api/v1/assignments/active/instances", "/api/v1/assignments/active/schedules"):
        answer = anonymous.get(path, params={"mine": "true"}, headers=headers)
        assert ids(answer) == [held.id]
        assert answer.json()["items"][0]["principal"] == {"type": "service_account", "id": robot}
