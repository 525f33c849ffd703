"""Role settings in the portal: the list, the whole policy as a form, saving it through
``role_settings.update_policy`` with the version read, and refusals beside their fields."""

from __future__ import annotations

import re
from datetime import timedelta

from pimlico.demo import Demo
from pimlico.domain.catalogue import SECURITY_READER
from pimlico.domain.model import TargetType
from pimlico.domain.policy import ApprovalStage, ApproverRef, RoleSettings
from pimlico.services import role_settings
from pimlico.services.runtime import Actor, Pimlico
from tests.portal.conftest import Portal, Visit

READER = f"/portal/admin/settings/role/{SECURITY_READER.id}"


def _form(page: str) -> dict[str, str]:
    """The values a browser would post from the settings form on ``page``."""
    data: dict[str, str] = {}
    for tag in re.findall(r"<input [^>]*>", page):
        name = re.search(r'name="([^"]+)"', tag)
        if name is None or name.group(1) == "csrf_token":
            continue
        kind = re.search(r'type="([^"]+)"', tag)
        if kind is not None and kind.group(1) == "checkbox":
            if " checked" in tag:
                data[name.group(1)] = "on"
            continue
        value = re.search(r'value="([^"]*)"', tag)
        data[name.group(1)] = value.group(1) if value else ""
    for select in re.findall(r'<select id="[^"]*" name="([^"]+)">(.*?)</select>', page, re.S):
        chosen = re.search(r'<option value="([^"]+)" selected', select[1]) or re.search(
            r'<option value="([^"]+)"', select[1]
        )
        data[select[0]] = chosen.group(1) if chosen is not None else ""
    return data


def _save(portal: Portal, changes: dict[str, str | None]) -> tuple[str, object]:
    page = portal.get(READER).text
    data = _form(page)
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    response = portal.submit(READER, READER, data)
    return page, response


def _policy(rt: Pimlico) -> role_settings.Policy:
    return role_settings.get_policy(
        rt, actor=Actor.operator("test"), target_type=TargetType.ROLE, object_id=SECURITY_READER.id
    )


def test_the_list_shows_roles_and_pim_groups_with_a_summary(visit: Visit, demo: Demo) -> None:
    page = visit("root").get("/portal/admin/settings")
    assert page.status_code == 200
    assert "Security Reader" in page.text
    assert "Search and Purge PIM" in page.text
    assert "Group membership" in page.text
    assert "Group ownership" in page.text
    assert "Approval by Bob Approver (bob)" not in page.text  # names are user names here
    assert "Approval by bob" in page.text
    assert "Activation up to 8 h; needs MFA" in page.text


def test_the_form_shows_every_group_of_rules(visit: Visit, demo: Demo) -> None:
    page = visit("root").get(READER).text
    for heading in ("Activation", "Assignment", "Notification", "Approval stage 1"):
        assert heading in page
    data = _form(page)
    assert data["activation.maximum_duration"] == "8"
    assert data["activation.maximum_duration.unit"] == "hours"
    assert data["activation.require_mfa"] == "on"
    assert "activation.require_justification" not in data
    assert data["notifications.activation.approver.level"] == "all"


def test_root_requires_approval_by_bob_with_two_hours_at_most(
    visit: Visit, rt: Pimlico, demo: Demo
) -> None:
    root = visit("root")
    before = _policy(rt)
    _, response = _save(
        root,
        {
            "activation.maximum_duration": "2",
            "activation.maximum_duration.unit": "hours",
            "approval.required": "on",
            "approval.stages[0].approvers": "bob",
        },
    )
    assert response.status_code == 303, response.text  # type: ignore[attr-defined]
    after = _policy(rt)
    assert after.version == before.version + 1
    expected = RoleSettings(
        activation=before.settings.activation.__class__(
            maximum_duration=timedelta(hours=2),
            require_mfa=True,
            require_justification=False,
        ),
        approval=before.settings.approval.__class__(
            required=True,
            stages=(ApprovalStage(approvers=(ApproverRef.user(demo.users["bob"]),)),),
        ),
        assignment=before.settings.assignment,
        notifications=before.settings.notifications,
    )
    assert after.settings == expected
    shown = root.get(READER).text
    assert "are saved" in shown
    assert 'value="bob"' in shown


def test_a_maximum_duration_out_of_range_is_refused_beside_its_field(
    visit: Visit, rt: Pimlico, demo: Demo
) -> None:
    root = visit("root")
    before = _policy(rt)
    for amount, unit in (("25", "hours"), ("4", "minutes")):
        _, response = _save(
            root,
            {"activation.maximum_duration": amount, "activation.maximum_duration.unit": unit},
        )
        text = response.text  # type: ignore[attr-defined]
        assert response.status_code == 400  # type: ignore[attr-defined]
        assert 'data-code="InvalidPolicy"' in text
        assert "activation.maximum_duration: must be between PT5M and P1D" in text
        assert 'id="activation.maximum_duration-error"' in text
        assert f'value="{amount}"' in text  # the typed value is kept
    assert _policy(rt) == before


def test_an_unknown_approver_is_refused_naming_the_stage(
    visit: Visit, rt: Pimlico, demo: Demo
) -> None:
    _, response = _save(
        visit("root"), {"approval.required": "on", "approval.stages[0].approvers": "nobody-here"}
    )
    assert response.status_code == 400  # type: ignore[attr-defined]
    assert "UnknownApprover" in response.text  # type: ignore[attr-defined]
    assert "approval.stages[0].approvers" in response.text  # type: ignore[attr-defined]
    assert _policy(rt).settings.approval.required is False


def test_a_stale_version_is_refused_as_changed_meanwhile(
    visit: Visit, rt: Pimlico, demo: Demo
) -> None:
    root = visit("root")
    page = root.get(READER).text
    data = _form(page)
    role_settings.update_policy(
        rt,
        actor=Actor.operator("test"),
        target_type=TargetType.ROLE,
        object_id=SECURITY_READER.id,
        changes={"activation": {"require_ticket": True}},
    )
    changed = _policy(rt)
    data["activation.maximum_duration"] = "3"
    response = root.submit(READER, READER, data)
    assert response.status_code == 412
    assert "Someone changed these settings meanwhile" in response.text
    assert f'name="version" value="{changed.version}"' in response.text
    assert _policy(rt) == changed


def test_alex_without_an_admin_role_is_refused(visit: Visit, demo: Demo) -> None:
    alex = visit("alex")
    for path in ("/portal/admin/settings", READER):
        page = alex.get(path)
        assert page.status_code == 403
        assert 'data-code="PermissionDenied"' in page.text
