"""Assignments in the portal: the list with names and ends, adding one and removing it as
administrators' requests, and the refusals (the last Global Administrator, the expiration
rules) in plain words."""

from __future__ import annotations

import re
from datetime import timedelta

from pimlico.clock import FixedClock
from pimlico.demo import Demo
from pimlico.domain.catalogue import GLOBAL_ADMINISTRATOR, SECURITY_READER
from pimlico.domain.model import Assignment, AssignmentKind, PrincipalRef, PrincipalType, Target
from pimlico.services import assignments
from pimlico.services.runtime import Actor, Pimlico
from tests.portal.conftest import Visit

LIST = "/portal/admin/assignments"
OPERATOR = Actor.operator("test")


def _bobs(rt: Pimlico, demo: Demo, *, include_ended: bool = False) -> list[Assignment]:
    return assignments.list_assignments(
        rt,
        actor=OPERATOR,
        principal=PrincipalRef(PrincipalType.USER, demo.users["bob"]),
        include_ended=include_ended,
    )


def test_the_list_shows_names_scopes_kinds_and_ends(visit: Visit, demo: Demo) -> None:
    page = visit("root").get(LIST)
    assert page.status_code == 200
    text = page.text
    assert "Alex Analyst (alex)" in text
    assert "member of Search and Purge PIM" in text
    assert "Security Reader" in text
    assert "<code>/apps/mail</code>" in text
    assert "never ends" in text  # root's permanent Global Administrator
    assert "ends in 365 d" in text


def test_the_list_filters_by_principal_and_kind(visit: Visit, demo: Demo) -> None:
    root = visit("root")
    text = root.get(f"{LIST}?principal=alex&kind=eligible").text
    assert "Alex Analyst (alex)" in text
    assert "Erin Exchange" not in text
    assert "Break-glass Administrator (root)" not in text
    assert "No assignments match" in root.get(f"{LIST}?principal=alex&kind=active").text
    unknown = root.get(f"{LIST}?principal=nobody-here").text
    assert 'data-code="NotFound"' in unknown


def test_root_adds_an_eligible_assignment_and_removes_it(
    visit: Visit, rt: Pimlico, demo: Demo
) -> None:
    root = visit("root")
    response = root.submit(
        LIST,
        LIST,
        {
            "principal": "bob",
            "target": f"role:{SECURITY_READER.id}",
            "scope": "/",
            "kind": "eligible",
            "duration": "30",
            "duration_unit": "days",
            "justification": "covers for Alex",
            "ticket_system": "",
            "ticket_number": "",
        },
    )
    assert response.status_code == 303, response.text
    (added,) = _bobs(rt, demo)
    assert added.kind is AssignmentKind.ELIGIBLE
    assert added.target == Target.role(SECURITY_READER.id)
    assert added.end is not None
    assert (added.end - added.start).days == 30
    assert added.justification == "covers for Alex"
    listed = root.get(f"{LIST}?principal=bob").text
    assert "Bob Approver (bob)" in listed
    assert "now has the eligible assignment" in listed

    detail = f"{LIST}/{added.id}"
    assert "Remove assignment" in root.get(detail).text
    response = root.submit(detail, f"{detail}/remove", {"justification": "Alex is back"})
    assert response.status_code == 303, response.text
    assert _bobs(rt, demo) == []
    (ended,) = _bobs(rt, demo, include_ended=True)
    assert ended.ended_at is not None
    assert ended.end_reason == "Alex is back"
    assert "its access ended now" in root.get(LIST).text


def test_an_assignment_longer_than_the_settings_allow_is_refused_in_plain_words(
    visit: Visit, rt: Pimlico, demo: Demo
) -> None:
    root = visit("root")
    response = root.submit(
        LIST,
        LIST,
        {
            "principal": "bob",
            "target": f"role:{SECURITY_READER.id}",
            "scope": "/",
            "kind": "eligible",
            "duration": "",
            "duration_unit": "days",
            "permanent": "1",
            "justification": "forever",
        },
    )
    assert response.status_code == 400
    assert 'data-rule="ExpirationRule"' in response.text
    assert "Ask for a duration the policy allows." in response.text
    assert 'value="bob"' in response.text  # the form keeps what was typed
    assert _bobs(rt, demo) == []


def test_removing_the_last_global_administrator_is_refused_in_plain_words(
    visit: Visit, rt: Pimlico, demo: Demo
) -> None:
    root = visit("root")
    (ga,) = assignments.list_assignments(
        rt, actor=OPERATOR, target=Target.role(GLOBAL_ADMINISTRATOR.id)
    )
    detail = f"{LIST}/{ga.id}"
    response = root.submit(detail, f"{detail}/remove", {"justification": "tidy up"})
    assert response.status_code == 409
    assert 'data-code="LastGlobalAdministrator"' in response.text
    assert "this would leave no active Global Administrator" in response.text
    assert "Make someone else Global Administrator first." in response.text
    (still,) = assignments.list_assignments(
        rt, actor=OPERATOR, target=Target.role(GLOBAL_ADMINISTRATOR.id)
    )
    assert still.ended_at is None


def test_root_extends_an_eligible_assignment(
    visit: Visit, rt: Pimlico, demo: Demo, clock: FixedClock
) -> None:
    clock.advance(timedelta(days=10))
    root = visit("root")
    (alexs,) = assignments.list_assignments(
        rt,
        actor=OPERATOR,
        principal=PrincipalRef(PrincipalType.USER, demo.users["alex"]),
        target=Target.role(SECURITY_READER.id),
    )
    detail = f"{LIST}/{alexs.id}"
    response = root.submit(
        detail,
        f"{detail}/extend",
        {"duration": "365", "duration_unit": "days", "justification": "another project"},
    )
    assert response.status_code == 303, response.text
    assert alexs.end is not None
    extended = assignments.list_assignments(
        rt, actor=OPERATOR, target=Target.role(SECURITY_READER.id)
    )
    (now,) = [a for a in extended if a.id == alexs.id]
    assert now.end is not None
    assert now.end > alexs.end
    assert "is extended" in root.get(detail).text


def test_alex_without_an_admin_role_is_refused(visit: Visit, demo: Demo) -> None:
    alex = visit("alex")
    page = alex.get(LIST)
    assert page.status_code == 403
    assert 'data-code="PermissionDenied"' in page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    response = alex.post(
        LIST,
        {
            "principal": "alex",
            "target": f"role:{GLOBAL_ADMINISTRATOR.id}",
            "kind": "active",
            "duration": "1",
        },
        token=token.group(1),
    )
    assert response.status_code == 403
