"""The typed client (``pimlico.client``) against a real server (uvicorn on a loopback port, in
a thread of the test), on SQLite and on PostgreSQL: every method the API's operations need,
with values that round-trip, filters that narrow, lists that walk every page once, stale
ETags and missing permissions refused as ``ApiError`` — and a table that holds the client to
the OpenAPI document, operation by operation.

Worlds are built through the client itself where it can (that is what is under test), and
through the services for what has no operation (a user's first password).
"""

from __future__ import annotations

import ast
import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Protocol

import pyotp
import pytest

from pimlico.api import create_app
from pimlico.client import ApiError, Client, Principal, Question, Target
from pimlico.clock import FixedClock
from pimlico.jobs.handlers import WORKER_HANDLERS
from pimlico.jobs.worker import Worker
from pimlico.services.runtime import Pimlico
from pimlico.settings import Settings
from tests.api.conftest import ADMIN, PASSWORD
from tests.api.test_auth import with_password
from tests.api.test_requests_api import STEP, mfa_settings
from tests.factories import T0

DAY = timedelta(days=1)


@pytest.fixture
def settings(migrated_url: str) -> Settings:
    """With a secret key: MFA factors and connectors' secrets are sealed with it."""
    return mfa_settings(migrated_url)


class Connect(Protocol):
    """``connect(user_name=None, password=PASSWORD, page_size=None)``: a client of the test's
    server, signed in as ``user_name`` (anonymous without one)."""

    def __call__(
        self, user_name: str | None = ..., password: str = ..., *, page_size: int | None = ...
    ) -> Client: ...


@pytest.fixture
def connect(pimlico_url: str) -> Iterator[Connect]:
    made: list[Client] = []

    def connected(
        user_name: str | None = None, password: str = PASSWORD, *, page_size: int | None = None
    ) -> Client:
        client = Client(pimlico_url, page_size=page_size)
        made.append(client)
        if user_name is not None:
            client.sign_in(user_name, password)
        return client

    yield connected
    for client in made:
        client.close()


@pytest.fixture
def root(admin_id: str, connect: Connect) -> Client:
    """The break-glass administrator, signed in."""
    return connect(ADMIN)


def refused(call: Callable[[], object], status: int = 403, code: str = "PermissionDenied") -> None:
    """``call`` raises the problem ``code`` with ``status`` (lists are walked: they are lazy)."""
    with pytest.raises(ApiError) as caught:
        walked(call)
    assert (caught.value.status, caught.value.code) == (status, code), caught.value


def walked(call: Callable[[], object]) -> object:
    answer = call()
    return list(answer) if isinstance(answer, Iterator) else answer


class HasId(Protocol):
    @property
    def id(self) -> str: ...


def ids(items: Iterable[HasId]) -> list[str]:
    return [item.id for item in items]


def user_of(user_id: str) -> Principal:
    return Principal(type="user", id=user_id)


def open_role(root: Client, name: str, *permissions: str, approver: str | None = None) -> str:
    """A custom role that activates without MFA or justification (with ``approver``'s
    approval when given), and may be held eligible for good."""
    made = root.create_role(name, list(permissions))
    changes: dict[str, object] = {
        "activation": {"require_mfa": False, "require_justification": False},
        "assignment": {"allow_permanent_eligible": True},
    }
    if approver is not None:
        changes["approval"] = {
            "required": True,
            "stages": [{"approvers": [{"type": "user", "id": approver}]}],
        }
    etag = root.role_settings("role", made.id).etag
    root.update_role_settings("role", made.id, changes, etag=etag)
    return made.id


# -- the directory ---------------------------------------------------------------------------


def test_users_are_created_read_changed_found_paged_and_disabled(
    rt: Pimlico, root: Client, connect: Connect
) -> None:
    before = root.last_revision or 0
    made = root.create_user("alex", display_name="Alex Wilber", email="alex@example.com")
    assert (root.last_revision or 0) > before
    assert root.get_user(made.id) == made
    changed = root.update_user(made.id, display_name="Alex W.")
    assert (changed.display_name, changed.email) == ("Alex W.", "alex@example.com")
    assert root.get_user(made.id).display_name == "Alex W."
    for name in ("alison", "bob", "alfred"):
        root.create_user(name)
    assert sorted(u.user_name for u in root.users(q="AL")) == ["alex", "alfred", "alison"]

    off = root.set_user_enabled(made.id, False, "left the company")
    assert off.enabled is False
    assert ids(root.users(enabled=False)) == [made.id]
    assert made.id not in ids(root.users(enabled=True))

    everyone = [u.user_name for u in connect(ADMIN, page_size=2).users()]
    assert len(everyone) == len(set(everyone)) == 5
    assert set(everyone) == {ADMIN, "alex", "alison", "bob", "alfred"}

    with_password(rt, "eve")
    eve = connect("eve")
    refused(lambda: eve.users())
    refused(lambda: eve.create_user("mallory"))
    refused(lambda: root.get_user("no-such-user"), 404, "NotFound")


