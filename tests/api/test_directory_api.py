"""Users, service accounts, groups and their standing members and owners, through the API."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import event

from pimlico.domain.catalogue import GROUPS_ADMINISTRATOR
from pimlico.domain.model import AssignmentKind, PrincipalRef, PrincipalType, Target
from pimlico.services import assignments, directory
from pimlico.services.runtime import Pimlico
from tests.api.conftest import PASSWORD, SignIn
from tests.api.test_auth import with_password
from tests.integration.world import OPERATOR, audit_count, group, user

API = "/api/v1"


def problem(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The problem body of ``answer``, after checking its status, media type and code."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = answer.json()
    assert body["code"] == code
    return body


def rules(body: dict[str, Any]) -> set[tuple[str, str]]:
    return {(e["field"], e["rule"]) for e in body["errors"]}


def walk(
    client: TestClient, path: str, limit: int, between: Callable[[], object] | None = None
) -> list[dict[str, Any]]:
    """Every item of a list, page by page; ``between`` runs after the first page."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        page = client.get(path, params=params)
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json().get("next_cursor")
        if between is not None:
            between()
            between = None
        if cursor is None:
            return items


# -- users ----------------------------------------------------------------------------------


def test_an_administrator_adds_reads_changes_and_finds_a_user(admin: TestClient) -> None:
    made = admin.post(
        f"{API}/users",
        json={"user_name": "alex", "display_name": "Alex Wilber", "email": "alex@example.com"},
    )
    assert made.status_code == 201, made.text
    created_at = int(made.headers["Pimlico-Revision"])
    alex = made.json()
    assert (alex["user_name"], alex["display_name"], alex["enabled"]) == (
        "alex",
        "Alex Wilber",
        True,
    )
    assert admin.get(f"{API}/users/{alex['id']}").json() == alex

    changed = admin.patch(f"{API}/users/{alex['id']}", json={"display_name": "Alex W."})
    assert changed.status_code == 200, changed.text
    assert int(changed.headers["Pimlico-Revision"]) > created_at
    assert changed.json()["display_name"] == "Alex W."
    assert changed.json()["email"] == "alex@example.com"

    found = admin.get(f"{API}/users", params={"q": "AL"}).json()["items"]
    assert [u["user_name"] for u in found] == ["alex"]
    by_display_name = admin.get(f"{API}/users", params={"q": "alex w"}).json()["items"]
    assert [u["id"] for u in by_display_name] == [alex["id"]]


def test_disabling_a_user_shows_in_the_user_and_in_the_enabled_filter(
    rt: Pimlico, admin: TestClient
) -> None:
    bob = user(rt, "bob").id
    off = admin.put(f"{API}/users/{bob}/enabled", json={"enabled": False, "reason": "left"})
    assert off.status_code == 200, off.text
    assert "Pimlico-Revision" in off.headers
    assert off.json()["enabled"] is False
    disabled = admin.get(f"{API}/users", params={"enabled": "false"}).json()["items"]
    assert [u["id"] for u in disabled] == [bob]
    on = admin.put(f"{API}/users/{bob}/enabled", json={"enabled": True})
    assert on.json()["enabled"] is True
    assert admin.get(f"{API}/users", params={"enabled": "false"}).json()["items"] == []


def test_the_last_global_administrator_cannot_be_disabled(
    rt: Pimlico, admin: TestClient, admin_id: str
) -> None:
    before = audit_count(rt)
    refused = admin.put(f"{API}/users/{admin_id}/enabled", json={"enabled": False})
    problem(refused, 409, "LastGlobalAdministrator")
    assert admin.get(f"{API}/users/{admin_id}").json()["enabled"] is True
    assert audit_count(rt) == before


def test_bad_user_input_is_a_400_naming_each_field_and_rule(rt: Pimlico, admin: TestClient) -> None:
    before = audit_count(rt)
    bad_name = problem(admin.post(f"{API}/users", json={"user_name": "!alex"}), 400, "InvalidInput")
    assert rules(bad_name) == {("user_name", "NameFormat")}
    bad_email = admin.post(f"{API}/users", json={"user_name": "alex", "email": "not-an-address"})
    assert rules(problem(bad_email, 400, "InvalidInput")) == {("email", "EmailFormat")}
    missing = problem(admin.post(f"{API}/users", json={}), 400, "InvalidInput")
    assert rules(missing) == {("user_name", "missing")}
    unknown = admin.post(f"{API}/users", json={"user_name": "alex", "is_admin": True})
    assert rules(problem(unknown, 400, "InvalidInput")) == {("is_admin", "extra_forbidden")}
    no_switch = admin.put(f"{API}/users/{user(rt, 'bob').id}/enabled", json={"reason": "x"})
    assert rules(problem(no_switch, 400, "InvalidInput")) == {("enabled", "missing")}
    assert audit_count(rt) == before + 1  # bob, made directly; nothing through the refusals
    assert [u["user_name"] for u in admin.get(f"{API}/users").json()["items"]] == ["bob", "root"]


