"""The authorization matrix: for every guarded operation, which of Pimlico's built-in roles
may call it, and that everyone else — a signed-in user holding no role, and anonymous
callers — is refused.

Each operation names the ``pim.*`` permission it needs (the specification, written here,
independently of the routes); who holds it is the catalogue's (``BUILT_IN_ROLES``). Every
caller holds its role actively at ``/`` for a day, as after an activation. An allowed caller
must not be refused (and the Global Administrator must get a 2xx: the requests are valid); a
caller without the permission must get 403 problem+json, an anonymous one 401. Operations
anyone signed in may use (their own data) are checked at the end.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pimlico.domain.catalogue import (
    BUILT_IN_ROLES,
    GLOBAL_ADMINISTRATOR,
    BuiltInRole,
    Perm,
)
from pimlico.domain.model import AssignmentKind, PrincipalRef, PrincipalType, Target, TargetType
from pimlico.domain.permissions import matches
from pimlico.domain.requests import RequestAction, RequestStatus
from pimlico.services import (
    accounts,
    assignments,
    connector_mappings,
    connectors,
    directory,
    requests,
    role_settings,
    roles,
)
from pimlico.services.runtime import Actor, Pimlico
from tests.api.conftest import PASSWORD, SignIn
from tests.integration.world import OPERATOR, group, user

PLAIN = "plain"
"""A signed-in user who holds no role."""


@dataclass
class World:
    rt: Pimlico
    target_user: str
    service_account: str
    plain_group: str
    role: str
    pim_group: str
    gated_role: str
    admin: TestClient
    counter: itertools.count[int]

    def fresh_user(self) -> str:
        return user(self.rt, f"fresh-{next(self.counter)}").id

    def name(self, prefix: str) -> str:
        return f"{prefix}-{next(self.counter)}"

    def pending_request(self) -> str:
        """A new user's activation of a role whose one approval stage names nobody: the
        holders of pim.requests.approve decide it."""
        requester = self.fresh_user()
        principal = PrincipalRef(PrincipalType.USER, requester)
        target = Target.role(self.gated_role)
        assignments.assign(
            self.rt,
            actor=OPERATOR,
            kind=AssignmentKind.ELIGIBLE,
            principal=principal,
            target=target,
            duration=timedelta(days=30),
        )
        view = requests.submit(
            self.rt,
            actor=Actor.principal(requester),
            action=RequestAction.SELF_ACTIVATE,
            kind=AssignmentKind.ACTIVE,
            target=target,
            justification="needs approval",
        ).value
        assert view.request.status is RequestStatus.PENDING_APPROVAL
        return view.request.id

    def connector(self) -> str:
        """A new webhook connector (reconciling one calls nothing: it cannot list members)."""
        name = self.name("hook")
        connectors.add_connector(
            self.rt,
            actor=OPERATOR,
            name=name,
            kind="webhook",
            config={"url": "http://127.0.0.1:9/hook"},
        )
        return name

    def mapping(self) -> str:
        """A new mapping of the role to a downstream object of a new connector."""
        return connector_mappings.add_mapping(
            self.rt,
            actor=OPERATOR,
            connector=self.connector(),
            target=Target.role(self.role),
            downstream_object="app-readers",
        ).value.id

    def assignment(self) -> str:
        """A new user's active assignment of the role."""
        return assignments.assign(
            self.rt,
            actor=OPERATOR,
            kind=AssignmentKind.ACTIVE,
            principal=PrincipalRef(PrincipalType.USER, self.fresh_user()),
            target=Target.role(self.role),
            duration=timedelta(days=1),
            justification="to read its provisioning",
        ).value.id

    def etag(self, object_id: str) -> str:
        answer = self.admin.get(f"/api/v1/role-settings/role/{object_id}")
        assert answer.status_code == 200, answer.text
        etag: str = answer.headers["ETag"]
        return etag


Call = Callable[[TestClient, World], Any]


@dataclass(frozen=True)
class Operation:
    name: str
    permission: str
    call: Call