def test_service_accounts_get_tokens_that_stop_working_once_disabled(
    root: Client, pimlico_url: str
) -> None:
    made = root.create_service_account("nightly", description="mails the SOC report")
    root.create_service_account("deployer")
    assert root.get_service_account(made.id) == made
    assert made.description == "mails the SOC report"
    assert ids(root.service_accounts(q="night")) == [made.id]

    issued = root.issue_token("report", scopes=["pim.decisions.read"], service_account_id=made.id)
    assert (issued.details.kind, issued.details.principal_id) == ("service", made.id)
    assert ids(root.tokens(principal_id=made.id, kind="service")) == [issued.details.id]
    with Client(pimlico_url, issued.token) as script:
        assert script.me().principal_id == made.id
        off = root.set_service_account_enabled(made.id, False, "retired")
        assert off.enabled is False
        assert ids(root.service_accounts(enabled=False)) == [made.id]
        refused(script.me, 401, "NotAuthenticated")  # its tokens stop working too
    assert root.set_service_account_enabled(made.id, True).enabled is True


def test_groups_are_made_changed_found_and_their_members_and_owners_come_and_go(
    rt: Pimlico, clock: FixedClock, root: Client, connect: Connect
) -> None:
    soc = root.create_group("SOC", description="the security team")
    purge = root.create_group("Purge PIM", role_assignable=True, pim_enabled=True)
    assert root.get_group(purge.id) == purge
    assert (purge.role_assignable, purge.pim_enabled) == (True, True)
    assert ids(root.groups(pim_enabled=True)) == [purge.id]
    assert ids(root.groups(role_assignable=False)) == [soc.id]
    changed = root.update_group(soc.id, display_name="Security Operations", pim_enabled=True)
    assert (changed.display_name, changed.pim_enabled, changed.description) == (
        "Security Operations",
        True,
        "the security team",
    )
    assert ids(root.groups(q="security")) == [soc.id]

    alex, bob = with_password(rt, "alex"), with_password(rt, "bob")
    script = root.create_service_account("script")
    account = Principal(type="service_account", id=script.id)
    joined = root.add_member(soc.id, user_of(alex), "joins the SOC")
    clock.advance(STEP)
    scripted = root.add_member(soc.id, account)
    assert (joined.member, joined.relation, joined.ended_at) == (user_of(alex), "member", None)
    assert [m.member for m in root.members(soc.id)] == [user_of(alex), account]
    ended = root.remove_member(soc.id, user_of(alex), "moved on")
    assert (ended.id, ended.end_reason) == (joined.id, "moved on")
    assert ended.ended_at is not None
    assert [m.member for m in root.members(soc.id)] == [account]
    assert ids(root.members(soc.id, include_ended=True)) == [joined.id, scripted.id]

    owner = root.add_owner(soc.id, user_of(bob))
    assert (owner.relation, ids(root.owners(soc.id))) == ("owner", [owner.id])
    assert owner.id not in ids(root.members(soc.id))  # owners are listed apart
    assert root.remove_owner(soc.id, user_of(bob)).ended_at is not None
    assert list(root.owners(soc.id)) == []
    assert ids(root.owners(soc.id, include_ended=True)) == [owner.id]

    with_password(rt, "eve")
    eve = connect("eve")
    refused(lambda: eve.add_member(soc.id, user_of(alex)))
    as_group = Principal(type="group", id=purge.id)
    refused(lambda: root.add_owner(soc.id, as_group), 400, "InvalidInput")


# -- tokens, passwords, MFA ------------------------------------------------------------------


