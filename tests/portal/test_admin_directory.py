"""Administration of the directory in the portal: the landing page, users (and their groups,
assignments and MFA), service accounts, groups (role-assignable, PIM, members, owners,
nesting) — each action checked in the store through the services."""

from __future__ import annotations

import re
from datetime import timedelta
from itertools import pairwise

from httpx import Response

from pimlico.demo import Demo
from pimlico.domain.catalogue import PRIVILEGED_ROLE_ADMINISTRATOR
from pimlico.domain.model import AssignmentKind, PrincipalRef, PrincipalType, Relation, Target
from pimlico.services import assignments, audit, directory, directory_reads, mfa
from pimlico.services.runtime import Actor, Pimlico
from tests.portal.conftest import Visit, enrol_mfa

OPERATOR = Actor.operator("test")
SECTIONS = {
    "Users": "/portal/admin/users",
    "Groups": "/portal/admin/groups",
    "Roles": "/portal/admin/roles",
    "Role settings": "/portal/admin/settings",
    "Assignments": "/portal/admin/assignments",
    "Audit log": "/portal/admin/audit",
}


def section_links(response: Response) -> set[str]:
    return {href for href in SECTIONS.values() if re.search(f'<a href="{href}">', response.text)}


def user_named(rt: Pimlico, user_name: str) -> str:
    found = [u for u in directory.list_users(rt, actor=OPERATOR) if u.user_name == user_name]
    assert len(found) == 1, f"no single user {user_name}"
    return found[0].id


def group_named(rt: Pimlico, name: str) -> str:
    found = [g for g in directory.list_groups(rt, actor=OPERATOR) if g.name == name]
    assert len(found) == 1, f"no single group {name}"
    return found[0].id


def members_of(rt: Pimlico, group_id: str, relation: Relation = Relation.MEMBER) -> set[str]:
    current = directory.list_memberships(rt, actor=OPERATOR, group_id=group_id)
    return {m.member.id for m in current if m.relation is relation}


def rule_of(response: Response) -> list[str]:
    return re.findall(r'data-rule="([^"]+)"', response.text)


# -- the landing page -----------------------------------------------------------------------


def test_a_global_administrator_sees_every_section_of_the_administration(
    demo: Demo, visit: Visit
) -> None:
    root = visit("root")
    landing = root.get("/portal/admin")
    assert landing.status_code == 200
    assert section_links(landing) == set(SECTIONS.values())
    assert "needs an active admin role" not in landing.text
    assert '<a href="/portal/admin"' in landing.text  # in the main navigation


def test_a_person_without_an_active_admin_role_is_told_to_activate_one_and_refused_the_users(
    demo: Demo, visit: Visit
) -> None:
    alex = visit("alex")
    landing = alex.get("/portal/admin")
    assert landing.status_code == 200
    assert "Administration needs an active admin role." in landing.text
    assert '<a href="/portal/roles">' in landing.text
    assert section_links(landing) == set()
    assert '<a href="/portal/admin"' not in landing.text  # nor in the main navigation

    refused = alex.get("/portal/admin/users")
    assert refused.status_code == 403
    assert 'data-code="PermissionDenied"' in refused.text
    assert "pim.users.read" in refused.text
    assert "Bob Approver" not in refused.text


def test_priya_sees_the_sections_of_privileged_role_administrator_only_once_it_is_active(
    rt: Pimlico, demo: Demo, visit: Visit
) -> None:
    priya = visit("priya")
    before = priya.get("/portal/admin")
    assert "Administration needs an active admin role." in before.text
    assert section_links(before) == set()

    assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ACTIVE,
        principal=PrincipalRef(PrincipalType.USER, demo.users["priya"]),
        target=Target.role(PRIVILEGED_ROLE_ADMINISTRATOR.id),
        duration=timedelta(hours=2),
        justification="tunes role settings",
    )
    after = priya.get("/portal/admin")
    assert "needs an active admin role" not in after.text
    assert section_links(after) == set(SECTIONS.values())
    # The role reads users but does not write them: no "New user" for her.
    users = priya.get("/portal/admin/users")
    assert users.status_code == 200
    assert "Alex Analyst" in users.text
    assert "/portal/admin/users/new" not in users.text
    # It does manage role-assignable groups, so the groups page offers a new group.
    assert "/portal/admin/groups/new" in priya.get("/portal/admin/groups").text


