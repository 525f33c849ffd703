"""The security review's findings on the portal, each pinned: pages open for the roles built
for them (a Groups Administrator), forged input is refused with a 400 naming the field rather
than a 500 (cursors, times, durations), names and existence are told only to those who may
read them, framework refusals say what they mean, and the request lists' query counts do not
grow with the number of requests."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from pimlico.api import create_app
from pimlico.db.request_store import request_of
from pimlico.db.tables import RequestRow
from pimlico.demo import Demo, demo_password
from pimlico.domain.catalogue import GROUPS_ADMINISTRATOR, Perm
from pimlico.domain.model import AssignmentKind, PrincipalRef, PrincipalType, Target, TargetType
from pimlico.domain.requests import RequestAction, RequestStatus, Schedule
from pimlico.errors import PermissionDenied
from pimlico.services import (
    accounts,
    approvals,
    assignments,
    portal_admin,
    portal_directory,
    portal_requests,
    requests,
    role_settings,
    roles,
)
from pimlico.services.runtime import Actor, Pimlico
from pimlico.settings import Settings
from pimlico.web.session import TIME_ZONE
from tests.portal.conftest import Portal, Visit

OPERATOR = Actor.operator("test")
ASSIGNMENTS = "/portal/admin/assignments"
SETTINGS = "/portal/admin/settings"
AUDIT = "/portal/admin/audit"
HUGE = "P3000000D"


def _cursor(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def _grant(rt: Pimlico, user_id: str, role_id: str) -> None:
    """An ACTIVE assignment of ``role_id`` to the user, as an operator makes it."""
    assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ACTIVE,
        principal=PrincipalRef(PrincipalType.USER, user_id),
        target=Target.role(role_id),
        duration=timedelta(days=30),
        justification="review test",
    )


def _holder_of(rt: Pimlico, user_id: str, *permissions: str) -> None:
    """Give the user an active custom role holding exactly ``permissions``."""
    role = roles.create_role(
        rt, actor=OPERATOR, name="Only " + " ".join(permissions), permissions=list(permissions)
    ).value
    _grant(rt, user_id, role.id)


def _groups_admin(rt: Pimlico, demo: Demo, visit: Visit) -> Portal:
    _grant(rt, demo.users["mike"], GROUPS_ADMINISTRATOR.id)
    return visit("mike")


# -- M1: a Groups Administrator's admin pages -------------------------------------------------


def test_a_groups_administrator_opens_assignments_and_sees_group_targets(
    visit: Visit, rt: Pimlico, demo: Demo
) -> None:
    mike = _groups_admin(rt, demo, visit)
    page = mike.get(ASSIGNMENTS)
    assert page.status_code == 200, page.text
    group = demo.groups["Search and Purge PIM"]
    assert f'value="group_member:{group}"' in page.text
    assert "Search and Purge PIM" in page.text
    assert 'value="role:' not in page.text  # no roles: he may not read them


def test_a_groups_administrator_opens_settings_and_sees_group_targets(
    visit: Visit, rt: Pimlico, demo: Demo
) -> None:
    mike = _groups_admin(rt, demo, visit)
    page = mike.get(SETTINGS)
    assert page.status_code == 200, page.text
    assert "Search and Purge PIM" in page.text
    assert "Mail Search and Purge" not in page.text


def test_someone_without_assignments_read_is_refused_the_assignments_page(
    visit: Visit, rt: Pimlico, demo: Demo
) -> None:
    _holder_of(rt, demo.users["mike"], Perm.GROUPS_READ)
    assert visit("mike").get(ASSIGNMENTS).status_code == 403


# -- M2: forged request cursors ----------------------------------------------------------------


@pytest.mark.parametrize("number", [99999999999999999999, -99999999999999999999])
def test_an_out_of_range_cursor_on_my_requests_is_a_400_page_naming_cursor(
    visit: Visit, demo: Demo, number: int
) -> None:
    page = visit("alex").get(f"/portal/requests?cursor={_cursor([number, 'x'])}")
    assert page.status_code == 400
    assert "cursor" in page.text


def test_an_out_of_range_cursor_on_the_api_is_a_400_problem_naming_cursor(
    rt: Pimlico, settings: Settings, demo: Demo
) -> None:
    token = accounts.sign_in(rt, user_name="alex", password=demo_password("alex"))
    with TestClient(create_app(settings, runtime=rt)) as client:
        response = client.get(
            "/api/v1/requests",
            params={"cursor": _cursor([99999999999999999999, "x"])},
            headers={"Authorization": f"Bearer {token.bearer}"},
        )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "cursor" in json.dumps(response.json())


# -- M3: times outside datetime's range in the viewer's zone -----------------------------------


@pytest.mark.parametrize(
    ("zone", "field", "value"),
    [
        ("Asia/Tokyo", "since", "0001-01-01T00:00"),
        ("America/New_York", "until", "9999-12-31T23:59"),
    ],
)
def test_an_audit_time_beyond_the_calendar_is_a_400_naming_the_field(
    visit: Visit, demo: Demo, zone: str, field: str, value: str
) -> None:
    root = visit("root")
    root.client.cookies.set(TIME_ZONE, zone)
    page = root.get(f"{AUDIT}?{field}={value}")
    assert page.status_code == 400
    assert 'data-code="InvalidInput"' in page.text or "cannot be read" in page.text
    assert field in page.text


# -- M4: durations too long to add to now ------------------------------------------------------


def test_adding_an_assignment_for_millions_of_days_is_refused_naming_the_duration(
    visit: Visit, rt: Pimlico, demo: Demo
) -> None:
    root = visit("root")
    before = assignments.list_assignments(
        rt, actor=OPERATOR, principal=PrincipalRef(PrincipalType.USER, demo.users["bob"])
    )
    response = root.submit(
        ASSIGNMENTS,
        ASSIGNMENTS,
        {
            "principal": "bob",
            "target": f"group_member:{demo.groups['Search and Purge PIM']}",
            "kind": "eligible",
            "duration": HUGE,
            "duration_unit": "days",
            "justification": "review test",
        },
    )
    assert response.status_code == 400
    assert "at most 3650 days" in response.text
    after = assignments.list_assignments(
        rt, actor=OPERATOR, principal=PrincipalRef(PrincipalType.USER, demo.users["bob"])
    )
    assert after == before


def test_changing_an_assignments_end_by_millions_of_days_is_refused_not_a_500(
    visit: Visit, rt: Pimlico, demo: Demo
) -> None:
    [held] = assignments.list_assignments(
        rt,
        actor=OPERATOR,
        principal=PrincipalRef(PrincipalType.USER, demo.users["erin"]),
        target=Target.role(demo.roles["Exchange Administrator"], "/apps/exchange"),
    )
    root = visit("root")
    detail = f"{ASSIGNMENTS}/{held.id}"
    for action in ("update", "extend", "renew"):
        response = root.submit(
            detail,
            f"{detail}/{action}",
            {"duration": HUGE, "duration_unit": "days", "justification": "review test"},
        )
        assert response.status_code == 400, action
        assert "at most 3650 days" in response.text


def test_a_settings_duration_of_millions_of_days_is_refused_naming_the_field(
    visit: Visit, demo: Demo
) -> None:
    root = visit("root")
    form = f"{SETTINGS}/role/{demo.roles['Mail Search and Purge']}"
    response = root.submit(
        form,
        form,
        {
            "version": "1",
            "activation.maximum_duration": HUGE,
            "activation.maximum_duration.unit": "hours",
            "assignment.eligible_maximum_duration": "5000",
            "assignment.eligible_maximum_duration.unit": "days",
        },
    )
    assert response.status_code == 400
    for field in ("activation.maximum_duration", "assignment.eligible_maximum_duration"):
        assert f"{field}: give at most 3650 days" in response.text


def test_activating_for_millions_of_days_is_refused_in_plain_words(
    visit: Visit, rt: Pimlico, demo: Demo
) -> None:
    dana = visit("dana")
    [held] = assignments.list_assignments(
        rt, actor=OPERATOR, principal=PrincipalRef(PrincipalType.USER, demo.users["dana"])
    )
    response = dana.submit(
        f"/portal/roles/activate?assignment={held.id}",
        "/portal/roles/activate",
        {"assignment": held.id, "duration": HUGE, "justification": "review test"},
    )
    assert response.status_code == 400
    assert "choose a duration from the list" in response.text


# -- M5 and L6: who learns names ---------------------------------------------------------------


def test_the_assignments_filter_tells_nothing_about_names_to_one_who_may_not_read_users(
    visit: Visit, rt: Pimlico, demo: Demo
) -> None:
    _holder_of(rt, demo.users["mike"], Perm.ASSIGNMENTS_READ)
    mike = visit("mike")
    known = mike.get(f"{ASSIGNMENTS}?principal=alex").text
    unknown = mike.get(f"{ASSIGNMENTS}?principal=nobody-here").text
    for text in (known, unknown):
        assert 'data-code="PermissionDenied"' in text
        assert 'data-code="NotFound"' not in text
        assert "Alex Analyst" not in text


def test_names_are_given_per_kind_the_caller_may_read(rt: Pimlico, demo: Demo) -> None:
    mike = demo.users["mike"]
    _holder_of(rt, mike, Perm.GROUPS_READ)
    group = demo.groups["Search and Purge PIM"]
    role = demo.roles["Mail Search and Purge"]
    names = portal_directory.names_of(
        rt, actor=Actor.principal(mike), ids=[demo.users["alex"], group, role, mike]
    )
    assert names == {group: "Search and Purge PIM", mike: "Mike Defender (mike)"}
    everything = portal_directory.names_of(
        rt, actor=Actor.principal(demo.users["root"]), ids=[demo.users["alex"], group, role]
    )
    assert everything[demo.users["alex"]] == "Alex Analyst (alex)"
    assert everything[role] == "Mail Search and Purge"


# -- L7: approvers by name need the right to save settings -------------------------------------


def test_approvers_are_looked_up_only_for_one_who_may_change_settings(
    rt: Pimlico, demo: Demo
) -> None:
    mike = demo.users["mike"]
    _grant(rt, mike, GROUPS_ADMINISTRATOR.id)  # reads policies, may not change them
    for typed in ({"f": ["bob"]}, {"f": ["nobody-here"]}):
        with pytest.raises(PermissionDenied):
            portal_admin.approvers_by_name(rt, actor=Actor.principal(mike), typed=typed)


# -- L8: framework refusals on portal paths ----------------------------------------------------


def test_a_method_a_page_does_not_take_is_a_405_page_not_a_missing_page(
    visit: Visit, demo: Demo
) -> None:
    root = visit("root")
    response = root.client.put("/portal/roles")
    assert response.status_code == 405
    assert "This page does not accept that" in response.text
    assert "There is no such page" not in response.text
    assert "GET" in response.headers["allow"]
    assert "default-src" in response.headers["content-security-policy"]
    missing = root.get("/portal/no-such-page")
    assert missing.status_code == 404
    assert "There is no such page" in missing.text
    assert "default-src" in missing.headers["content-security-policy"]


# -- H2: the request lists' query counts -------------------------------------------------------


@contextmanager
def _counting(rt: Pimlico) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(rt.engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(rt.engine, "before_cursor_execute", count)


def _pending_for_bob(rt: Pimlico, demo: Demo, number: int, start: int = 0) -> None:
    """``number`` pending requests by Alex, each for a role only Bob approves."""
    alex = demo.users["alex"]
    for i in range(start, start + number):
        role = roles.create_role(
            rt, actor=OPERATOR, name=f"Approved role {i}", permissions=[f"app{i}.use"]
        ).value
        role_settings.update_policy(
            rt,
            actor=OPERATOR,
            target_type=TargetType.ROLE,
            object_id=role.id,
            changes={
                "activation": {"require_mfa": False, "require_justification": False},
                "approval": {
                    "required": True,
                    "stages": [{"approvers": [{"type": "user", "id": demo.users["bob"]}]}],
                },
            },
        )
        assignments.assign(
            rt,
            actor=OPERATOR,
            kind=AssignmentKind.ELIGIBLE,
            principal=PrincipalRef(PrincipalType.USER, alex),
            target=Target.role(role.id),
            duration=timedelta(days=30),
            justification="review test",
        )
        asked = requests.submit(
            rt,
            actor=Actor.principal(alex),
            action=RequestAction.SELF_ACTIVATE,
            kind=AssignmentKind.ACTIVE,
            target=Target.role(role.id),
            schedule=Schedule(duration=timedelta(hours=1)),
            justification="review test",
        ).value
        assert asked.request.status is RequestStatus.PENDING_APPROVAL


def _statements(rt: Pimlico, portal: Portal, path: str, expect: str) -> int:
    portal.get(path)  # once before counting: the session's first use records itself
    with _counting(rt) as statements:
        page = portal.get(path)
    assert page.status_code == 200, page.text
    assert expect in page.text
    return len(statements)


def test_my_requests_take_as_many_queries_for_ten_pending_requests_as_for_one(
    visit: Visit, rt: Pimlico, demo: Demo
) -> None:
    alex = visit("alex")
    _pending_for_bob(rt, demo, 1)
    one = _statements(rt, alex, "/portal/requests", "Approved role 0")
    _pending_for_bob(rt, demo, 9, start=1)
    ten = _statements(rt, alex, "/portal/requests", "Approved role 9")
    assert ten == one


def test_the_inbox_takes_as_many_queries_for_ten_pending_requests_as_for_one(
    visit: Visit, rt: Pimlico, demo: Demo
) -> None:
    bob = visit("bob")
    _pending_for_bob(rt, demo, 1)
    one = _statements(rt, bob, "/portal/approvals", "Approved role 0")
    _pending_for_bob(rt, demo, 9, start=1)
    ten = _statements(rt, bob, "/portal/approvals", "Approved role 9")
    assert ten == one


def test_the_standing_of_a_pending_request_is_the_one_a_decision_rebuilds(
    rt: Pimlico, demo: Demo
) -> None:
    _pending_for_bob(rt, demo, 2)
    views = requests.list_requests(rt, actor=Actor.principal(demo.users["alex"]), mine=True)
    standings = portal_requests.standing(rt, views=views)
    assert set(standings) == {v.request.id for v in views}
    with rt.reading() as s:
        for request_id, found in standings.items():
            row = s.get(RequestRow, request_id)
            assert row is not None
            approval = approvals.approval_of(s, row, request_of(row))
            assert (found.number, found.stages, found.started_at, found.deadline) == (
                approval.current + 1,
                len(approval.stages),
                approval.stage_started_at,
                approval.deadline,
            )