def test_tokens_are_listed_newest_first_filtered_paged_and_revoked(
    rt: Pimlico, clock: FixedClock, connect: Connect, root: Client, pimlico_url: str
) -> None:
    alex_id = with_password(rt, "alex")
    alex = connect("alex")
    made = []
    for name in ("t0", "t1", "t2"):
        clock.advance(STEP)
        made.append(alex.issue_token(name, scopes=["pim.self"], lifetime=timedelta(days=7)))
    assert made[0].details.scopes == ["pim.self"]
    assert made[0].details.expires_at - made[0].details.created_at == timedelta(days=7)
    assert [t.name for t in alex.tokens(kind="personal")] == ["t2", "t1", "t0"]
    [session] = alex.tokens(kind="session")
    assert session.principal_id == alex_id
    paged = [t.id for t in connect("alex", page_size=1).tokens()]
    assert len(paged) == len(set(paged)) == 5  # three personal, two sign-ins

    revoked = alex.revoke_token(made[1].details.id)
    assert revoked.revoked_at is not None
    assert [t.name for t in alex.tokens(kind="personal", usable=True)] == ["t2", "t0"]
    assert len(list(root.tokens(principal_id=alex_id))) == 5
    with Client(pimlico_url, made[1].token) as gone:
        refused(gone.me, 401, "NotAuthenticated")

    with_password(rt, "eve")
    refused(lambda: connect("eve").tokens(principal_id=alex_id))


def test_a_user_changes_their_password_and_signs_out(
    rt: Pimlico, connect: Connect, pimlico_url: str
) -> None:
    alex_id = with_password(rt, "alex")
    alex = connect("alex")
    alex.change_password("a much better passphrase", PASSWORD)
    refused(alex.me, 401, "NotAuthenticated")  # every session ended
    refused(lambda: connect("alex"), 401, "NotAuthenticated")
    again = connect()
    issued = again.sign_in("alex", "a much better passphrase")
    assert again.me().principal_id == alex_id
    again.sign_out()
    refused(again.me, 401, "NotAuthenticated")
    with Client(pimlico_url, issued.token) as old:
        refused(old.me, 401, "NotAuthenticated")


def test_mfa_is_enrolled_verified_and_removed_by_oneself_or_by_an_administrator(
    rt: Pimlico, clock: FixedClock, connect: Connect, root: Client
) -> None:
    alex_id, bob_id = with_password(rt, "alex"), with_password(rt, "bob")
    alex = connect("alex")
    totp = pyotp.TOTP(alex.mfa_enroll().secret)
    assert len(alex.mfa_confirm(totp.at(clock.now()))) > 0
    refused(lambda: alex.mfa_remove("new phone"), 403, "MfaStepUpRequired")
    clock.advance(STEP)
    verified = alex.mfa_verify(totp.at(clock.now()))
    assert (verified.method, verified.fresh_until - verified.verified_at) == (
        "totp",
        timedelta(seconds=600),
    )
    removed = alex.mfa_remove("new phone")
    assert (removed.user_id, removed.method) == (alex_id, "totp")
    assert removed.removed_at is not None

    bob = connect("bob")
    bobs = pyotp.TOTP(bob.mfa_enroll().secret)
    bob.mfa_confirm(bobs.at(clock.now()))
    refused(lambda: alex.remove_user_mfa(bob_id, "not mine to remove"))
    lost = root.remove_user_mfa(bob_id, "lost the phone")
    assert (lost.user_id, lost.removed_at is not None) == (bob_id, True)
    refused(lambda: root.remove_user_mfa(bob_id), 400, "MfaNotEnrolled")


# -- roles and role settings -----------------------------------------------------------------


def test_roles_are_made_changed_and_found_and_scopes_in_use_listed(
    rt: Pimlico, root: Client, connect: Connect
) -> None:
    made = root.create_role("Mail Purger", ["mail.purge"], description="purges mail")
    assert root.get_role(made.id) == made
    changed = root.update_role(made.id, permissions=["mail.purge", "mail.search"])
    assert (changed.permissions, changed.description) == (
        ["mail.purge", "mail.search"],
        "purges mail",
    )
    assert ids(root.roles(built_in=False)) == [made.id]
    built_in = list(root.roles(built_in=True))
    assert built_in
    assert all(r.built_in for r in built_in)
    assert ids(root.roles(q="mail p")) == [made.id]
    alex = with_password(rt, "alex")
    root.assign(
        "active",
        user_of(alex),
        Target(type="role", object_id=made.id, scope="/apps/mail"),
        duration=timedelta(hours=8),
        justification="the phishing campaign",
    )
    assert {(s.scope, s.assignments) for s in root.scopes()} >= {("/apps/mail", 1)}
    refused(lambda: connect("alex").create_role("Mine", ["*"]))