# -- users ----------------------------------------------------------------------------------


def test_an_administrator_creates_a_user_with_a_manager(
    rt: Pimlico, demo: Demo, visit: Visit
) -> None:
    root = visit("root")
    created = root.submit(
        "/portal/admin/users/new",
        "/portal/admin/users",
        {
            "user_name": "casey",
            "display_name": "Casey Contractor",
            "email": "casey@example.org",
            "manager": "bob",
        },
    )
    assert created.status_code == 303, created.text
    user_id = user_named(rt, "casey")
    assert created.headers["location"] == f"/portal/admin/users/{user_id}"
    user = directory_reads.get_user(rt, actor=OPERATOR, user_id=user_id)
    assert (user.display_name, user.email, user.manager_id) == (
        "Casey Contractor",
        "casey@example.org",
        demo.users["bob"],
    )
    shown = root.get(created.headers["location"])
    assert "Casey Contractor was created." in shown.text
    assert "Bob Approver" in shown.text
    listed = root.get("/portal/admin/users?q=contract")
    assert "Casey Contractor" in listed.text
    assert "Alex Analyst" not in listed.text


def test_a_taken_user_name_is_refused_beside_the_form_and_keeps_what_was_typed(
    rt: Pimlico, demo: Demo, visit: Visit
) -> None:
    root = visit("root")
    before = len(directory.list_users(rt, actor=OPERATOR))
    refused = root.submit(
        "/portal/admin/users/new",
        "/portal/admin/users",
        {"user_name": "ALEX", "display_name": "Another Alex", "email": "", "manager": ""},
    )
    assert refused.status_code == 409
    assert 'data-code="AlreadyExists"' in refused.text
    assert "Choose another name." in refused.text
    assert 'value="Another Alex"' in refused.text
    assert len(directory.list_users(rt, actor=OPERATOR)) == before


def test_an_administrator_changes_a_users_details_and_disables_them_with_a_reason(
    rt: Pimlico, demo: Demo, visit: Visit
) -> None:
    root = visit("root")
    erin = demo.users["erin"]
    page = f"/portal/admin/users/{erin}"
    saved = root.submit(
        page,
        page,
        {"display_name": "Erin Engineer", "email": "", "manager": "sam"},
    )
    assert saved.status_code == 303, saved.text
    user = directory_reads.get_user(rt, actor=OPERATOR, user_id=erin)
    assert (user.display_name, user.email, user.manager_id) == (
        "Erin Engineer",
        None,
        demo.users["sam"],
    )

    disabled = root.submit(page, f"{page}/enabled", {"enabled": "false", "reason": "left"})
    assert disabled.status_code == 303
    assert not directory_reads.get_user(rt, actor=OPERATOR, user_id=erin).enabled
    events = audit.list_events(rt, actor=OPERATOR, action="user.disable", target_id=erin)
    assert [e.reason for e in events] == ["left"]
    shown = root.get(page)
    assert "is disabled: they hold nothing while disabled." in shown.text
    assert "Enable user" in shown.text

    root.submit(page, f"{page}/enabled", {"enabled": "true", "reason": "came back"})
    assert directory_reads.get_user(rt, actor=OPERATOR, user_id=erin).enabled


def test_a_users_page_shows_their_groups_assignments_and_mfa_and_removes_the_factor(
    rt: Pimlico, demo: Demo, visit: Visit
) -> None:
    alex = demo.users["alex"]
    directory.add_member(
        rt,
        actor=OPERATOR,
        group_id=demo.groups["Search and Purge"],
        member=PrincipalRef(PrincipalType.USER, alex),
    )
    enrol_mfa(rt, alex)
    root = visit("root")
    page = f"/portal/admin/users/{alex}"
    shown = root.get(page)
    assert shown.status_code == 200
    assert f'href="/portal/admin/groups/{demo.groups["Search and Purge"]}"' in shown.text
    assert "Security Reader" in shown.text  # an eligible role, by name
    assert "member of Search and Purge PIM" in shown.text  # an eligible group membership
    assert f'href="/portal/admin/assignments?principal={alex}"' in shown.text
    assert "in use since" in shown.text

    removed = root.submit(page, f"{page}/mfa/remove", {"reason": "lost phone"})
    assert removed.status_code == 303, removed.text
    assert mfa.factor_of(rt, actor=OPERATOR, user_id=alex) is None
    assert "has no authenticator app set up" in root.get(page).text


