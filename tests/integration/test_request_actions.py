"""Every action is a request: administrators' actions (assign, update, remove, extend, renew),
self-service extend and renew with approval, later starts provisioned by the worker, and
escalations recorded once — on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from pimlico.clock import FixedClock
from pimlico.db.tables import AssignmentRow, AuditEventRow, RequestRow
from pimlico.domain.catalogue import PRIVILEGED_ROLE_ADMINISTRATOR
from pimlico.domain.model import AssignmentKind, PrincipalRef, PrincipalType, Target, TargetType
from pimlico.domain.requests import (
    ExpirationType,
    RequestAction,
    RequestNotCancelable,
    RequestStatus,
    Schedule,
    Ticket,
)
from pimlico.errors import InvalidInput, PermissionDenied, PolicyViolation, RoleAssignmentExists
from pimlico.jobs.handlers import HANDLERS
from pimlico.jobs.worker import Worker
from pimlico.services import approvals, assignments, requests
from pimlico.services.request_records import RequestView
from pimlico.services.requests import RequestFilter
from pimlico.services.runtime import Actor, Pimlico
from tests.integration.test_requests import (
    READER,
    _u,
    person,
    policy,
    settings,  # noqa: F401 (the fixture: a secret key for MFA)
    with_mfa,
)
from tests.integration.world import OPERATOR, role

DAY = timedelta(days=1)
ELIGIBLE, ACTIVE = AssignmentKind.ELIGIBLE, AssignmentKind.ACTIVE


def admin(rt: Pimlico, action: RequestAction, **kwargs: object) -> RequestView:
    return requests.submit(rt, actor=OPERATOR, action=action, **kwargs).value  # type: ignore[arg-type]


def audited(rt: Pimlico, request_id: str) -> list[str]:
    with rt.reading() as s:
        return list(
            s.scalars(
                select(AuditEventRow.action)
                .where(AuditEventRow.request_id == request_id)
                .order_by(AuditEventRow.sequence)
            )
        )


def approver(rt: Pimlico, name: str) -> Actor:
    """A user holding Privileged Role Administrator (``pim.requests.approve``) for 90 days."""
    who = person(rt, name)
    assignments.assign(
        rt,
        actor=OPERATOR,
        kind=ACTIVE,
        principal=_u(who),
        target=Target(TargetType.ROLE, PRIVILEGED_ROLE_ADMINISTRATOR.id, "/"),
        duration=90 * DAY,
        justification="approver",
    )
    return who


# -- administrators' requests ----------------------------------------------------------------


def test_an_administrators_assignment_is_a_provisioned_request_with_its_ticket(
    rt: Pimlico,
) -> None:
    alex = person(rt, "alex")

    view = admin(
        rt,
        RequestAction.ADMIN_ASSIGN,
        kind=ELIGIBLE,
        principal=_u(alex),
        target=READER,
        schedule=Schedule(duration=30 * DAY),
        justification="new analyst",
        ticket=Ticket("ServiceNow", "CHG-7"),
    )

    assert view.request.action is RequestAction.ADMIN_ASSIGN
    assert view.request.status is RequestStatus.PROVISIONED
    assert view.request.requested_by == OPERATOR.name
    assert view.request.ticket == Ticket("ServiceNow", "CHG-7")
    with rt.reading() as s:
        made = s.get(AssignmentRow, view.assignment_id)
        assert made is not None
        assert made.request_id == view.request.id
    assert audited(rt, view.request.id) == [
        "assignment.eligible.assign",
        "request.admin_assign.submit",
        "request.provisioned",
    ]


def test_update_extend_and_remove_are_requests_on_the_assignment_they_change(
    rt: Pimlico, clock: FixedClock
) -> None:
    alex = person(rt, "alex")
    made = admin(
        rt,
        RequestAction.ADMIN_ASSIGN,
        kind=ELIGIBLE,
        principal=_u(alex),
        target=READER,
        schedule=Schedule(duration=30 * DAY),
    )
    assert made.assignment_id is not None
    at = made.assignment_id

    updated = admin(
        rt,
        RequestAction.ADMIN_UPDATE,
        kind=ELIGIBLE,
        assignment_id=at,
        schedule=Schedule(duration=10 * DAY),
    )
    extended = admin(
        rt,
        RequestAction.ADMIN_EXTEND,
        kind=ELIGIBLE,
        assignment_id=at,
        schedule=Schedule(duration=60 * DAY),
    )
    removed = admin(
        rt, RequestAction.ADMIN_REMOVE, kind=ELIGIBLE, assignment_id=at, justification="left"
    )

    assert updated.window is not None
    assert updated.window.end == clock.now() + 10 * DAY
    assert extended.window is not None
    assert extended.window.end == clock.now() + 60 * DAY
    assert [v.request.status for v in (updated, extended, removed)] == [
        RequestStatus.PROVISIONED,
        RequestStatus.PROVISIONED,
        RequestStatus.REVOKED,
    ]
    assert {v.assignment_id for v in (updated, extended, removed)} == {at}
    with rt.reading() as s:
        row = s.get(AssignmentRow, at)
        assert row is not None
        assert row.ended_at == clock.now()
        assert row.end_reason == "left"


def test_an_administrators_renewal_is_a_new_assignment_after_the_old_one_expired(
    rt: Pimlico, clock: FixedClock
) -> None:
    alex = person(rt, "alex")
    made = admin(
        rt,
        RequestAction.ADMIN_ASSIGN,
        kind=ELIGIBLE,
        principal=_u(alex),
        target=READER,
        schedule=Schedule(duration=DAY),
    )
    assert made.assignment_id is not None
    clock.advance(2 * DAY)

    renewed = admin(
        rt,
        RequestAction.ADMIN_RENEW,
        kind=ELIGIBLE,
        assignment_id=made.assignment_id,
        schedule=Schedule(duration=30 * DAY),
    )

    assert renewed.request.status is RequestStatus.PROVISIONED
    assert renewed.assignment_id not in (None, made.assignment_id)


def test_an_incomplete_administrators_request_names_each_missing_field(rt: Pimlico) -> None:
    with pytest.raises(InvalidInput) as caught:
        admin(rt, RequestAction.ADMIN_ASSIGN, kind=ELIGIBLE, target=READER, schedule=Schedule())
    assert {e.field for e in caught.value.errors} == {"schedule.duration", "target"}
    with pytest.raises(InvalidInput) as caught:
        admin(rt, RequestAction.ADMIN_EXTEND, kind=ELIGIBLE, schedule=Schedule(duration=DAY))
    assert [e.field for e in caught.value.errors] == ["assignment_id"]


def test_an_administrators_dry_run_keeps_nothing_and_a_key_answers_the_first_request(
    rt: Pimlico,
) -> None:
    alex = person(rt, "alex")
    ask = {
        "kind": ELIGIBLE,
        "principal": _u(alex),
        "target": READER,
        "schedule": Schedule(duration=30 * DAY),
    }
    dry = admin(rt, RequestAction.ADMIN_ASSIGN, dry_run=True, **ask)
    assert dry.dry_run
    assert dry.request.status is RequestStatus.PROVISIONED
    with rt.reading() as s:
        assert s.scalar(select(func.count()).select_from(RequestRow)) == 0
        assert s.scalar(select(func.count()).select_from(AssignmentRow)) == 0

    first = admin(rt, RequestAction.ADMIN_ASSIGN, idempotency_key="hire-alex", **ask)
    again = admin(rt, RequestAction.ADMIN_ASSIGN, idempotency_key="hire-alex", **ask)
    assert again.request.id == first.request.id
    assert again.assignment_id == first.assignment_id
    with pytest.raises(RoleAssignmentExists):
        admin(rt, RequestAction.ADMIN_ASSIGN, idempotency_key="hire-alex-2", **ask)


def test_a_later_start_is_granted_until_the_worker_provisions_it_at_the_start(
    rt: Pimlico, clock: FixedClock
) -> None:
    alex = person(rt, "alex")
    start = clock.now() + DAY
    view = admin(
        rt,
        RequestAction.ADMIN_ASSIGN,
        kind=ELIGIBLE,
        principal=_u(alex),
        target=READER,
        schedule=Schedule(start=start, duration=30 * DAY),
    )
    assert view.request.status is RequestStatus.GRANTED
    worker = Worker(rt, HANDLERS, name="w")

    clock.set(start - timedelta(seconds=1))
    worker.run_once(clock.now())
    assert requests.get_request(rt, actor=OPERATOR, request_id=view.request.id).request.status is (
        RequestStatus.GRANTED
    )
    clock.set(start)
    worker.run_once(clock.now())
    provisioned = requests.get_request(rt, actor=OPERATOR, request_id=view.request.id)
    assert provisioned.request.status is RequestStatus.PROVISIONED
    assert provisioned.request.history[-1].reason == "started"


def test_canceling_a_granted_later_start_ends_its_assignment_before_it_begins(
    rt: Pimlico, clock: FixedClock
) -> None:
    alex = person(rt, "alex")
    start = clock.now() + DAY
    view = admin(
        rt,
        RequestAction.ADMIN_ASSIGN,
        kind=ELIGIBLE,
        principal=_u(alex),
        target=READER,
        schedule=Schedule(start=start, duration=30 * DAY),
    )

    canceled = requests.cancel(rt, actor=OPERATOR, request_id=view.request.id).value

    assert canceled.request.status is RequestStatus.CANCELED
    clock.set(start)
    Worker(rt, HANDLERS, name="w").run_once(clock.now())
    assert requests.get_request(rt, actor=OPERATOR, request_id=view.request.id).request.status is (
        RequestStatus.CANCELED
    )
    with rt.reading() as s:
        row = s.get(AssignmentRow, view.assignment_id)
        assert row is not None
        assert row.ended_at is not None


# -- self-service extend and renew -----------------------------------------------------------


def _eligible_for(rt: Pimlico, who: Actor, days: float) -> str:
    made = assignments.assign(
        rt,
        actor=OPERATOR,
        kind=ELIGIBLE,
        principal=_u(who),
        target=READER,
        duration=days * DAY,
    ).value
    return made.id


def _self(rt: Pimlico, who: Actor, action: RequestAction, **kwargs: object) -> RequestView:
    return requests.submit(
        rt,
        actor=who,
        action=action,
        kind=ELIGIBLE,
        target=READER,
        **kwargs,  # type: ignore[arg-type]
    ).value


def test_alex_extends_his_eligibility_near_its_end_once_an_administrator_approves(
    rt: Pimlico, clock: FixedClock
) -> None:
    alex, bob = person(rt, "alex"), approver(rt, "bob")
    held = _eligible_for(rt, alex, 10)

    asked = _self(
        rt,
        alex,
        RequestAction.SELF_EXTEND,
        justification="project runs on",
        schedule=Schedule(duration=60 * DAY),
    )

    assert asked.request.status is RequestStatus.PENDING_APPROVAL
    assert asked.assignment_id == held
    with pytest.raises(Exception, match="your own request"):
        approvals.approve(rt, actor=alex, request_id=asked.request.id, justification="me")
    done = approvals.approve(rt, actor=bob, request_id=asked.request.id, justification="ok").value
    assert done.request.status is RequestStatus.PROVISIONED
    with rt.reading() as s:
        row = s.get(AssignmentRow, held)
        assert row is not None
        assert row.end_at == clock.now() + 60 * DAY


def test_an_extension_far_from_the_end_is_refused_with_the_expiration_rule(
    rt: Pimlico,
) -> None:
    alex = person(rt, "alex")
    _eligible_for(rt, alex, 60)
    with pytest.raises(PolicyViolation) as caught:
        _self(
            rt,
            alex,
            RequestAction.SELF_EXTEND,
            justification="x",
            schedule=Schedule(duration=90 * DAY),
        )
    assert [e.rule for e in caught.value.errors] == ["ExpirationRule"]
    assert "within 14 days" in caught.value.errors[0].message


def test_alex_renews_an_expired_eligibility_with_approval_as_a_new_assignment(
    rt: Pimlico, clock: FixedClock
) -> None:
    alex, bob = person(rt, "alex"), approver(rt, "bob")
    old = _eligible_for(rt, alex, 5)
    clock.advance(6 * DAY)
    with pytest.raises(PolicyViolation) as caught:
        _self(rt, alex, RequestAction.SELF_EXTEND, justification="x", schedule=Schedule())
    assert "renew it" in caught.value.errors[0].message

    asked = _self(
        rt,
        alex,
        RequestAction.SELF_RENEW,
        justification="back on the team",
        schedule=Schedule(duration=30 * DAY),
    )
    done = approvals.approve(rt, actor=bob, request_id=asked.request.id, justification="ok").value

    assert done.request.status is RequestStatus.PROVISIONED
    assert done.assignment_id not in (None, old)
    with rt.reading() as s:
        row = s.get(AssignmentRow, done.assignment_id)
        assert row is not None
        assert (row.start_at, row.end_at) == (clock.now(), clock.now() + 30 * DAY)


def test_a_renewal_while_one_is_current_is_role_assignment_exists(rt: Pimlico) -> None:
    alex = person(rt, "alex")
    _eligible_for(rt, alex, 5)
    with pytest.raises((RoleAssignmentExists, PolicyViolation)):
        _self(rt, alex, RequestAction.SELF_RENEW, justification="x", schedule=Schedule())


def test_an_extension_approved_after_the_assignment_ended_fails_and_says_why(
    rt: Pimlico, clock: FixedClock
) -> None:
    alex, bob = person(rt, "alex"), approver(rt, "bob")
    _eligible_for(rt, alex, 0.25)
    asked = _self(
        rt,
        alex,
        RequestAction.SELF_EXTEND,
        justification="x",
        schedule=Schedule(expiration=ExpirationType.AFTER_DURATION, duration=10 * DAY),
    )
    clock.advance(timedelta(hours=6, minutes=1))

    done = approvals.approve(rt, actor=bob, request_id=asked.request.id, justification="ok").value

    assert done.request.status is RequestStatus.FAILED
    assert done.request.history[-1].reason == "not provisioned: the assignment ended"


# -- escalation and history ------------------------------------------------------------------


def test_an_escalation_is_recorded_once_however_often_time_is_looked_at(
    rt: Pimlico, clock: FixedClock
) -> None:
    alex, bob, carol = person(rt, "alex"), person(rt, "bob"), person(rt, "carol")
    policy(
        rt,
        READER,
        {
            "activation": {"require_justification": False},
            "approval": {
                "required": True,
                "stages": [
                    {
                        "approvers": [{"type": "user", "id": bob.name}],
                        "escalation_enabled": True,
                        "escalation_approvers": [{"type": "user", "id": carol.name}],
                        "escalation_after": "PT4H",
                        "timeout": "PT8H",
                    }
                ],
            },
        },
    )
    _eligible_for(rt, alex, 30)
    with_mfa(rt, clock, alex)
    asked = requests.submit(
        rt,
        actor=alex,
        action=RequestAction.SELF_ACTIVATE,
        kind=ACTIVE,
        target=READER,
        schedule=Schedule(duration=timedelta(hours=1)),
        justification="x",
    ).value.request
    worker = Worker(rt, HANDLERS, name="w")

    clock.set(asked.requested_at + timedelta(hours=4))
    worker.run_once(clock.now())
    with rt.writing(OPERATOR) as w:  # a stray second look between escalation and timeout
        approvals.advance(w, request_id=asked.id)
    assert audited_actions(rt, asked.id).count("request.escalated") == 1

    done = approvals.approve(rt, actor=carol, request_id=asked.id, justification="on call").value
    assert done.request.status is RequestStatus.PROVISIONED
    assert done.window is not None  # "start now": the hour counts from the approval
    assert (done.window.start, done.window.end) == (clock.now(), clock.now() + timedelta(hours=1))
    assert audited_actions(rt, asked.id).count("request.escalated") == 1


def audited_actions(rt: Pimlico, target_id: str) -> list[str]:
    with rt.reading() as s:
        return list(
            s.scalars(
                select(AuditEventRow.action)
                .where(AuditEventRow.target_id == target_id)
                .order_by(AuditEventRow.sequence)
            )
        )


def test_the_request_history_is_filtered_by_action_principal_target_and_time(
    rt: Pimlico, clock: FixedClock
) -> None:
    alex, zoe = person(rt, "alex"), person(rt, "zoe")
    first = _eligible_for(rt, alex, 30)
    clock.advance(DAY)
    _eligible_for(rt, zoe, 30)
    admin(rt, RequestAction.ADMIN_REMOVE, kind=ELIGIBLE, assignment_id=first)

    def found(**where: object) -> list[tuple[str, str]]:
        views = requests.list_requests(rt, actor=OPERATOR, where=RequestFilter(**where))  # type: ignore[arg-type]
        return [(v.request.action.value, v.request.principal.id) for v in views]

    assert found(action=RequestAction.ADMIN_REMOVE) == [("admin_remove", alex.name)]
    assert found(principal=PrincipalRef(PrincipalType.USER, zoe.name)) == [
        ("admin_assign", zoe.name)
    ]
    assert found(until=clock.now()) == [("admin_assign", alex.name)]
    assert found(since=clock.now(), status=RequestStatus.PROVISIONED) == [
        ("admin_assign", zoe.name)
    ]
    assert len(found(target_id=READER.object_id)) == 3
    assert len(requests.list_requests(rt, actor=OPERATOR, limit=2)) == 2


def test_an_update_without_a_new_end_keeps_it_and_a_future_change_is_provisioned_at_once(
    rt: Pimlico, clock: FixedClock
) -> None:
    alex = person(rt, "alex")
    start = clock.now() + DAY
    made = admin(
        rt,
        RequestAction.ADMIN_ASSIGN,
        kind=ELIGIBLE,
        principal=_u(alex),
        target=READER,
        schedule=Schedule(start=start, duration=30 * DAY),
    )
    assert made.assignment_id is not None

    moved = admin(
        rt,
        RequestAction.ADMIN_UPDATE,
        kind=ELIGIBLE,
        assignment_id=made.assignment_id,
        schedule=Schedule(start=start + DAY),
    )

    assert moved.window is not None
    assert (moved.window.start, moved.window.end) == (start + DAY, start + 30 * DAY)
    assert moved.request.status is RequestStatus.PROVISIONED


def test_an_activation_is_activated_again_not_extended(rt: Pimlico, clock: FixedClock) -> None:
    alex = person(rt, "alex")
    _eligible_for(rt, alex, 30)
    policy(rt, READER, {"activation": {"require_justification": False}})
    with_mfa(rt, clock, alex)
    requests.submit(rt, actor=alex, action=RequestAction.SELF_ACTIVATE, kind=ACTIVE, target=READER)

    with pytest.raises(PolicyViolation) as caught:
        requests.submit(
            rt,
            actor=alex,
            action=RequestAction.SELF_EXTEND,
            kind=ACTIVE,
            target=READER,
            justification="more time",
            schedule=Schedule(duration=30 * DAY),
        )
    assert "activate again" in caught.value.errors[0].message


# -- found in review: moved starts, who cancels, shortened extensions, keys -----------------


def test_a_start_moved_later_is_provisioned_at_the_new_start_and_then_cannot_be_canceled(
    rt: Pimlico, clock: FixedClock
) -> None:
    alex = person(rt, "alex")
    start = clock.now() + DAY
    made = admin(
        rt,
        RequestAction.ADMIN_ASSIGN,
        kind=ELIGIBLE,
        principal=_u(alex),
        target=READER,
        schedule=Schedule(start=start, duration=30 * DAY),
    )
    assert made.assignment_id is not None
    assignments.update_assignment(
        rt, actor=OPERATOR, assignment_id=made.assignment_id, start=start + 2 * DAY
    )
    worker = Worker(rt, HANDLERS, name="w")

    def status() -> RequestStatus:
        view = requests.get_request(rt, actor=OPERATOR, request_id=made.request.id)
        return view.request.status

    clock.set(start)
    worker.run_once(clock.now())
    assert status() is RequestStatus.GRANTED
    clock.set(start + 2 * DAY)
    with pytest.raises(RequestNotCancelable):
        requests.cancel(rt, actor=OPERATOR, request_id=made.request.id)
    worker.run_once(clock.now())
    assert status() is RequestStatus.PROVISIONED


def test_an_approver_without_the_write_permission_cannot_cancel_an_administrators_request(
    rt: Pimlico, clock: FixedClock
) -> None:
    alex, carl = person(rt, "alex"), person(rt, "carl")
    approves = role(rt, "Approver only", "pim.requests.approve", "pim.requests.read")
    assignments.assign(
        rt,
        actor=OPERATOR,
        kind=ACTIVE,
        principal=_u(carl),
        target=Target(TargetType.ROLE, approves, "/"),
        duration=30 * DAY,
        justification="approver",
    )
    made = admin(
        rt,
        RequestAction.ADMIN_ASSIGN,
        kind=ELIGIBLE,
        principal=_u(alex),
        target=READER,
        schedule=Schedule(start=clock.now() + DAY, duration=30 * DAY),
    )

    with pytest.raises(PermissionDenied):
        requests.cancel(rt, actor=carl, request_id=made.request.id)
    assert requests.cancel(rt, actor=approver(rt, "bob"), request_id=made.request.id).value


def test_an_extension_approved_after_a_longer_one_fails_instead_of_shortening(
    rt: Pimlico, clock: FixedClock
) -> None:
    alex, bob = person(rt, "alex"), approver(rt, "bob")
    held = _eligible_for(rt, alex, 10)
    asked = _self(
        rt,
        alex,
        RequestAction.SELF_EXTEND,
        justification="x",
        schedule=Schedule(duration=60 * DAY),
    )
    assignments.extend_assignment(rt, actor=OPERATOR, assignment_id=held, duration=90 * DAY)

    done = approvals.approve(rt, actor=bob, request_id=asked.request.id, justification="ok").value

    assert done.request.status is RequestStatus.FAILED
    with rt.reading() as s:
        row = s.get(AssignmentRow, held)
        assert row is not None
        assert row.end_at == clock.now() + 90 * DAY


def test_a_dry_run_with_a_used_key_answers_the_first_request_and_a_key_names_one_action(
    rt: Pimlico,
) -> None:
    alex = person(rt, "alex")
    ask = {
        "kind": ELIGIBLE,
        "principal": _u(alex),
        "target": READER,
        "schedule": Schedule(duration=30 * DAY),
    }
    first = admin(rt, RequestAction.ADMIN_ASSIGN, idempotency_key="k", **ask)

    dry = admin(rt, RequestAction.ADMIN_ASSIGN, idempotency_key="k", dry_run=True, **ask)

    assert dry.request.id == first.request.id
    with pytest.raises(InvalidInput) as caught:
        admin(
            rt,
            RequestAction.ADMIN_REMOVE,
            kind=ELIGIBLE,
            assignment_id=first.assignment_id,
            idempotency_key="k",
        )
    assert caught.value.errors[0].rule == "IdempotencyKeyReused"
