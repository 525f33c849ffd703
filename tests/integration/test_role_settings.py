"""Role settings use cases on SQLite and PostgreSQL: defaults, partial changes, versions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from pimlico.db.tables import AuditEventRow
from pimlico.domain.model import TargetType
from pimlico.errors import InvalidPolicy, NotFound
from pimlico.services import role_settings
from pimlico.services.role_settings import PreconditionFailed
from pimlico.services.runtime import Pimlico
from tests.integration.world import OPERATOR, audit_count, group, role


def test_a_target_without_settings_has_the_defaults_at_version_zero(rt: Pimlico) -> None:
    r = role(rt, "r", "x.y")
    policy = role_settings.get_policy(rt, actor=OPERATOR, target_type=TargetType.ROLE, object_id=r)
    assert policy.version == 0
    assert policy.settings.activation.maximum_duration == timedelta(hours=8)


def test_a_partial_change_keeps_everything_else_and_bumps_the_version(rt: Pimlico) -> None:
    g = group(rt, "g")
    changed = role_settings.update_policy(
        rt,
        actor=OPERATOR,
        target_type=TargetType.GROUP_MEMBER,
        object_id=g.id,
        changes={"activation": {"maximum_duration": "PT2H"}, "approval": {"required": True}},
    ).value
    assert changed.version == 1
    again = role_settings.get_policy(
        rt, actor=OPERATOR, target_type=TargetType.GROUP_MEMBER, object_id=g.id
    )
    assert again.settings.activation.maximum_duration == timedelta(hours=2)
    assert again.settings.activation.require_mfa is True
    assert again.settings.approval.required is True
    # Membership and ownership of the same group have separate policies.
    owner = role_settings.get_policy(
        rt, actor=OPERATOR, target_type=TargetType.GROUP_OWNER, object_id=g.id
    )
    assert owner.version == 0


def test_a_stale_version_is_refused_and_changes_nothing(rt: Pimlico) -> None:
    r = role(rt, "r", "x.y")
    role_settings.update_policy(
        rt,
        actor=OPERATOR,
        target_type=TargetType.ROLE,
        object_id=r,
        changes={"activation": {"require_ticket": True}},
        if_version=0,
    )
    with pytest.raises(PreconditionFailed):
        role_settings.update_policy(
            rt,
            actor=OPERATOR,
            target_type=TargetType.ROLE,
            object_id=r,
            changes={"activation": {"require_ticket": False}},
            if_version=0,
        )
    policy = role_settings.get_policy(rt, actor=OPERATOR, target_type=TargetType.ROLE, object_id=r)
    assert policy.settings.activation.require_ticket is True


def test_invalid_settings_name_the_field_and_write_nothing(rt: Pimlico) -> None:
    r = role(rt, "r", "x.y")
    before = audit_count(rt)
    with pytest.raises(InvalidPolicy) as caught:
        role_settings.update_policy(
            rt,
            actor=OPERATOR,
            target_type=TargetType.ROLE,
            object_id=r,
            changes={"activation": {"maximum_duration": "PT48H"}},
        )
    assert [e.field for e in caught.value.errors] == ["activation.maximum_duration"]
    assert audit_count(rt) == before


def test_settings_of_a_target_that_does_not_exist_are_not_found(rt: Pimlico) -> None:
    with pytest.raises(NotFound):
        role_settings.get_policy(rt, actor=OPERATOR, target_type=TargetType.ROLE, object_id="nope")


def test_a_change_is_audited_with_the_whole_policy_before_and_after(rt: Pimlico) -> None:
    r = role(rt, "r", "x.y")
    role_settings.update_policy(
        rt,
        actor=OPERATOR,
        target_type=TargetType.ROLE,
        object_id=r,
        changes={"activation": {"maximum_duration": "PT1H"}},
    )
    with rt.reading() as s:
        event = s.scalars(
            select(AuditEventRow).where(AuditEventRow.action == "role_settings.update")
        ).one()
    assert event.target_id == f"role:{r}"
    assert '"maximum_duration":"PT8H"' in (event.before or "")
    assert '"maximum_duration":"PT1H"' in (event.after or "")