OPERATIONS = [
    Operation("list users", Perm.USERS_READ, lambda c, w: c.get("/api/v1/users")),
    Operation("get a user", Perm.USERS_READ, lambda c, w: c.get(f"/api/v1/users/{w.target_user}")),
    Operation(
        "add a user",
        Perm.USERS_WRITE,
        lambda c, w: c.post("/api/v1/users", json={"user_name": w.name("user")}),
    ),
    Operation(
        "change a user",
        Perm.USERS_WRITE,
        lambda c, w: c.patch(f"/api/v1/users/{w.target_user}", json={"display_name": "Changed"}),
    ),
    Operation(
        "enable a user",
        Perm.USERS_WRITE,
        lambda c, w: c.put(f"/api/v1/users/{w.target_user}/enabled", json={"enabled": True}),
    ),
    Operation(
        "list service accounts", Perm.USERS_READ, lambda c, w: c.get("/api/v1/service-accounts")
    ),
    Operation(
        "add a service account",
        Perm.USERS_WRITE,
        lambda c, w: c.post("/api/v1/service-accounts", json={"name": w.name("sa")}),
    ),
    Operation(
        "make a service account's token",
        Perm.USERS_WRITE,
        lambda c, w: c.post(
            "/api/v1/tokens", json={"name": "app", "service_account_id": w.service_account}
        ),
    ),
    Operation(
        "list another's tokens",
        Perm.USERS_READ,
        lambda c, w: c.get("/api/v1/tokens", params={"principal_id": w.target_user}),
    ),
    Operation("list groups", Perm.GROUPS_READ, lambda c, w: c.get("/api/v1/groups")),
    Operation(
        "add a group",
        Perm.GROUPS_WRITE,
        lambda c, w: c.post("/api/v1/groups", json={"name": w.name("group")}),
    ),
    Operation(
        "add a role-assignable group",
        Perm.ROLE_ASSIGNABLE_GROUPS_WRITE,
        lambda c, w: c.post(
            "/api/v1/groups", json={"name": w.name("ra-group"), "role_assignable": True}
        ),
    ),
    Operation(
        "change a group",
        Perm.GROUPS_WRITE,
        lambda c, w: c.patch(f"/api/v1/groups/{w.plain_group}", json={"description": "x"}),
    ),
    Operation(
        "add a member",
        Perm.GROUPS_WRITE,
        lambda c, w: c.post(
            f"/api/v1/groups/{w.plain_group}/members",
            json={"member_type": "user", "member_id": w.fresh_user()},
        ),
    ),
    Operation(
        "list members",
        Perm.GROUPS_READ,
        lambda c, w: c.get(f"/api/v1/groups/{w.plain_group}/members"),
    ),
    Operation("list roles", Perm.ROLES_READ, lambda c, w: c.get("/api/v1/roles")),
    Operation(
        "add a role",
        Perm.ROLES_WRITE,
        lambda c, w: c.post(
            "/api/v1/roles", json={"name": w.name("role"), "permissions": ["app.read"]}
        ),
    ),
    Operation(
        "change a role",
        Perm.ROLES_WRITE,
        lambda c, w: c.patch(f"/api/v1/roles/{w.role}", json={"description": "changed"}),
    ),
    Operation(
        "read role settings",
        Perm.POLICIES_READ,
        lambda c, w: c.get(f"/api/v1/role-settings/role/{w.role}"),
    ),
    Operation(
        "change role settings",
        Perm.POLICIES_WRITE,
        lambda c, w: c.patch(
            f"/api/v1/role-settings/role/{w.role}",
            json={"activation": {"require_ticket": False}},
            headers={"If-Match": w.etag(w.role)},
        ),
    ),
    Operation(
        "list everyone's eligible assignments",
        Perm.ASSIGNMENTS_READ,
        lambda c, w: c.get("/api/v1/assignments/eligible/schedules"),
    ),
    Operation(
        "list everyone's active assignments",
        Perm.ASSIGNMENTS_READ,
        lambda c, w: c.get("/api/v1/assignments/active/instances"),
    ),
    Operation(
        "assign a role",
        Perm.ROLE_ASSIGNMENTS_WRITE,
        lambda c, w: c.post(
            "/api/v1/requests",
            json={
                "action": "admin_assign",
                "kind": "eligible",
                "principal": {"type": "user", "id": w.fresh_user()},
                "target": {"type": "role", "object_id": w.role, "scope": "/"},
                "schedule": {"expiration": {"type": "after_duration", "duration": "P30D"}},
                "justification": "matrix",
            },
        ),
    ),
    Operation(
        "assign a group membership",
        Perm.GROUP_ASSIGNMENTS_WRITE,
        lambda c, w: c.post(
            "/api/v1/requests",
            json={
                "action": "admin_assign",
                "kind": "eligible",
                "principal": {"type": "user", "id": w.fresh_user()},
                "target": {"type": "group_member", "object_id": w.pim_group},
                "schedule": {"expiration": {"type": "after_duration", "duration": "P30D"}},
                "justification": "matrix",
            },
        ),
    ),
    Operation(
        "approve a request whose stage names no approver",
        Perm.REQUESTS_APPROVE,
        lambda c, w: c.post(
            f"/api/v1/approvals/{w.pending_request()}/approve", json={"justification": "ok"}
        ),
    ),
    Operation(
        "cancel another's pending request",
        Perm.REQUESTS_APPROVE,
        lambda c, w: c.post(f"/api/v1/requests/{w.pending_request()}/cancel", json={}),
    ),
    Operation(
        "list everyone's requests",
        Perm.REQUESTS_READ,
        lambda c, w: c.get("/api/v1/requests", params={"mine": "false"}),
    ),
    Operation(
        "check another's access",
        Perm.DECISIONS_READ,
        lambda c, w: c.post(
            "/api/v1/decisions/check",
            json={"principal_id": w.target_user, "permission": "app.read"},
        ),
    ),
    Operation(
        "another's effective access",
        Perm.DECISIONS_READ,
        lambda c, w: c.get(f"/api/v1/principals/{w.target_user}/access"),
    ),
    Operation("query the audit log", Perm.AUDIT_READ, lambda c, w: c.get("/api/v1/audit/events")),
    Operation(
        "export the audit log",
        Perm.AUDIT_READ,
        lambda c, w: c.get("/api/v1/audit/export", params={"format": "jsonl"}),
    ),
    Operation("verify the audit log", Perm.AUDIT_READ, lambda c, w: c.get("/api/v1/audit/verify")),
    Operation("list connectors", Perm.CONNECTORS_READ, lambda c, w: c.get("/api/v1/connectors")),
    Operation(
        "add a connector",
        Perm.CONNECTORS_WRITE,
        lambda c, w: c.post(
            "/api/v1/connectors",
            json={"name": w.name("hook"), "kind": "webhook", "config": {"url": "http://x/"}},
        ),
    ),
    Operation(
        "change a connector",
        Perm.CONNECTORS_WRITE,
        lambda c, w: c.patch(f"/api/v1/connectors/{w.connector()}", json={"enabled": False}),
    ),
    Operation(
        "list connector mappings",
        Perm.CONNECTORS_READ,
        lambda c, w: c.get("/api/v1/connector-mappings"),
    ),
    Operation(
        "map a target to a downstream object",
        Perm.CONNECTORS_WRITE,
        lambda c, w: c.post(
            "/api/v1/connector-mappings",
            json={
                "connector": w.connector(),
                "target": {"type": "role", "object_id": w.role},
                "downstream_object": "app-readers",
            },
        ),
    ),
    Operation(
        "end a mapping",
        Perm.CONNECTORS_WRITE,
        lambda c, w: c.delete(f"/api/v1/connector-mappings/{w.mapping()}"),
    ),
    Operation(
        "list provisioning states",
        Perm.CONNECTORS_READ,
        lambda c, w: c.get("/api/v1/provisioning"),
    ),
    Operation(
        "an assignment's provisioning",
        Perm.ASSIGNMENTS_READ,
        lambda c, w: c.get(f"/api/v1/assignments/{w.assignment()}/provisioning"),
    ),
    Operation(
        "reconcile, dry run",
        Perm.CONNECTORS_READ,
        lambda c, w: c.post("/api/v1/reconcile", params={"dry_run": "true"}),
    ),
    Operation("reconcile", Perm.CONNECTORS_WRITE, lambda c, w: c.post("/api/v1/reconcile")),
]

