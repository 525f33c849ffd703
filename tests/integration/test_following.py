"""Two processes on one store: a decision asked with ``at_least_revision`` sees the write."""

from __future__ import annotations

from datetime import timedelta

from pimlico.clock import FixedClock
from pimlico.domain.model import AssignmentKind, Target
from pimlico.services import assignments, decisions
from pimlico.services.runtime import Pimlico
from pimlico.settings import Settings
from tests.integration.world import OPERATOR, role, user


def test_another_runtime_honours_a_write_when_asked_for_its_revision(
    rt: Pimlico, settings: Settings, clock: FixedClock
) -> None:
    u = user(rt, "u")
    r = role(rt, "r", "x.y")
    with Pimlico(settings, clock=clock) as replica:
        assert not decisions.check(
            replica, actor=OPERATOR, principal_id=u.id, permission="x.y", scope="/"
        ).allowed
        made = assignments.assign(
            rt,
            actor=OPERATOR,
            kind=AssignmentKind.ACTIVE,
            principal=u,
            target=Target.role(r),
            duration=timedelta(hours=1),
            justification="j",
        )
        fresh = decisions.check(
            replica,
            actor=OPERATOR,
            principal_id=u.id,
            permission="x.y",
            scope="/",
            at_least_revision=made.revision,
        )
        assert fresh.allowed
        assert fresh.revision >= made.revision
        removed = assignments.remove_assignment(rt, actor=OPERATOR, assignment_id=made.value.id)
        assert not decisions.check(
            replica,
            actor=OPERATOR,
            principal_id=u.id,
            permission="x.y",
            scope="/",
            at_least_revision=removed.revision,
        ).allowed


def test_a_fresh_runtime_builds_its_index_from_the_store(
    rt: Pimlico, settings: Settings, clock: FixedClock
) -> None:
    u = user(rt, "u")
    r = role(rt, "r", "x.y")
    assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ACTIVE,
        principal=u,
        target=Target.role(r, "/a"),
        duration=timedelta(hours=1),
        justification="j",
    )
    with Pimlico(settings, clock=clock) as other:
        assert decisions.check(
            other, actor=OPERATOR, principal_id=u.id, permission="x.y", scope="/a/b"
        ).allowed
        assert not decisions.check(
            other, actor=OPERATOR, principal_id=u.id, permission="x.y", scope="/"
        ).allowed