def test_role_settings_change_only_with_the_current_etag(
    rt: Pimlico, root: Client, connect: Connect
) -> None:
    role_id = root.create_role("Purger", ["mail.purge"]).id
    read = root.role_settings("role", role_id)
    assert (read.version, read.etag, read.object_id) == (0, '"0"', role_id)

    changed = root.update_role_settings(
        "role", role_id, {"activation": {"require_ticket": True}}, etag=read.etag
    )
    assert (changed.version, changed.etag) == (1, '"1"')
    assert changed.settings["activation"]["require_ticket"] is True
    assert (
        changed.settings["activation"]["require_mfa"] == read.settings["activation"]["require_mfa"]
    )
    refused(
        lambda: root.update_role_settings(
            "role", role_id, {"activation": {"require_ticket": False}}, etag=read.etag
        ),
        412,
        "PreconditionFailed",
    )
    assert root.role_settings("role", role_id) == changed

    document = json.loads(json.dumps(changed.settings))
    document["approval"]["required"] = True
    document["assignment"]["active_maximum_duration"] = "P30D"
    replaced = root.replace_role_settings("role", role_id, document, etag=changed.etag)
    assert (replaced.version, replaced.settings) == (2, document)
    refused(
        lambda: root.replace_role_settings("role", role_id, document, etag=changed.etag),
        412,
        "PreconditionFailed",
    )
    with_password(rt, "eve")
    eve = connect("eve")
    refused(lambda: eve.update_role_settings("role", role_id, {}, etag=replaced.etag))


# -- requests, approvals, assignments --------------------------------------------------------


def test_requests_are_decided_listed_with_filters_paged_and_read_one_by_one(
    rt: Pimlico, clock: FixedClock, root: Client, connect: Connect
) -> None:
    alex_id, bob_id = with_password(rt, "alex"), with_password(rt, "bob")
    with_password(rt, "eve")
    reader = open_role(root, "Reader", "app.read", approver=bob_id)
    target = Target(type="role", object_id=reader)
    bootstrap = ids(root.requests())  # the administrator's own assignment
    clock.advance(STEP)  # newest first: each request at an instant of its own
    eligible = root.assign("eligible", user_of(alex_id), target, duration=30 * DAY)
    assert (eligible.status, eligible.kind, eligible.principal) == (
        "provisioned",
        "eligible",
        user_of(alex_id),
    )
    alex, bob, eve = connect("alex"), connect("bob"), connect("eve")

    hour = timedelta(hours=1)
    dry = alex.request("self_activate", target, duration=hour, justification="x", dry_run=True)
    assert (dry.dry_run, dry.status) == (True, "pending_approval")
    assert list(alex.my_requests()) == []  # a dry run keeps nothing
    clock.advance(STEP)
    first = alex.activate(target, duration=hour, justification="triage")
    assert first.status == "pending_approval"
    assert bob.deny(first.id, "not now").status == "denied"
    clock.advance(STEP)
    second = alex.activate(target, duration=hour, justification="triage")
    assert alex.cancel(second.id, "no longer needed").status == "canceled"
    clock.advance(STEP)
    third = alex.activate(target, duration=hour, justification="INC-42")
    assert ids(bob.inbox()) == [third.id]
    approved = bob.approve(third.id, "ticket checked")
    assert approved.status == "provisioned"
    read = alex.get_request(third.id)
    assert read.approval is not None
    assert [(d.approver_id, d.approved) for d in read.approval.decisions] == [(bob_id, True)]
    assert read.window is not None
    assert read.window.end is not None
    refused(lambda: eve.get_request(third.id))

    mine = [third.id, second.id, first.id]
    assert ids(alex.my_requests()) == mine
    assert ids(alex.requests(mine=True, status="denied")) == [first.id]
    assert ids(root.requests(action="self_activate")) == mine
    assert ids(root.requests(requested_by=alex_id)) == mine
    assert ids(root.requests(principal_type="user", principal_id=alex_id)) == [*mine, eligible.id]
    assert ids(root.requests(principal_id=bob_id)) == []
    assert ids(root.requests(target_type="role", target_id=reader, status="canceled")) == [
        second.id
    ]
    assert ids(root.requests(action="self_activate", since=second.requested_at)) == [
        third.id,
        second.id,
    ]
    assert ids(root.requests(until=second.requested_at)) == [first.id, eligible.id, *bootstrap]
    paged = ids(connect(ADMIN, page_size=1).requests())
    assert paged == [*mine, eligible.id, *bootstrap]
    assert len(paged) == len(set(paged))
    refused(lambda: eve.requests())

    removed = root.remove_assignment(eligible.assignment_id or "", "left the team")
    assert (removed.action, removed.status) == ("admin_remove", "revoked")
    assert list(alex.my_assignments("eligible")) == []