def test_text_with_nul_characters_and_malformed_ids_are_400s_never_500s(
    rt: Pimlico, admin: TestClient
) -> None:
    team = group(rt, "Team").id
    before = audit_count(rt)
    nul = admin.post(f"{API}/groups", json={"name": "Other", "description": "a\x00b"})
    assert rules(problem(nul, 400, "InvalidInput")) == {("description", "value_error")}
    bad_id = admin.get(f"{API}/users/a%00b")
    assert rules(problem(bad_id, 400, "InvalidInput")) == {("user_id", "string_pattern_mismatch")}
    bad_reason = admin.delete(
        f"{API}/groups/{team}/members/user/{user(rt, 'bob').id}", params={"reason": "a\x00"}
    )
    assert rules(problem(bad_reason, 400, "InvalidInput")) == {
        ("reason", "string_pattern_mismatch")
    }
    assert audit_count(rt) == before + 1  # bob, made directly


def test_a_taken_user_name_and_an_unknown_user_are_problems(rt: Pimlico, admin: TestClient) -> None:
    user(rt, "alex")
    problem(admin.post(f"{API}/users", json={"user_name": "ALEX"}), 409, "AlreadyExists")
    unknown = "00000000-0000-4000-8000-00000000ffff"
    problem(admin.get(f"{API}/users/{unknown}"), 404, "NotFound")
    problem(admin.patch(f"{API}/users/{unknown}", json={"display_name": "x"}), 404, "NotFound")


def test_users_page_through_every_user_once_even_when_some_are_added_between_pages(
    rt: Pimlico, admin: TestClient
) -> None:
    names = [f"user{i:02d}" for i in range(7)]
    for name in names:
        user(rt, name)

    def add_two() -> None:
        user(rt, "aaa-late")
        user(rt, "zzz-late")

    seen = [u["user_name"] for u in walk(admin, f"{API}/users", 3, add_two)]
    assert len(seen) == len(set(seen))
    assert {*names, "root"} <= set(seen)
    assert "zzz-late" in seen  # after the cursor: reached
    assert "aaa-late" not in seen  # before the cursor: already passed, not a repeat
    assert seen == sorted(seen)


def test_a_bad_cursor_or_limit_is_a_400_naming_it(admin: TestClient) -> None:
    bad = problem(admin.get(f"{API}/users", params={"cursor": "nonsense"}), 400, "InvalidInput")
    assert rules(bad) == {("cursor", "cursor")}
    too_many = problem(admin.get(f"{API}/users", params={"limit": 0}), 400, "InvalidInput")
    assert {f for f, _ in rules(too_many)} == {"limit"}


# -- who may -------------------------------------------------------------------------------


def test_anonymous_callers_are_refused(anonymous: TestClient) -> None:
    for method, path in (
        ("GET", "/users"),
        ("POST", "/users"),
        ("GET", "/service-accounts"),
        ("GET", "/groups"),
        ("POST", "/groups"),
    ):
        problem(anonymous.request(method, API + path, json={}), 401, "NotAuthenticated")


def test_a_user_without_directory_permissions_can_neither_read_nor_write_it(
    rt: Pimlico, admin: TestClient, sign_in: SignIn
) -> None:
    with_password(rt, "alex")
    alex = sign_in("alex", PASSWORD)
    team = group(rt, "Team").id
    bob = user(rt, "bob").id
    before = audit_count(rt)
    for method, path, body in (
        ("GET", "/users", None),
        ("GET", f"/users/{bob}", None),
        ("GET", "/service-accounts", None),
        ("GET", "/groups", None),
        ("GET", f"/groups/{team}", None),
        ("GET", f"/groups/{team}/members", None),
        ("POST", "/users", {"user_name": "mallory"}),
        ("PATCH", f"/users/{bob}", {"display_name": "Bobby"}),
        ("PUT", f"/users/{bob}/enabled", {"enabled": False}),
        ("POST", "/service-accounts", {"name": "exfil"}),
        ("POST", "/groups", {"name": "Shadow admins"}),
        ("PATCH", f"/groups/{team}", {"display_name": "Mine"}),
        ("POST", f"/groups/{team}/members", {"member_type": "user", "member_id": bob}),
    ):
        answer = alex.request(method, API + path, json=body)
        problem(answer, 403, "PermissionDenied")
    assert audit_count(rt) == before
    assert admin.get(f"{API}/users", params={"q": "mallory"}).json()["items"] == []
    assert admin.get(f"{API}/users/{bob}").json()["display_name"] == "bob"
    assert [g["name"] for g in admin.get(f"{API}/groups").json()["items"]] == ["Team"]