def test_service_accounts_are_listed_created_and_disabled(
    rt: Pimlico, demo: Demo, visit: Visit
) -> None:
    root = visit("root")
    page = "/portal/admin/service-accounts"
    assert "There are no service accounts yet." in root.get(page).text
    created = root.submit(
        page, page, {"name": "nightly-report", "display_name": "", "description": "SOC mail"}
    )
    assert created.status_code == 303, created.text
    (account,) = directory.list_service_accounts(rt, actor=OPERATOR)
    assert (account.name, account.description, account.enabled) == (
        "nightly-report",
        "SOC mail",
        True,
    )
    disabled = root.submit(
        page, f"{page}/{account.id}/enabled", {"enabled": "false", "reason": "retired"}
    )
    assert disabled.status_code == 303
    (account,) = directory.list_service_accounts(rt, actor=OPERATOR)
    assert not account.enabled
    assert "Enable nightly-report" in root.get(page).text


# -- groups ---------------------------------------------------------------------------------


def test_an_administrator_creates_a_role_assignable_pim_group_and_adds_members_and_owners(
    rt: Pimlico, demo: Demo, visit: Visit
) -> None:
    root = visit("root")
    form = root.get("/portal/admin/groups/new")
    assert "can never change later" in form.text
    created = root.submit(
        "/portal/admin/groups/new",
        "/portal/admin/groups",
        {
            "name": "SOC Responders",
            "description": "Respond to incidents",
            "role_assignable": "true",
            "pim_enabled": "true",
        },
    )
    assert created.status_code == 303, created.text
    group_id = group_named(rt, "SOC Responders")
    group = directory_reads.get_group(rt, actor=OPERATOR, group_id=group_id)
    assert (group.role_assignable, group.pim_enabled) == (True, True)

    page = f"/portal/admin/groups/{group_id}"
    for relation, member_type, name in (
        ("member", "user", "alex"),
        ("member", "group", "MDE Administrators"),
        ("owner", "user", "bob"),
    ):
        added = root.submit(
            page,
            f"{page}/members",
            {"relation": relation, "member_type": member_type, "name": name, "reason": "SOC"},
        )
        assert added.status_code == 303, added.text
    assert members_of(rt, group_id) == {demo.users["alex"], demo.groups["MDE Administrators"]}
    assert members_of(rt, group_id, Relation.OWNER) == {demo.users["bob"]}

    shown = root.get(page)
    assert "Alex Analyst (alex)" in shown.text
    assert "Bob Approver (bob)" in shown.text
    nested = root.get(f"/portal/admin/groups/{demo.groups['MDE Administrators']}")
    assert f'href="/portal/admin/groups/{group_id}">SOC Responders</a>' in nested.text


def test_a_plain_group_is_created_and_its_pim_switch_and_description_change(
    rt: Pimlico, demo: Demo, visit: Visit
) -> None:
    root = visit("root")
    root.submit(
        "/portal/admin/groups/new",
        "/portal/admin/groups",
        {"name": "Readers", "description": "", "role_assignable": "false"},
    )
    group_id = group_named(rt, "Readers")
    group = directory_reads.get_group(rt, actor=OPERATOR, group_id=group_id)
    assert (group.role_assignable, group.pim_enabled) == (False, False)
    page = f"/portal/admin/groups/{group_id}"
    saved = root.submit(
        page,
        page,
        {"display_name": "Readers", "description": "Read only", "pim_enabled": "true"},
    )
    assert saved.status_code == 303, saved.text
    group = directory_reads.get_group(rt, actor=OPERATOR, group_id=group_id)
    assert (group.description, group.pim_enabled, group.role_assignable) == (
        "Read only",
        True,
        False,
    )