def test_assignments_are_listed_by_kind_and_time_and_filtered_by_principal_and_target(
    rt: Pimlico, root: Client, connect: Connect
) -> None:
    alex_id, bob_id = with_password(rt, "alex"), with_password(rt, "bob")
    with_password(rt, "eve")
    reader = open_role(root, "Reader", "app.read")
    writer = open_role(root, "Writer", "app.write")
    now_e = root.assign(
        "eligible", user_of(alex_id), Target(type="role", object_id=reader), duration=30 * DAY
    )
    later_e = root.assign(
        "eligible",
        user_of(bob_id),
        Target(type="role", object_id=reader),
        start=T0 + DAY,
        duration=30 * DAY,
    )
    active = root.assign(
        "active",
        user_of(alex_id),
        Target(type="role", object_id=writer),
        duration=DAY,
        justification="release day",
    )
    later_a = root.assign(
        "active",
        user_of(bob_id),
        Target(type="role", object_id=writer),
        start=T0 + DAY,
        duration=DAY,
        justification="release day",
    )
    assert later_e.status == later_a.status == "granted"  # made now, in force from tomorrow
    assert ids(root.assignments("active", schedules=True, principal_id=bob_id)) == [
        later_a.assignment_id
    ]
    assert list(root.assignments("active", principal_id=bob_id)) == []

    schedules = list(root.assignments("eligible", schedules=True))
    assert {a.id for a in schedules} == {now_e.assignment_id, later_e.assignment_id}
    assert {a.id: a.in_force for a in schedules} == {
        now_e.assignment_id: True,
        later_e.assignment_id: False,
    }
    assert ids(root.assignments("eligible")) == [now_e.assignment_id]
    assert ids(root.assignments("eligible", schedules=True, principal_id=bob_id)) == [
        later_e.assignment_id
    ]
    [held] = root.assignments("active", target_type="role", target_id=writer)
    assert (held.id, held.principal, held.justification) == (
        active.assignment_id,
        user_of(alex_id),
        "release day",
    )
    alex = connect("alex")
    assert ids(alex.assignments("eligible", mine=True)) == [now_e.assignment_id]
    assert ids(alex.my_assignments("active")) == [active.assignment_id]
    refused(lambda: alex.assignments("active", mine=True, principal_id=bob_id), 400, "InvalidInput")

    for n in range(3):
        extra = root.create_user(f"extra{n}")
        root.assign(
            "eligible", user_of(extra.id), Target(type="role", object_id=writer), end=T0 + DAY
        )
    paged = ids(connect(ADMIN, page_size=2).assignments("eligible", schedules=True))
    assert paged == ids(root.assignments("eligible", schedules=True))
    assert len(paged) == len(set(paged)) == 5
    refused(lambda: connect("eve").assignments("active"))


# -- decisions ------------------------------------------------------------------------------