def test_a_groups_administrator_makes_plain_groups_but_not_role_assignable_ones(
    rt: Pimlico, admin: TestClient, sign_in: SignIn
) -> None:
    gina = with_password(rt, "gina")
    assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ACTIVE,
        principal=PrincipalRef(PrincipalType.USER, gina),
        target=Target.role(GROUPS_ADMINISTRATOR.id),
        duration=timedelta(hours=8),
        justification="runs the team groups",
    )
    client = sign_in("gina", PASSWORD)
    plain = client.post(f"{API}/groups", json={"name": "Team"})
    assert plain.status_code == 201, plain.text
    before = audit_count(rt)
    refused = client.post(f"{API}/groups", json={"name": "Admins", "role_assignable": True})
    problem(refused, 403, "PermissionDenied")
    assert audit_count(rt) == before
    assert [g["name"] for g in admin.get(f"{API}/groups").json()["items"]] == ["Team"]


# -- service accounts -----------------------------------------------------------------------


def test_service_accounts_are_added_read_found_and_disabled(admin: TestClient) -> None:
    made = admin.post(
        f"{API}/service-accounts", json={"name": "nightly-report", "description": "SOC report"}
    )
    assert made.status_code == 201, made.text
    assert "Pimlico-Revision" in made.headers
    account = made.json()
    assert (account["display_name"], account["enabled"]) == ("nightly-report", True)
    assert admin.get(f"{API}/service-accounts/{account['id']}").json() == account
    found = admin.get(f"{API}/service-accounts", params={"q": "night"}).json()["items"]
    assert [a["id"] for a in found] == [account["id"]]
    off = admin.put(f"{API}/service-accounts/{account['id']}/enabled", json={"enabled": False})
    assert off.status_code == 200
    assert off.json()["enabled"] is False
    only_enabled = admin.get(f"{API}/service-accounts", params={"enabled": "true"})
    assert only_enabled.json()["items"] == []
    again = admin.post(f"{API}/service-accounts", json={"name": "Nightly-Report"})
    problem(again, 409, "AlreadyExists")
    bad = admin.post(f"{API}/service-accounts", json={"name": ""})
    assert rules(problem(bad, 400, "InvalidInput")) == {("name", "NameFormat")}


# -- groups ---------------------------------------------------------------------------------


def test_groups_are_added_role_assignable_for_good_found_and_changed(admin: TestClient) -> None:
    made = admin.post(
        f"{API}/groups",
        json={"name": "Search and Purge", "role_assignable": True, "pim_enabled": True},
    )
    assert made.status_code == 201, made.text
    sp = made.json()
    assert (sp["role_assignable"], sp["pim_enabled"]) == (True, True)
    admin.post(f"{API}/groups", json={"name": "Team"})
    assignable = admin.get(f"{API}/groups", params={"role_assignable": "true"}).json()["items"]
    assert [g["name"] for g in assignable] == ["Search and Purge"]
    assert admin.get(f"{API}/groups/{sp['id']}").json() == sp

    changed = admin.patch(
        f"{API}/groups/{sp['id']}", json={"display_name": "SP team", "pim_enabled": False}
    )
    assert changed.status_code == 200, changed.text
    assert "Pimlico-Revision" in changed.headers
    assert (changed.json()["display_name"], changed.json()["pim_enabled"]) == ("SP team", False)

    flip = admin.patch(f"{API}/groups/{sp['id']}", json={"role_assignable": False})
    assert rules(problem(flip, 400, "InvalidInput")) == {("role_assignable", "extra_forbidden")}
    assert admin.get(f"{API}/groups/{sp['id']}").json()["role_assignable"] is True


# -- members and owners ---------------------------------------------------------------------