SELF_SERVICE: list[tuple[str, Call]] = [
    ("who am I", lambda c, w: c.get("/api/v1/me")),
    ("my tokens", lambda c, w: c.get("/api/v1/tokens")),
    ("my approvals inbox", lambda c, w: c.get("/api/v1/approvals")),
    ("my requests", lambda c, w: c.get("/api/v1/requests", params={"mine": "true"})),
    (
        "my active assignments",
        lambda c, w: c.get("/api/v1/assignments/active/instances", params={"mine": "true"}),
    ),
]


def holds(role: BuiltInRole, permission: str) -> bool:
    return any(matches(pattern, permission) for pattern in role.permissions)


@pytest.fixture
def world(rt: Pimlico, admin: TestClient) -> World:
    target_user = user(rt, "target").id
    account = directory.create_service_account(rt, actor=OPERATOR, name="app").value.id
    plain_group = group(rt, "plain group").id
    pim_group = directory.create_group(
        rt, actor=OPERATOR, name="pim group", pim_enabled=True
    ).value.id
    role = roles.create_role(rt, actor=OPERATOR, name="App reader", permissions=["app.read"])
    gated = roles.create_role(rt, actor=OPERATOR, name="Gated", permissions=["gated.use"])
    role_settings.update_policy(
        rt,
        actor=OPERATOR,
        target_type=TargetType.ROLE,
        object_id=gated.value.id,
        changes={
            "activation": {"require_mfa": False},
            "approval": {"required": True, "stages": [{"approvers": []}]},
        },
    )
    return World(
        rt,
        target_user,
        account,
        plain_group,
        role.value.id,
        pim_group,
        gated.value.id,
        admin,
        itertools.count(),
    )