def test_a_batch_is_answered_in_order_and_access_shows_the_chains(
    rt: Pimlico, root: Client, connect: Connect
) -> None:
    alex_id, eve_id = with_password(rt, "alex"), with_password(rt, "eve")
    reader = open_role(root, "Reader", "app.read")
    writer = open_role(root, "Writer", "app.write")
    readers = root.create_group("Readers", role_assignable=True)
    root.assign(
        "active",
        Principal(type="group", id=readers.id),
        Target(type="role", object_id=reader, scope="/apps"),
        duration=DAY,
        justification="the app's readers",
    )
    root.add_member(readers.id, user_of(alex_id))
    eligible = root.assign(
        "eligible", user_of(alex_id), Target(type="role", object_id=writer), permanent=True
    )

    answers = root.check_batch(
        [
            Question(principal_id=alex_id, permission="app.read", scope="/apps/mail"),
            Question(principal_id=alex_id, permission="app.write", scope="/apps"),
            Question(principal_id=eve_id, permission="app.read", scope="/apps"),
            Question(principal_id=alex_id, permission="app.read", scope="/"),
        ]
    )
    assert [(a.principal_id, a.permission, a.allowed) for a in answers] == [
        (alex_id, "app.read", True),
        (alex_id, "app.write", False),
        (eve_id, "app.read", False),
        (alex_id, "app.read", False),
    ]
    explained = root.check(alex_id, "app.read", "/apps/mail", explain=True)
    assert explained.grant is not None
    assert [(s.member_id, s.group_id) for s in explained.grant.chain] == [(alex_id, readers.id)]
    assert root.check(alex_id, "app.read", "/apps/mail").grant is None

    access = root.access(alex_id)
    assert [(g.role_id, g.scope, g.holder_id) for g in access.roles] == [
        (reader, "/apps", readers.id)
    ]
    assert [g.group_id for g in access.groups] == [readers.id]
    assert [e.assignment_id for e in access.eligible] == [eligible.assignment_id]
    assert ("app.read", "/apps") in access.permissions
    assert root.access(alex_id, at=T0 - DAY).roles == []

    eve = connect("eve")
    refused(lambda: eve.access(alex_id))
    refused(lambda: eve.check_batch([Question(principal_id=alex_id, permission="app.read")]))
    assert (
        eve.check_batch([Question(principal_id=eve_id, permission="app.read")])[0].allowed is False
    )


# -- audit -----------------------------------------------------------------------------------


def test_audit_events_are_filtered_paged_exported_and_verified(
    rt: Pimlico, clock: FixedClock, root: Client, admin_id: str, connect: Connect
) -> None:
    clock.advance(timedelta(minutes=1))
    first = root.create_user("first")
    clock.advance(timedelta(minutes=1))
    second = root.create_user("second")
    everything = list(root.audit_events())
    sequences = [e.sequence for e in everything]
    assert sequences == sorted(set(sequences))

    about_first = list(root.audit_events(target_id=first.id))
    assert about_first
    assert {e.target_id for e in about_first} == {first.id}
    action = about_first[0].action
    assert {e.action for e in root.audit_events(action=action)} == {action}
    assert second.id in {e.target_id for e in root.audit_events(action=action, target_type="user")}
    since = list(root.audit_events(since=T0 + timedelta(seconds=90)))
    assert first.id not in {e.target_id for e in since}
    assert second.id in {e.target_id for e in since}
    until = {e.target_id for e in root.audit_events(until=T0 + timedelta(seconds=90))}
    assert (first.id in until, second.id in until) == (True, False)
    assert {e.actor for e in root.audit_events(actor=admin_id)} == {admin_id}
    paged = [e.sequence for e in connect(ADMIN, page_size=2).audit_events()]
    assert paged[: len(sequences)] == sequences

    lines = [json.loads(line) for line in root.audit_export().decode().splitlines()]
    streamed = [json.loads(line) for line in root.audit_export_lines()]
    assert [line["sequence"] for line in lines] == [line["sequence"] for line in streamed]
    assert [line["hash"] for line in lines][: len(everything)] == [e.hash for e in everything]
    rows = list(csv.DictReader(io.StringIO(root.audit_export("csv", actor=admin_id).decode())))
    assert rows
    assert {r["actor"] for r in rows} == {admin_id}
    limited = root.audit_export("jsonl", since=T0 + timedelta(seconds=90), until=T0 + DAY)
    assert first.id not in limited.decode()
    assert second.id in limited.decode()
    checked = root.audit_verify()
    assert (checked.intact, checked.broken) == (True, None)
    assert checked.events >= len(everything)

    with_password(rt, "eve")
    eve = connect("eve")
    refused(lambda: eve.audit_events())
    refused(lambda: eve.audit_export())
    refused(lambda: eve.audit_export_lines())
    refused(eve.audit_verify)


# -- connectors ------------------------------------------------------------------------------


