"""Self-service activation and approval on SQLite and PostgreSQL, from the DESIGN.md story:
Alex activates Security Reader, asks for the Search and Purge PIM group, Bob approves."""

from __future__ import annotations

import threading
from datetime import timedelta

import pyotp
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from pimlico.clock import FixedClock
from pimlico.db.tables import AssignmentRow, RequestRow
from pimlico.domain.approvals import AlreadyDecided
from pimlico.domain.catalogue import SECURITY_READER
from pimlico.domain.model import AssignmentKind, PrincipalRef, PrincipalType, Target, TargetType
from pimlico.domain.requests import RequestAction, RequestStatus, Schedule, Ticket
from pimlico.errors import (
    ActiveDurationTooShort,
    PermissionDenied,
    PimlicoError,
    PolicyViolation,
    RoleAssignmentExists,
)
from pimlico.services import (
    approvals,
    assignments,
    decisions,
    directory,
    mfa,
    requests,
    role_settings,
)
from pimlico.services.request_records import RequestView
from pimlico.services.runtime import Actor, Pimlico, Written
from pimlico.settings import Settings
from tests.factories import HOUR
from tests.integration.world import OPERATOR, group, role, user

KEY = "q5wqT0Vf0mB3rXy2kZ8nN4pL7sD1gH6jC9vE2aR5tYU="
READER = Target(TargetType.ROLE, SECURITY_READER.id, "/")


@pytest.fixture
def settings(migrated_url: str) -> Settings:
    return Settings(
        database_url=migrated_url, max_nesting_depth=4, secret_key=SecretStr(KEY), mfa_freshness=600
    )


def person(rt: Pimlico, name: str) -> Actor:
    return Actor.principal(user(rt, name).id)


def with_mfa(rt: Pimlico, clock: FixedClock, me: Actor) -> None:
    """Enrol and confirm a factor, then verify with the next step's code: fresh from now."""
    secret = mfa.enroll(rt, actor=me, user_id=me.name).secret
    mfa.confirm(rt, actor=me, user_id=me.name, code=pyotp.TOTP(secret).at(clock.now()))
    clock.advance(timedelta(seconds=30))
    mfa.verify(rt, actor=me, user_id=me.name, code=pyotp.TOTP(secret).at(clock.now()))


def _u(actor: Actor) -> PrincipalRef:
    return PrincipalRef(PrincipalType.USER, actor.name)


def eligible(rt: Pimlico, holder: PrincipalRef, target: Target) -> str:
    return assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ELIGIBLE,
        principal=holder,
        target=target,
        duration=timedelta(days=90),
    ).value.id


def policy(rt: Pimlico, target: Target, changes: dict[str, object]) -> None:
    role_settings.update_policy(
        rt, actor=OPERATOR, target_type=target.type, object_id=target.object_id, changes=changes
    )


def activate(rt: Pimlico, me: Actor, target: Target, **kwargs: object) -> Written[RequestView]:
    return requests.submit(
        rt,
        actor=me,
        action=RequestAction.SELF_ACTIVATE,
        kind=AssignmentKind.ACTIVE,
        target=target,
        **kwargs,  # type: ignore[arg-type]
    )


def allowed(rt: Pimlico, who: Actor, permission: str, revision: int) -> bool:
    return decisions.check(
        rt,
        actor=None,
        principal_id=who.name,
        permission=permission,
        scope="/",
        at_least_revision=revision,
    ).allowed


def count(rt: Pimlico, table: type[RequestRow] | type[AssignmentRow]) -> int:
    """Rows of ``table``; of requests, only the self-service ones (every administrator's
    assignment in the set-up is a request too)."""
    query = select(func.count()).select_from(table)
    if table is RequestRow:
        query = query.where(RequestRow.action.like("self_%"))
    with rt.reading() as s:
        return s.scalar(query) or 0


def reader_without_justification(rt: Pimlico) -> None:
    policy(rt, READER, {"activation": {"require_justification": False}})


