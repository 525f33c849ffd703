"""Administration of roles in the portal: built-in roles read-only, custom roles created and
changed, each change checked in the store through the services."""

from __future__ import annotations

import re
from datetime import timedelta

from pimlico.demo import Demo
from pimlico.domain.catalogue import GLOBAL_ADMINISTRATOR, PRIVILEGED_ROLE_ADMINISTRATOR
from pimlico.domain.model import AssignmentKind, PrincipalRef, PrincipalType, Role, Target
from pimlico.services import assignments, roles
from pimlico.services.runtime import Actor, Pimlico
from tests.portal.conftest import Visit

OPERATOR = Actor.operator("test")


def role_named(rt: Pimlico, name: str) -> Role:
    found = [r for r in roles.list_roles(rt, actor=OPERATOR) if r.name == name]
    assert len(found) == 1, f"no single role {name}"
    return found[0]


def test_the_roles_page_lists_custom_and_built_in_roles_with_their_permissions(
    demo: Demo, visit: Visit
) -> None:
    page = visit("root").get("/portal/admin/roles")
    assert page.status_code == 200
    custom, built_in = page.text.split("<h2>Built-in roles</h2>")
    assert "Mail Search and Purge" in custom
    assert "<code>mail.purge</code>" in custom
    assert "Global Administrator" in built_in
    assert "<code>pim.*</code>" in built_in
    assert "Global Administrator" not in custom
    assert 'href="/portal/admin/roles/new"' in page.text


def test_an_administrator_creates_a_custom_role_with_a_trailing_wildcard(
    rt: Pimlico, demo: Demo, visit: Visit
) -> None:
    root = visit("root")
    created = root.submit(
        "/portal/admin/roles/new",
        "/portal/admin/roles",
        {
            "name": "Tier 2 Analyst",
            "description": "Investigate and quarantine",
            "permissions": "security.read\r\n\r\n  mail.quarantine.*  \r\nsecurity.read\r\n",
        },
    )
    assert created.status_code == 303, created.text
    role = role_named(rt, "Tier 2 Analyst")
    assert created.headers["location"] == f"/portal/admin/roles/{role.id}"
    assert role.permissions == ("security.read", "mail.quarantine.*")
    assert (role.description, role.built_in) == ("Investigate and quarantine", False)
    shown = root.get(created.headers["location"])
    assert "The role Tier 2 Analyst was created." in shown.text
    assert "<code>mail.quarantine.*</code>" in shown.text


def test_a_malformed_permission_is_refused_beside_the_form_naming_it_and_its_rule(
    rt: Pimlico, demo: Demo, visit: Visit
) -> None:
    root = visit("root")
    before = len(roles.list_roles(rt, actor=OPERATOR))
    refused = root.submit(
        "/portal/admin/roles/new",
        "/portal/admin/roles",
        {"name": "Broken", "description": "", "permissions": "mail.read\nmail.*.purge"},
    )
    assert refused.status_code == 400
    assert re.findall(r'data-rule="([^"]+)"', refused.text) == ["PermissionFormat"]
    assert "permission “mail.*.purge”" in refused.text
    assert "mail.read\nmail.*.purge</textarea>" in refused.text  # what was typed stays
    assert len(roles.list_roles(rt, actor=OPERATOR)) == before


def test_an_administrator_changes_a_custom_role(rt: Pimlico, demo: Demo, visit: Visit) -> None:
    root = visit("root")
    role_id = demo.roles["Mail Search and Purge"]
    page = f"/portal/admin/roles/{role_id}"
    saved = root.submit(
        page, page, {"description": "Purge only", "permissions": "mail.purge\nmail.search.*"}
    )
    assert saved.status_code == 303, saved.text
    role = roles.get_role(rt, actor=OPERATOR, role_id=role_id)
    assert (role.description, role.permissions) == ("Purge only", ("mail.purge", "mail.search.*"))
    assert "its holders have the change now" in root.get(page).text


def test_a_built_in_role_is_read_only_and_a_change_posted_anyway_is_refused(
    rt: Pimlico, demo: Demo, visit: Visit
) -> None:
    root = visit("root")
    page = f"/portal/admin/roles/{GLOBAL_ADMINISTRATOR.id}"
    shown = root.get(page)
    assert shown.status_code == 200
    assert "built-in (cannot be changed)" in shown.text
    assert f'action="{page}"' not in shown.text
    refused = root.post(page, {"permissions": "*"}, token=root.csrf(page))
    assert refused.status_code == 409
    assert 'data-code="Conflict"' in refused.text
    assert roles.get_role(rt, actor=OPERATOR, role_id=GLOBAL_ADMINISTRATOR.id).permissions == (
        "pim.*",
    )


def test_roles_need_an_active_admin_role(rt: Pimlico, demo: Demo, visit: Visit) -> None:
    priya = visit("priya")
    refused = priya.get("/portal/admin/roles")
    assert refused.status_code == 403
    assert 'data-code="PermissionDenied"' in refused.text

    assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ACTIVE,
        principal=PrincipalRef(PrincipalType.USER, demo.users["priya"]),
        target=Target.role(PRIVILEGED_ROLE_ADMINISTRATOR.id),
        duration=timedelta(hours=2),
        justification="adds a role",
    )
    created = priya.submit(
        "/portal/admin/roles/new",
        "/portal/admin/roles",
        {"name": "Auditor", "description": "", "permissions": "audit.read"},
    )
    assert created.status_code == 303, created.text
    assert role_named(rt, "Auditor").permissions == ("audit.read",)


def test_a_role_form_posted_without_the_csrf_token_changes_nothing(
    rt: Pimlico, demo: Demo, visit: Visit
) -> None:
    root = visit("root")
    role_id = demo.roles["Mail Search and Purge"]
    refused = root.post(f"/portal/admin/roles/{role_id}", {"permissions": "*"}, token=None)
    assert refused.status_code == 403
    assert 'data-code="CsrfRefused"' in refused.text
    assert roles.get_role(rt, actor=OPERATOR, role_id=role_id).permissions == (
        "mail.search",
        "mail.purge",
    )