def test_connectors_mappings_provisioning_and_reconcile(
    rt: Pimlico, root: Client, connect: Connect
) -> None:
    hook = {"url": "http://127.0.0.1:9/hook"}
    made = root.add_connector("hooks", "webhook", hook, secret="s3cret-signing-key")
    assert (made.has_secret, made.config, made.mode, made.enabled) == (
        True,
        hook,
        "authoritative",
        True,
    )
    assert "s3cret" not in made.model_dump_json()
    other = root.add_connector("audit-hooks", "webhook", hook, mode="report_only")
    assert other.has_secret is False
    assert [c.name for c in root.connectors(kind="webhook")] == ["audit-hooks", "hooks"]
    assert list(root.connectors(kind="ldap")) == []
    off = root.change_connector("audit-hooks", enabled=False, reason="not yet")
    assert (off.enabled, off.mode) == (False, "report_only")
    assert [c.name for c in root.connectors(enabled=False)] == ["audit-hooks"]
    assert [c.name for c in root.connectors(enabled=True)] == ["hooks"]
    refused(lambda: root.change_connector("nothing", enabled=True), 404, "NotFound")

    reader = open_role(root, "Reader", "app.read")
    mapping = root.add_mapping("hooks", Target(type="role", object_id=reader), "readers")
    assert (mapping.connector, mapping.target.scope, mapping.ended_at) == ("hooks", "/", None)
    assert ids(root.connector_mappings(connector="hooks")) == [mapping.id]
    assert list(root.connector_mappings(connector="audit-hooks")) == []

    alex_id = with_password(rt, "alex")
    held = root.assign(
        "active",
        user_of(alex_id),
        Target(type="role", object_id=reader),
        duration=timedelta(hours=2),
        justification="provisioned through the hooks",
    )
    # The worker hands the activation to provisioning (no dispatcher: it stays pending).
    Worker(rt, WORKER_HANDLERS, name="w1").run_once(rt.clock.now())
    [state] = root.assignment_provisioning(held.assignment_id or "")
    assert (state.connector, state.mapping_id, state.principal_id) == ("hooks", mapping.id, alex_id)
    assert (state.present, state.status, state.attempts) == (True, "pending", 0)
    assert list(root.provisioning(connector="hooks")) == [state]
    assert list(root.provisioning(status="failed")) == []

    dry = root.reconcile(dry_run=True)
    assert dry.dry_run is True
    assert [(c.action, c.applied) for c in dry.corrections] == [("unlisted", False)]
    done = root.reconcile(connector="hooks")
    assert (done.dry_run, [c.mapping_id for c in done.corrections]) == (False, [mapping.id])
    refused(lambda: root.reconcile(connector="nothing"), 404, "NotFound")

    ended = root.end_mapping(mapping.id, "moved to LDAP")
    assert ended.ended_at is not None
    assert list(root.connector_mappings()) == []
    assert ids(root.connector_mappings(include_ended=True)) == [mapping.id]

    with_password(rt, "eve")
    eve = connect("eve")
    refused(lambda: eve.connectors())
    refused(lambda: eve.add_connector("mine", "webhook", hook))
    refused(lambda: eve.assignment_provisioning(held.assignment_id or ""))


# -- the client covers the API ---------------------------------------------------------------