def purge_group(rt: Pimlico, bob: Actor) -> Target:
    """Search and Purge PIM (approval by Bob, MFA, justification, ticket), nested into the
    application group Search and Purge, which holds the role that may purge."""
    pim = group(rt, "Search and Purge PIM", role_assignable=True)
    app = group(rt, "Search and Purge", role_assignable=True)
    directory.add_member(rt, actor=OPERATOR, group_id=app.id, member=pim)
    purger = role(rt, "Purger", "mail.purge")
    assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ACTIVE,
        principal=app,
        target=Target(TargetType.ROLE, purger, "/"),
        duration=timedelta(days=90),
        justification="application role group",
    )
    target = Target(TargetType.GROUP_MEMBER, pim.id)
    policy(
        rt,
        target,
        {
            "activation": {"require_ticket": True, "maximum_duration": "PT4H"},
            "approval": {
                "required": True,
                "stages": [{"approvers": [{"type": "user", "id": bob.name}]}],
            },
        },
    )
    return target


# -- the DESIGN.md story ---------------------------------------------------------------------


def test_alex_activates_security_reader_with_mfa_and_holds_it_until_the_exact_end(
    rt: Pimlico, clock: FixedClock
) -> None:
    alex = person(rt, "alex")
    eligible(rt, _u(alex), READER)
    reader_without_justification(rt)
    with_mfa(rt, clock, alex)

    written = activate(rt, alex, READER, schedule=Schedule(duration=2 * HOUR))

    view = written.value
    assert view.request.status is RequestStatus.PROVISIONED
    assert view.request.mfa_verified_at is not None
    assert view.window is not None
    assert view.window.end == clock.now() + 2 * HOUR
    assert allowed(rt, alex, "security.read", written.revision)
    clock.set(view.window.end - timedelta(microseconds=1))
    assert allowed(rt, alex, "security.read", written.revision)
    clock.set(view.window.end)
    assert not allowed(rt, alex, "security.read", written.revision)


def test_alex_asks_for_the_purge_group_and_bob_approves_until_the_end_instant(
    rt: Pimlico, clock: FixedClock
) -> None:
    alex, bob = person(rt, "alex"), person(rt, "bob")
    target = purge_group(rt, bob)
    eligible(rt, _u(alex), target)
    with_mfa(rt, clock, alex)

    asked = activate(
        rt,
        alex,
        target,
        schedule=Schedule(duration=HOUR),
        justification="phishing campaign INC-42",
        ticket=Ticket("ServiceNow", "INC-42"),
    ).value
    assert asked.request.status is RequestStatus.PENDING_APPROVAL
    assert not allowed(rt, alex, "mail.purge", count(rt, RequestRow))
    with pytest.raises(PermissionDenied, match="your own request"):
        approvals.approve(rt, actor=alex, request_id=asked.request.id, justification="me")

    clock.advance(timedelta(minutes=5))
    approved = approvals.approve(rt, actor=bob, request_id=asked.request.id, justification="ok")

    assert approved.value.request.status is RequestStatus.PROVISIONED
    assert [d.approver_id for d in approved.value.decisions] == [bob.name]
    assert allowed(rt, alex, "mail.purge", approved.revision)
    window = approved.value.window  # the asked hour, counted from Bob's approval
    assert window is not None
    assert window.end is not None
    assert window.end - window.start == HOUR
    clock.set(window.end - timedelta(microseconds=1))
    assert allowed(rt, alex, "mail.purge", approved.revision)
    clock.set(window.end)
    assert not allowed(rt, alex, "mail.purge", approved.revision)


def test_a_request_without_mfa_names_the_mfa_rule(rt: Pimlico) -> None:
    alex = person(rt, "alex")
    eligible(rt, _u(alex), READER)
    reader_without_justification(rt)

    with pytest.raises(PolicyViolation) as refused:
        activate(rt, alex, READER)

    assert [e.rule for e in refused.value.errors] == ["MfaRule"]
    assert count(rt, RequestRow) == 0