def test_a_nesting_cycle_is_refused_with_its_rule_and_the_groups_names(
    rt: Pimlico, demo: Demo, visit: Visit
) -> None:
    # The demo nests Search and Purge PIM into Search and Purge; the reverse is a loop.
    root = visit("root")
    pim_group = demo.groups["Search and Purge PIM"]
    page = f"/portal/admin/groups/{pim_group}"
    refused = root.submit(
        page,
        f"{page}/members",
        {"relation": "member", "member_type": "group", "name": "Search and Purge"},
    )
    assert refused.status_code == 409
    assert rule_of(refused) == ["CycleDetected"]
    assert (
        "Search and Purge PIM is already inside Search and Purge, directly or through other "
        "groups" in refused.text
    )
    assert "Nest them the other way round" in refused.text
    assert 'value="Search and Purge"' in refused.text  # what was typed stays
    assert members_of(rt, pim_group) == set()


def test_nesting_deeper_than_the_cap_is_refused_in_plain_words(
    rt: Pimlico, demo: Demo, visit: Visit
) -> None:
    cap = rt.settings.max_nesting_depth
    chain = [
        directory.create_group(rt, actor=OPERATOR, name=f"Level {i}").value.id
        for i in range(cap + 1)
    ]
    for child, parent in pairwise(chain[:-1]):
        directory.add_member(
            rt, actor=OPERATOR, group_id=parent, member=PrincipalRef(PrincipalType.GROUP, child)
        )
    root = visit("root")
    page = f"/portal/admin/groups/{chain[-1]}"
    refused = root.submit(
        page,
        f"{page}/members",
        {"relation": "member", "member_type": "group", "name": f"Level {cap - 1}"},
    )
    assert refused.status_code == 409
    assert rule_of(refused) == ["NestingTooDeep"]
    assert f"deeper than the {cap} levels this Pimlico allows" in refused.text
    assert members_of(rt, chain[-1]) == set()


def test_removing_a_member_ends_the_membership_with_its_reason(
    rt: Pimlico, demo: Demo, visit: Visit
) -> None:
    sp, sp_pim = demo.groups["Search and Purge"], demo.groups["Search and Purge PIM"]
    root = visit("root")
    page = f"/portal/admin/groups/{sp}"
    assert "Search and Purge PIM" in root.get(page).text
    removed = root.submit(
        page,
        f"{page}/members/remove",
        {"relation": "member", "member_type": "group", "member_id": sp_pim, "reason": "rework"},
    )
    assert removed.status_code == 303, removed.text
    assert members_of(rt, sp) == set()
    (ended,) = directory.list_memberships(rt, actor=OPERATOR, group_id=sp, include_ended=True)
    assert (ended.member.id, ended.end_reason) == (sp_pim, "rework")
    assert "Search and Purge PIM is no longer a member." in root.get(page).text


def test_an_unknown_name_is_refused_beside_the_add_form(
    rt: Pimlico, demo: Demo, visit: Visit
) -> None:
    root = visit("root")
    group_id = demo.groups["Search and Purge"]
    page = f"/portal/admin/groups/{group_id}"
    refused = root.submit(
        page, f"{page}/members", {"relation": "member", "member_type": "user", "name": "nobody"}
    )
    assert refused.status_code == 404
    assert 'data-code="NotFound"' in refused.text
    assert "Add a member or owner" in refused.text
    assert members_of(rt, group_id) == {demo.groups["Search and Purge PIM"]}


# -- CSRF -----------------------------------------------------------------------------------


def test_a_form_post_without_the_csrf_token_changes_nothing(
    rt: Pimlico, demo: Demo, visit: Visit
) -> None:
    root = visit("root")
    before = len(directory.list_users(rt, actor=OPERATOR))
    refused = root.post("/portal/admin/users", {"user_name": "mallory"}, token=None)
    assert refused.status_code == 403
    assert 'data-code="CsrfRefused"' in refused.text
    forged = root.post(
        f"/portal/admin/groups/{demo.groups['Search and Purge']}/members",
        {"relation": "member", "member_type": "user", "name": "alex"},
        token="not-the-token",
    )
    assert forged.status_code == 403
    assert len(directory.list_users(rt, actor=OPERATOR)) == before
    assert members_of(rt, demo.groups["Search and Purge"]) == {demo.groups["Search and Purge PIM"]}