COVERED_BY = {
    ("POST", "/api/v1/decisions/check"): "check",
    ("POST", "/api/v1/decisions/check-batch"): "check_batch",
    ("POST", "/api/v1/decisions/explain"): "check",
    ("GET", "/api/v1/principals/{principal_id}/access"): "access",
    ("POST", "/api/v1/requests"): "request",
    ("GET", "/api/v1/requests"): "requests",
    ("GET", "/api/v1/requests/{request_id}"): "get_request",
    ("POST", "/api/v1/requests/{request_id}/cancel"): "cancel",
    ("GET", "/api/v1/approvals"): "inbox",
    ("POST", "/api/v1/approvals/{request_id}/approve"): "approve",
    ("POST", "/api/v1/approvals/{request_id}/deny"): "deny",
    ("GET", "/api/v1/assignments/eligible/schedules"): "assignments",
    ("GET", "/api/v1/assignments/eligible/instances"): "assignments",
    ("GET", "/api/v1/assignments/active/schedules"): "assignments",
    ("GET", "/api/v1/assignments/active/instances"): "assignments",
    ("POST", "/api/v1/auth/sign-in"): "sign_in",
    ("POST", "/api/v1/auth/sign-out"): "sign_out",
    ("GET", "/api/v1/me"): "me",
    ("PUT", "/api/v1/me/password"): "change_password",
    ("GET", "/api/v1/tokens"): "tokens",
    ("POST", "/api/v1/tokens"): "issue_token",
    ("DELETE", "/api/v1/tokens/{token_id}"): "revoke_token",
    ("GET", "/api/v1/users"): "users",
    ("POST", "/api/v1/users"): "create_user",
    ("GET", "/api/v1/users/{user_id}"): "get_user",
    ("PATCH", "/api/v1/users/{user_id}"): "update_user",
    ("PUT", "/api/v1/users/{user_id}/enabled"): "set_user_enabled",
    ("GET", "/api/v1/service-accounts"): "service_accounts",
    ("POST", "/api/v1/service-accounts"): "create_service_account",
    ("GET", "/api/v1/service-accounts/{account_id}"): "get_service_account",
    ("PUT", "/api/v1/service-accounts/{account_id}/enabled"): "set_service_account_enabled",
    ("GET", "/api/v1/groups"): "groups",
    ("POST", "/api/v1/groups"): "create_group",
    ("GET", "/api/v1/groups/{group_id}"): "get_group",
    ("PATCH", "/api/v1/groups/{group_id}"): "update_group",
    ("GET", "/api/v1/groups/{group_id}/members"): "members",
    ("POST", "/api/v1/groups/{group_id}/members"): "add_member",
    ("DELETE", "/api/v1/groups/{group_id}/members/{member_type}/{member_id}"): "remove_member",
    ("GET", "/api/v1/groups/{group_id}/owners"): "owners",
    ("POST", "/api/v1/groups/{group_id}/owners"): "add_owner",
    ("DELETE", "/api/v1/groups/{group_id}/owners/{member_type}/{member_id}"): "remove_owner",
    ("GET", "/api/v1/roles"): "roles",
    ("POST", "/api/v1/roles"): "create_role",
    ("GET", "/api/v1/roles/{role_id}"): "get_role",
    ("PATCH", "/api/v1/roles/{role_id}"): "update_role",
    ("GET", "/api/v1/scopes"): "scopes",
    ("GET", "/api/v1/role-settings/{target_type}/{object_id}"): "role_settings",
    ("PATCH", "/api/v1/role-settings/{target_type}/{object_id}"): "update_role_settings",
    ("PUT", "/api/v1/role-settings/{target_type}/{object_id}"): "replace_role_settings",
    ("POST", "/api/v1/me/mfa"): "mfa_enroll",
    ("DELETE", "/api/v1/me/mfa"): "mfa_remove",
    ("POST", "/api/v1/me/mfa/confirm"): "mfa_confirm",
    ("POST", "/api/v1/me/mfa/verify"): "mfa_verify",
    ("DELETE", "/api/v1/users/{user_id}/mfa"): "remove_user_mfa",
    ("GET", "/api/v1/audit/events"): "audit_events",
    ("GET", "/api/v1/audit/export"): "audit_export",
    ("GET", "/api/v1/audit/verify"): "audit_verify",
    ("GET", "/api/v1/connectors"): "connectors",
    ("POST", "/api/v1/connectors"): "add_connector",
    ("PATCH", "/api/v1/connectors/{name}"): "change_connector",
    ("GET", "/api/v1/connector-mappings"): "connector_mappings",
    ("POST", "/api/v1/connector-mappings"): "add_mapping",
    ("DELETE", "/api/v1/connector-mappings/{mapping_id}"): "end_mapping",
    ("GET", "/api/v1/provisioning"): "provisioning",
    ("GET", "/api/v1/assignments/{assignment_id}/provisioning"): "assignment_provisioning",
    ("POST", "/api/v1/reconcile"): "reconcile",
}
"""Each operation of the API and the ``Client`` method that calls it (``assignments`` walks
the four assignment lists, and ``check(explain=True)`` explains: both in the tests above)."""
UNCOVERED = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")}


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_every_operation_of_the_document_has_a_client_method_that_these_tests_call(
    settings: Settings,
) -> None:
    document = create_app(settings).openapi()
    operations = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    assert set(COVERED_BY) == operations - UNCOVERED
    called: set[str] = set()
    for node in ast.walk(ast.parse(Path(__file__).read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            called.add(node.func.attr)
        elif (  # a method handed to ``refused``, which calls it
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "refused"
            and isinstance(node.args[0], ast.Attribute)
        ):
            called.add(node.args[0].attr)
    for method in set(COVERED_BY.values()):
        assert callable(getattr(Client, method, None)), method
        assert method in called, f"no test here calls Client.{method}"