def test_every_broken_rule_is_named_at_once(rt: Pimlico) -> None:
    alex = person(rt, "alex")
    policy(rt, READER, {"activation": {"require_ticket": True}})

    with pytest.raises(PolicyViolation) as refused:
        activate(rt, alex, READER, schedule=Schedule(duration=24 * HOUR))

    rules = {e.rule for e in refused.value.errors}
    assert rules >= {"EligibilityRule", "JustificationRule", "TicketingRule", "MfaRule"}
    assert "ExpirationRule" in rules


def test_a_dry_run_answers_without_writing(rt: Pimlico, clock: FixedClock) -> None:
    alex = person(rt, "alex")
    eligible(rt, _u(alex), READER)
    reader_without_justification(rt)
    with_mfa(rt, clock, alex)
    before = (count(rt, RequestRow), count(rt, AssignmentRow))

    dry = activate(rt, alex, READER, dry_run=True).value

    assert dry.dry_run
    assert dry.request.status is RequestStatus.PROVISIONED
    assert dry.window is not None
    assert dry.window.end == clock.now() + 8 * HOUR
    assert (count(rt, RequestRow), count(rt, AssignmentRow)) == before


def test_the_same_idempotency_key_returns_the_original_request(
    rt: Pimlico, clock: FixedClock
) -> None:
    alex = person(rt, "alex")
    eligible(rt, _u(alex), READER)
    reader_without_justification(rt)
    with_mfa(rt, clock, alex)

    first = activate(rt, alex, READER, idempotency_key="k-1").value
    again = activate(rt, alex, READER, idempotency_key="k-1").value

    assert again.request.id == first.request.id
    assert again.assignment_id == first.assignment_id
    assert count(rt, RequestRow) == 1


def test_activating_what_is_already_active_is_role_assignment_exists(
    rt: Pimlico, clock: FixedClock
) -> None:
    alex = person(rt, "alex")
    eligible(rt, _u(alex), READER)
    reader_without_justification(rt)
    with_mfa(rt, clock, alex)
    activate(rt, alex, READER)
    active_before = count(rt, AssignmentRow)

    with pytest.raises(RoleAssignmentExists):
        activate(rt, alex, READER)

    assert count(rt, AssignmentRow) == active_before


def test_the_requester_cancels_a_pending_request(rt: Pimlico, clock: FixedClock) -> None:
    alex, bob = person(rt, "alex"), person(rt, "bob")
    target = purge_group(rt, bob)
    eligible(rt, _u(alex), target)
    with_mfa(rt, clock, alex)
    asked = activate(rt, alex, target, justification="why", ticket=Ticket("SN", "1")).value.request

    canceled = requests.cancel(rt, actor=alex, request_id=asked.id, reason="not needed").value

    assert canceled.request.status is RequestStatus.CANCELED
    with pytest.raises(AlreadyDecided):
        approvals.approve(rt, actor=bob, request_id=asked.id, justification="late")


def test_a_denial_denies_and_grants_nothing(rt: Pimlico, clock: FixedClock) -> None:
    alex, bob = person(rt, "alex"), person(rt, "bob")
    target = purge_group(rt, bob)
    eligible(rt, _u(alex), target)
    with_mfa(rt, clock, alex)
    asked = activate(rt, alex, target, justification="why", ticket=Ticket("SN", "1")).value.request

    denied = approvals.deny(rt, actor=bob, request_id=asked.id, justification="no ticket match")

    assert denied.value.request.status is RequestStatus.DENIED
    assert denied.value.assignment_id is None
    assert not allowed(rt, alex, "mail.purge", denied.revision)
    assert requests.list_requests(rt, actor=bob, to_approve=True) == []
    mine = requests.list_requests(rt, actor=alex, mine=True)
    assert [v.request.id for v in mine] == [asked.id]


