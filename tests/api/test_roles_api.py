"""Roles, scopes and role settings (with ETag / If-Match), through the API."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from pimlico.api.routes.roles import SettingsDoc
from pimlico.domain.catalogue import BUILT_IN_ROLES, GLOBAL_ADMINISTRATOR
from pimlico.domain.model import AssignmentKind, Target
from pimlico.domain.policy import ApprovalRules, ApprovalStage, ApproverRef, RoleSettings
from pimlico.domain.policy_codec import to_dict
from pimlico.services import assignments
from pimlico.services.runtime import Pimlico
from tests.api.conftest import PASSWORD, SignIn
from tests.api.test_auth import with_password
from tests.api.test_directory_api import API, problem, rules, statements, walk
from tests.integration.world import OPERATOR, audit_count, group, role, user

# -- roles ----------------------------------------------------------------------------------


def test_the_built_in_catalogue_is_listed_as_built_in(admin: TestClient) -> None:
    built_in = admin.get(f"{API}/roles", params={"built_in": "true"}).json()["items"]
    assert {r["name"] for r in built_in} == {r.name for r in BUILT_IN_ROLES}
    assert all(r["built_in"] for r in built_in)
    ga = admin.get(f"{API}/roles/{GLOBAL_ADMINISTRATOR.id}").json()
    assert (ga["name"], ga["permissions"], ga["built_in"]) == (
        "Global Administrator",
        ["pim.*"],
        True,
    )
    assert admin.get(f"{API}/roles", params={"built_in": "false"}).json()["items"] == []


def test_a_custom_role_with_wildcards_is_added_read_found_and_changed(admin: TestClient) -> None:
    made = admin.post(
        f"{API}/roles",
        json={"name": "Mail Search and Purge", "permissions": ["mail.search", "mail.purge.*"]},
    )
    assert made.status_code == 201, made.text
    assert int(made.headers["Pimlico-Revision"]) > 0
    purge = made.json()
    assert (purge["built_in"], purge["permissions"]) == (False, ["mail.search", "mail.purge.*"])
    assert admin.get(f"{API}/roles/{purge['id']}").json() == purge
    found = admin.get(f"{API}/roles", params={"q": "mail"}).json()["items"]
    assert [r["id"] for r in found] == [purge["id"]]

    changed = admin.patch(f"{API}/roles/{purge['id']}", json={"permissions": ["mail.*"]})
    assert changed.status_code == 200, changed.text
    assert int(changed.headers["Pimlico-Revision"]) > int(made.headers["Pimlico-Revision"])
    assert changed.json()["permissions"] == ["mail.*"]
    assert changed.json()["description"] == ""


def test_bad_roles_are_400s_naming_the_field_and_rule_and_write_nothing(
    rt: Pimlico, admin: TestClient
) -> None:
    before = audit_count(rt)
    inner = admin.post(
        f"{API}/roles", json={"name": "Odd", "permissions": ["mail", "mail.*.purge"]}
    )
    assert rules(problem(inner, 400, "InvalidInput")) == {("permissions[1]", "PermissionFormat")}
    empty = admin.post(f"{API}/roles", json={"name": "Empty", "permissions": []})
    assert rules(problem(empty, 400, "InvalidInput")) == {("permissions", "Required")}
    missing = admin.post(f"{API}/roles", json={"name": "Nothing"})
    assert rules(problem(missing, 400, "InvalidInput")) == {("permissions", "missing")}
    assert audit_count(rt) == before
    assert admin.get(f"{API}/roles", params={"built_in": "false"}).json()["items"] == []


def test_built_in_roles_and_taken_names_are_refused(rt: Pimlico, admin: TestClient) -> None:
    role(rt, "Mail Reader", "mail.read")
    taken = admin.post(f"{API}/roles", json={"name": "mail reader", "permissions": ["mail.read"]})
    problem(taken, 409, "AlreadyExists")
    frozen = admin.patch(f"{API}/roles/{GLOBAL_ADMINISTRATOR.id}", json={"permissions": ["*"]})
    problem(frozen, 409, "Conflict")
    assert admin.get(f"{API}/roles/{GLOBAL_ADMINISTRATOR.id}").json()["permissions"] == ["pim.*"]


def test_roles_page_through_every_role_once_even_when_one_is_added_between_pages(
    rt: Pimlico, admin: TestClient
) -> None:
    names = [f"Role {i}" for i in range(5)]
    for name in names:
        role(rt, name, "app.read")
    seen = [
        r["name"] for r in walk(admin, f"{API}/roles", 4, lambda: role(rt, "Zebra", "app.read"))
    ]
    assert len(seen) == len(set(seen))
    assert {*names, *(r.name for r in BUILT_IN_ROLES), "Zebra"} == set(seen)


def test_the_role_list_runs_as_many_queries_for_many_roles_as_for_few(
    rt: Pimlico, admin: TestClient
) -> None:
    admin.get(f"{API}/me")  # the token's first use records it: a write of its own, once
    role(rt, "Few", "app.read")
    few = statements(rt, admin, f"{API}/roles")
    for i in range(10):
        role(rt, f"Many {i}", "app.read", "app.write")
    assert statements(rt, admin, f"{API}/roles") == few


# -- scopes ---------------------------------------------------------------------------------


def test_scopes_in_use_are_those_of_current_role_assignments(
    rt: Pimlico, admin: TestClient
) -> None:
    purge = role(rt, "Purge", "mail.purge")
    for name in ("alex", "bob"):
        assignments.assign(
            rt,
            actor=OPERATOR,
            kind=AssignmentKind.ELIGIBLE,
            principal=user(rt, name),
            target=Target.role(purge, "/apps/mail"),
            duration=timedelta(days=30),
        )
    scopes = admin.get(f"{API}/scopes")
    assert scopes.status_code == 200, scopes.text
    counts = {s["scope"]: s["assignments"] for s in scopes.json()["items"]}
    assert counts == {"/": 1, "/apps/mail": 2}  # "/": the break-glass administrator


# -- who may -------------------------------------------------------------------------------


def test_roles_and_settings_refuse_anonymous_callers(anonymous: TestClient) -> None:
    for method, path in (
        ("GET", "/roles"),
        ("POST", "/roles"),
        ("GET", "/scopes"),
        ("GET", f"/role-settings/role/{GLOBAL_ADMINISTRATOR.id}"),
        ("PATCH", f"/role-settings/role/{GLOBAL_ADMINISTRATOR.id}"),
    ):
        problem(anonymous.request(method, API + path, json={}), 401, "NotAuthenticated")


def test_a_user_without_role_permissions_can_neither_read_nor_change_them(
    rt: Pimlico, sign_in: SignIn, admin: TestClient
) -> None:
    with_password(rt, "alex")
    alex = sign_in("alex", PASSWORD)
    purge = role(rt, "Purge", "mail.purge")
    before = audit_count(rt)
    for method, path, body, headers in (
        ("GET", "/roles", None, {}),
        ("GET", f"/roles/{purge}", None, {}),
        ("GET", "/scopes", None, {}),
        ("GET", f"/role-settings/role/{purge}", None, {}),
        ("POST", "/roles", {"name": "Mine", "permissions": ["*"]}, {}),
        ("PATCH", f"/roles/{purge}", {"permissions": ["*"]}, {}),
        (
            "PATCH",
            f"/role-settings/role/{purge}",
            {"activation": {"require_mfa": False}},
            {"If-Match": '"0"'},
        ),
        (
            "PUT",
            f"/role-settings/role/{purge}",
            to_dict(RoleSettings.default()),
            {"If-Match": '"0"'},
        ),
    ):
        problem(
            alex.request(method, API + path, json=body, headers=headers), 403, "PermissionDenied"
        )
    assert audit_count(rt) == before
    assert admin.get(f"{API}/roles/{purge}").json()["permissions"] == ["mail.purge"]
    assert admin.get(f"{API}/role-settings/role/{purge}").json()["version"] == 0


# -- role settings --------------------------------------------------------------------------


def test_settings_are_read_with_their_etag_and_the_defaults_at_version_zero(
    rt: Pimlico, admin: TestClient
) -> None:
    purge = role(rt, "Purge", "mail.purge")
    read = admin.get(f"{API}/role-settings/role/{purge}")
    assert read.status_code == 200, read.text
    assert read.headers["ETag"] == '"0"'
    body = read.json()
    assert (body["target_type"], body["object_id"], body["version"]) == ("role", purge, 0)
    assert body["settings"] == to_dict(RoleSettings.default())
    assert body["settings"]["activation"]["maximum_duration"] == "PT8H"


def test_a_change_with_the_current_etag_is_applied_and_gets_a_new_one(
    rt: Pimlico, admin: TestClient
) -> None:
    purge = role(rt, "Purge", "mail.purge")
    etag = admin.get(f"{API}/role-settings/role/{purge}").headers["ETag"]
    changed = admin.patch(
        f"{API}/role-settings/role/{purge}",
        json={"activation": {"maximum_duration": "PT2H", "require_ticket": True}},
        headers={"If-Match": etag},
    )
    assert changed.status_code == 200, changed.text
    assert int(changed.headers["Pimlico-Revision"]) > 0
    assert changed.headers["ETag"] == '"1"'
    activation = changed.json()["settings"]["activation"]
    assert (activation["maximum_duration"], activation["require_ticket"]) == ("PT2H", True)
    assert activation["require_mfa"] is True  # left out: unchanged
    reread = admin.get(f"{API}/role-settings/role/{purge}")
    assert reread.headers["ETag"] == '"1"'
    assert reread.json() == changed.json()


def test_a_change_without_if_match_is_428_and_writes_nothing(
    rt: Pimlico, admin: TestClient
) -> None:
    purge = role(rt, "Purge", "mail.purge")
    before = audit_count(rt)
    change = {"activation": {"require_mfa": False}}
    missing = admin.patch(f"{API}/role-settings/role/{purge}", json=change)
    problem(missing, 428, "PreconditionRequired")
    anything = admin.patch(
        f"{API}/role-settings/role/{purge}", json=change, headers={"If-Match": "*"}
    )
    problem(anything, 428, "PreconditionRequired")
    assert audit_count(rt) == before
    reread = admin.get(f"{API}/role-settings/role/{purge}")
    assert reread.json()["version"] == 0
    assert reread.json()["settings"]["activation"]["require_mfa"] is True


def test_a_caller_who_may_not_change_settings_is_refused_before_if_match_is_asked_for(
    rt: Pimlico, admin: TestClient, sign_in: SignIn
) -> None:
    purge = role(rt, "Purge", "mail.purge")
    path = f"{API}/role-settings/role/{purge}"
    document = admin.get(path).json()["settings"]
    with_password(rt, "alex")
    alex = sign_in("alex", PASSWORD)
    problem(alex.patch(path, json={"activation": {"require_mfa": False}}), 403, "PermissionDenied")
    problem(alex.put(path, json=document), 403, "PermissionDenied")


def test_a_change_with_a_stale_etag_is_412_and_writes_nothing(
    rt: Pimlico, admin: TestClient
) -> None:
    purge = role(rt, "Purge", "mail.purge")
    read_by_both = admin.get(f"{API}/role-settings/role/{purge}").headers["ETag"]
    first = admin.patch(
        f"{API}/role-settings/role/{purge}",
        json={"activation": {"maximum_duration": "PT4H"}},
        headers={"If-Match": read_by_both},
    )
    assert first.status_code == 200, first.text
    before = audit_count(rt)
    second = admin.patch(
        f"{API}/role-settings/role/{purge}",
        json={"activation": {"maximum_duration": "PT1H"}},
        headers={"If-Match": read_by_both},
    )
    problem(second, 412, "PreconditionFailed")
    assert audit_count(rt) == before
    reread = admin.get(f"{API}/role-settings/role/{purge}")
    assert reread.headers["ETag"] == first.headers["ETag"]
    assert reread.json()["settings"]["activation"]["maximum_duration"] == "PT4H"


@pytest.mark.parametrize("if_match", ['W/"0"', "0", '"zero"', '"0", "1"'])
def test_an_if_match_that_is_not_one_of_our_etags_is_a_400_naming_it(
    rt: Pimlico, admin: TestClient, if_match: str
) -> None:
    purge = role(rt, "Purge", "mail.purge")
    answer = admin.patch(
        f"{API}/role-settings/role/{purge}",
        json={"activation": {"require_mfa": False}},
        headers={"If-Match": if_match},
    )
    assert rules(problem(answer, 400, "InvalidInput")) == {("If-Match", "ETag")}


def test_settings_that_break_a_rule_are_a_400_naming_each_and_write_nothing(
    rt: Pimlico, admin: TestClient
) -> None:
    purge = role(rt, "Purge", "mail.purge")
    before = audit_count(rt)
    answer = admin.patch(
        f"{API}/role-settings/role/{purge}",
        json={
            "activation": {"maximum_duration": "P2D", "colour": "red"},
            "assignment": {"active_maximum_duration": "P1M"},
        },
        headers={"If-Match": '"0"'},
    )
    body = problem(answer, 400, "InvalidPolicy")
    assert rules(body) == {
        ("activation.colour", "UnknownField"),
        ("assignment.active_maximum_duration", "DurationFormat"),
    }
    too_long = admin.patch(
        f"{API}/role-settings/role/{purge}",
        json={"activation": {"maximum_duration": "P2D"}},
        headers={"If-Match": '"0"'},
    )
    assert rules(problem(too_long, 400, "InvalidPolicy")) == {
        ("activation.maximum_duration", "Range")
    }
    not_an_object = admin.patch(
        f"{API}/role-settings/role/{purge}", json=["activation"], headers={"If-Match": '"0"'}
    )
    problem(not_an_object, 400, "InvalidInput")
    assert audit_count(rt) == before
    assert admin.get(f"{API}/role-settings/role/{purge}").json()["version"] == 0


def test_a_whole_document_replaces_the_settings_and_must_be_whole(
    rt: Pimlico, admin: TestClient
) -> None:
    purge = role(rt, "Purge", "mail.purge")
    read = admin.get(f"{API}/role-settings/role/{purge}")
    document = read.json()["settings"]
    document["approval"]["required"] = True
    document["assignment"]["active_maximum_duration"] = "P30D"
    path = f"{API}/role-settings/role/{purge}"
    problem(admin.put(path, json=document), 428, "PreconditionRequired")
    replaced = admin.put(path, json=document, headers={"If-Match": read.headers["ETag"]})
    assert replaced.status_code == 200, replaced.text
    assert "Pimlico-Revision" in replaced.headers
    assert replaced.json()["settings"] == document
    assert replaced.headers["ETag"] == '"1"'
    del document["notifications"]
    partial = admin.put(path, json=document, headers={"If-Match": '"1"'})
    assert rules(problem(partial, 400, "InvalidInput")) == {("notifications", "missing")}
    problem(
        admin.put(path, json=replaced.json()["settings"], headers={"If-Match": '"0"'}),
        412,
        "PreconditionFailed",
    )
    assert admin.get(path).json()["version"] == 1


def test_group_membership_and_ownership_have_settings_of_their_own(
    rt: Pimlico, admin: TestClient
) -> None:
    sp = group(rt, "Search and Purge PIM", role_assignable=True).id
    member = admin.get(f"{API}/role-settings/group_member/{sp}")
    assert member.status_code == 200, member.text
    changed = admin.patch(
        f"{API}/role-settings/group_owner/{sp}",
        json={"approval": {"required": True, "stages": [{"quorum": 1}]}},
        headers={"If-Match": admin.get(f"{API}/role-settings/group_owner/{sp}").headers["ETag"]},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["settings"]["approval"]["required"] is True
    assert admin.get(f"{API}/role-settings/group_member/{sp}").json()["version"] == 0
    unknown = "00000000-0000-4000-8000-00000000ffff"
    problem(admin.get(f"{API}/role-settings/role/{unknown}"), 404, "NotFound")
    wrong_kind = admin.get(f"{API}/role-settings/assignment/{sp}")
    assert {f for f, _ in rules(problem(wrong_kind, 400, "InvalidInput"))} == {"target_type"}


def test_the_settings_schema_describes_exactly_what_the_codec_writes() -> None:
    busy = RoleSettings(
        approval=ApprovalRules(
            required=True,
            stages=(
                ApprovalStage(
                    approvers=(ApproverRef.user("u1"), ApproverRef.group("g1")),
                    escalation_enabled=True,
                    escalation_approvers=(ApproverRef.user("u2"),),
                    escalation_after=timedelta(hours=4),
                ),
            ),
        )
    )
    for settings in (RoleSettings.default(), busy):
        document = to_dict(settings)
        assert SettingsDoc.model_validate(document).model_dump(mode="json") == document