@pytest.fixture
def callers(rt: Pimlico, world: World, sign_in: SignIn) -> dict[str, TestClient]:
    """A signed-in client per built-in role (the break-glass admin for Global
    Administrator), and one for a user who holds nothing."""
    found = {GLOBAL_ADMINISTRATOR.name: world.admin}
    for role in BUILT_IN_ROLES:
        if role is GLOBAL_ADMINISTRATOR:
            continue
        name = role.name.lower().replace(" ", "-")
        holder = user(rt, name).id
        accounts.set_password(rt, actor=OPERATOR, user_id=holder, password=PASSWORD)
        assignments.assign(
            rt,
            actor=OPERATOR,
            kind=AssignmentKind.ACTIVE,
            principal=PrincipalRef(PrincipalType.USER, holder),
            target=Target.role(role.id),
            duration=timedelta(days=1),
            justification="authorization matrix",
        )
        found[role.name] = sign_in(name, PASSWORD)
    plain = user(rt, PLAIN).id
    accounts.set_password(rt, actor=OPERATOR, user_id=plain, password=PASSWORD)
    found[PLAIN] = sign_in(PLAIN, PASSWORD)
    return found


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_every_guarded_operation_admits_exactly_the_roles_that_hold_its_permission(
    world: World, callers: dict[str, TestClient], anonymous: TestClient
) -> None:
    by_name = {role.name: role for role in BUILT_IN_ROLES}
    order = [GLOBAL_ADMINISTRATOR.name, *(n for n in callers if n != GLOBAL_ADMINISTRATOR.name)]
    wrong: list[str] = []
    for operation in OPERATIONS:
        for name in order:
            role = by_name.get(name)
            allowed = role is not None and holds(role, operation.permission)
            answer = operation.call(callers[name], world)
            if name == GLOBAL_ADMINISTRATOR.name and not 200 <= answer.status_code < 300:
                wrong.append(f"{operation.name}: the Global Administrator got {answer.text}")
            elif allowed and answer.status_code in (401, 403):
                wrong.append(f"{operation.name}: {name} refused ({answer.status_code})")
            elif not allowed and answer.status_code != 403:
                wrong.append(f"{operation.name}: {name} not refused ({answer.status_code})")
            if answer.status_code >= 500:
                wrong.append(f"{operation.name}: {name} got {answer.status_code}")
        refused = operation.call(anonymous, world)
        if refused.status_code != 401:
            wrong.append(f"{operation.name}: anonymous not refused ({refused.status_code})")
    assert wrong == []


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_what_concerns_oneself_is_open_to_anyone_signed_in_and_no_one_else(
    world: World, callers: dict[str, TestClient], anonymous: TestClient
) -> None:
    for label, call in SELF_SERVICE:
        for name, client in callers.items():
            answer = call(client, world)
            assert 200 <= answer.status_code < 300, (label, name, answer.text)
        assert call(anonymous, world).status_code == 401, label


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_matrix_covers_every_permission_of_the_catalogue(world: World) -> None:
    del world
    named = {value for key, value in vars(Perm).items() if key.isupper()}
    assert named <= {op.permission for op in OPERATIONS}