def test_someone_who_is_not_an_approver_may_not_decide(rt: Pimlico, clock: FixedClock) -> None:
    alex, bob, eve = person(rt, "alex"), person(rt, "bob"), person(rt, "eve")
    target = purge_group(rt, bob)
    eligible(rt, _u(alex), target)
    with_mfa(rt, clock, alex)
    asked = activate(rt, alex, target, justification="w", ticket=Ticket("SN", "1")).value

    with pytest.raises(PermissionDenied):
        approvals.approve(rt, actor=eve, request_id=asked.request.id, justification="x")
    assert [v.request.id for v in requests.list_requests(rt, actor=bob, to_approve=True)] == [
        asked.request.id
    ]


def test_eligibility_held_through_a_nested_group_activates(rt: Pimlico, clock: FixedClock) -> None:
    alex = person(rt, "alex")
    outer, inner = (
        group(rt, "analysts", role_assignable=True),
        group(rt, "tier1", role_assignable=True),
    )
    directory.add_member(rt, actor=OPERATOR, group_id=outer.id, member=inner)
    directory.add_member(rt, actor=OPERATOR, group_id=inner.id, member=_u(alex))
    held = eligible(rt, outer, READER)
    reader_without_justification(rt)
    with_mfa(rt, clock, alex)

    written = activate(rt, alex, READER)

    assert written.value.request.status is RequestStatus.PROVISIONED
    with rt.reading() as s:
        row = s.get(AssignmentRow, written.value.assignment_id)
        assert row is not None
        assert (row.activated_from, row.principal_id) == (held, alex.name)
    assert allowed(rt, alex, "security.read", written.revision)


def test_deactivating_within_five_minutes_is_too_short_and_later_ends_at_once(
    rt: Pimlico, clock: FixedClock
) -> None:
    alex = person(rt, "alex")
    eligible(rt, _u(alex), READER)
    reader_without_justification(rt)
    with_mfa(rt, clock, alex)
    activated = activate(rt, alex, READER).value

    def deactivate() -> Written[RequestView]:
        return requests.submit(
            rt,
            actor=alex,
            action=RequestAction.SELF_DEACTIVATE,
            kind=AssignmentKind.ACTIVE,
            target=READER,
        )

    clock.advance(timedelta(minutes=4))
    with pytest.raises(ActiveDurationTooShort):
        deactivate()
    clock.advance(timedelta(minutes=2))
    ended = deactivate()

    assert ended.value.request.status is RequestStatus.REVOKED
    assert ended.value.assignment_id == activated.assignment_id
    assert not allowed(rt, alex, "security.read", ended.revision)


def test_ten_simultaneous_decisions_have_exactly_one_outcome(
    rt: Pimlico, clock: FixedClock
) -> None:
    alex = person(rt, "alex")
    approvers = [person(rt, f"approver{i}") for i in range(10)]
    target = purge_group(rt, approvers[0])
    policy(
        rt,
        target,
        {
            "approval": {
                "stages": [{"approvers": [{"type": "user", "id": a.name} for a in approvers]}]
            }
        },
    )
    eligible(rt, _u(alex), target)
    with_mfa(rt, clock, alex)
    asked = activate(rt, alex, target, justification="w", ticket=Ticket("SN", "1")).value
    outcomes: list[str] = []
    barrier = threading.Barrier(len(approvers))

    def decide(i: int) -> None:
        barrier.wait()
        verb = approvals.approve if i % 2 == 0 else approvals.deny
        try:
            verb(rt, actor=approvers[i], request_id=asked.request.id, justification="race")
            outcomes.append("decided")
        except PimlicoError as error:
            outcomes.append(error.code)

    threads = [threading.Thread(target=decide, args=(i,)) for i in range(len(approvers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert outcomes.count("decided") == 1
    assert outcomes.count("AlreadyDecided") == len(approvers) - 1
    final = requests.get_request(rt, actor=alex, request_id=asked.request.id)
    assert final.request.status in (RequestStatus.PROVISIONED, RequestStatus.DENIED)
    assert len(final.decisions) == 1