def test_a_member_is_added_listed_and_ended_but_never_deleted(
    rt: Pimlico, admin: TestClient
) -> None:
    team = admin.post(f"{API}/groups", json={"name": "Team"}).json()["id"]
    alex = user(rt, "alex").id
    added = admin.post(
        f"{API}/groups/{team}/members",
        json={"member_type": "user", "member_id": alex, "reason": "joins"},
    )
    assert added.status_code == 201, added.text
    assert "Pimlico-Revision" in added.headers
    assert added.json()["member"] == {"type": "user", "id": alex}
    assert added.json()["relation"] == "member"
    again = admin.post(
        f"{API}/groups/{team}/members", json={"member_type": "user", "member_id": alex}
    )
    problem(again, 409, "AlreadyExists")
    listed = admin.get(f"{API}/groups/{team}/members").json()["items"]
    assert [m["member"]["id"] for m in listed] == [alex]
    assert admin.get(f"{API}/groups/{team}/owners").json()["items"] == []

    ended = admin.delete(f"{API}/groups/{team}/members/user/{alex}", params={"reason": "moved"})
    assert ended.status_code == 200, ended.text
    assert "Pimlico-Revision" in ended.headers
    assert ended.json()["ended_at"] is not None
    assert ended.json()["end_reason"] == "moved"
    assert admin.get(f"{API}/groups/{team}/members").json()["items"] == []
    history = admin.get(f"{API}/groups/{team}/members", params={"include_ended": "true"})
    assert [m["id"] for m in history.json()["items"]] == [added.json()["id"]]
    problem(admin.delete(f"{API}/groups/{team}/members/user/{alex}"), 404, "NotFound")


def test_owners_are_users_or_service_accounts(rt: Pimlico, admin: TestClient) -> None:
    team = admin.post(f"{API}/groups", json={"name": "Team"}).json()["id"]
    other = group(rt, "Other").id
    bob = user(rt, "bob").id
    as_group = admin.post(
        f"{API}/groups/{team}/owners", json={"member_type": "group", "member_id": other}
    )
    assert rules(problem(as_group, 400, "InvalidInput")) == {("member", "OwnerType")}
    owner = admin.post(
        f"{API}/groups/{team}/owners", json={"member_type": "user", "member_id": bob}
    )
    assert owner.status_code == 201, owner.text
    assert owner.json()["relation"] == "owner"
    assert [
        m["member"]["id"] for m in admin.get(f"{API}/groups/{team}/owners").json()["items"]
    ] == [bob]
    assert admin.get(f"{API}/groups/{team}/members").json()["items"] == []
    ended = admin.delete(f"{API}/groups/{team}/owners/user/{bob}")
    assert ended.status_code == 200
    assert ended.json()["ended_by"] is not None


def test_bad_member_input_names_the_field_and_writes_nothing(
    rt: Pimlico, admin: TestClient
) -> None:
    team = group(rt, "Team").id
    before = audit_count(rt)
    unknown_type = admin.post(
        f"{API}/groups/{team}/members", json={"member_type": "robot", "member_id": "x"}
    )
    assert rules(problem(unknown_type, 400, "InvalidInput")) == {("member_type", "enum")}
    nobody = admin.post(
        f"{API}/groups/{team}/members",
        json={"member_type": "user", "member_id": "00000000-0000-4000-8000-00000000ffff"},
    )
    problem(nobody, 404, "NotFound")
    itself = admin.post(
        f"{API}/groups/{team}/members", json={"member_type": "group", "member_id": team}
    )
    assert itself.status_code == 409
    assert itself.json()["code"] in {"CycleDetected", "NestingTooDeep"}
    bad_path = admin.delete(f"{API}/groups/{team}/members/robot/x")
    assert rules(problem(bad_path, 400, "InvalidInput")) == {("member_type", "enum")}
    assert audit_count(rt) == before
    assert admin.get(f"{API}/groups/{team}/members").json()["items"] == []


def test_members_page_through_every_member_once(rt: Pimlico, admin: TestClient) -> None:
    team = group(rt, "Team").id
    members = [user(rt, f"member{i}") for i in range(5)]
    for member in members:
        directory.add_member(rt, actor=OPERATOR, group_id=team, member=member)
    seen = [m["member"]["id"] for m in walk(admin, f"{API}/groups/{team}/members", 2)]
    assert sorted(seen) == sorted(m.id for m in members)


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


def test_directory_lists_run_as_many_queries_for_many_items_as_for_few(
    rt: Pimlico, admin: TestClient
) -> None:
    team = group(rt, "Team").id

    def add(n: int) -> None:
        for i in range(n):
            member = user(rt, f"u{n}-{i}")
            group(rt, f"g{n}-{i}")
            directory.add_member(rt, actor=OPERATOR, group_id=team, member=member)
            directory.create_service_account(rt, actor=OPERATOR, name=f"sa{n}-{i}")

    paths = ["/users", "/groups", "/service-accounts", f"/groups/{team}/members"]
    admin.get(f"{API}/me")  # the token's first use records it: a write of its own, once
    add(2)
    few = [statements(rt, admin, API + p) for p in paths]
    add(10)
    many = [statements(rt, admin, API + p) for p in paths]
    assert many == few
