"""Connectors, mappings, provisioning states and reconciliation through the API: the routes
translate; the behaviour of provisioning itself is tested in tests/connectors."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from pimlico.db.tables import AuditEventRow, ConnectorRow
from pimlico.domain.model import AssignmentKind, PrincipalRef, PrincipalType, Target
from pimlico.jobs.handlers import WORKER_HANDLERS
from pimlico.jobs.worker import Worker
from pimlico.services import assignments
from pimlico.services.runtime import Pimlico
from pimlico.settings import Settings
from tests.api.conftest import PASSWORD, SignIn
from tests.api.test_auth import with_password
from tests.api.test_directory_api import API, problem, rules, walk
from tests.integration.world import OPERATOR, audit_count, role

SECRET = "s3cret-signing-key"
HOOK = {"url": "http://127.0.0.1:9/hook"}


@pytest.fixture
def settings(migrated_url: str) -> Settings:
    """With a key, so that connectors' secrets can be sealed."""
    return Settings(
        database_url=migrated_url,
        token_cache_seconds=0,
        secret_key=SecretStr(Fernet.generate_key().decode()),
    )


def add(admin: TestClient, name: str = "hooks", **extra: object) -> dict[str, object]:
    body = {"name": name, "kind": "webhook", "config": HOOK, "secret": SECRET, **extra}
    answer = admin.post(f"{API}/connectors", json=body)
    assert answer.status_code == 201, answer.text
    assert int(answer.headers["Pimlico-Revision"]) > 0
    found: dict[str, object] = answer.json()
    return found


def test_a_connector_s_secret_is_stored_sealed_and_never_shown_or_audited(
    rt: Pimlico, admin: TestClient
) -> None:
    made = add(admin)
    assert made["has_secret"] is True
    assert SECRET not in json.dumps(made)
    listed = admin.get(f"{API}/connectors")
    assert SECRET not in listed.text
    assert [c["name"] for c in listed.json()["items"]] == ["hooks"]
    with rt.reading() as s:
        stored = s.scalars(select(ConnectorRow.secret)).one()
        audited = [e.after for e in s.scalars(select(AuditEventRow))]
    assert stored is not None
    assert SECRET not in stored
    assert SECRET not in json.dumps(audited, default=str)


def test_a_bad_configuration_names_each_field_and_writes_nothing(
    rt: Pimlico, admin: TestClient
) -> None:
    before = audit_count(rt)
    answer = admin.post(
        f"{API}/connectors",
        json={"name": "corp", "kind": "ldap", "config": {"url": "ldap://x", "extra": 1}},
    )
    body = problem(answer, 400, "InvalidInput")
    fields = {field for field, _ in rules(body)}
    assert {"config.bind_dn", "config.user_base", "config.extra"} <= fields
    unknown_kind = admin.post(
        f"{API}/connectors", json={"name": "corp", "kind": "ftp", "config": {}}
    )
    assert ("kind", "literal_error") in rules(problem(unknown_kind, 400, "InvalidInput"))
    assert audit_count(rt) == before
    assert admin.get(f"{API}/connectors").json()["items"] == []


def test_connector_names_are_unique_and_a_connector_is_disabled_not_deleted(
    admin: TestClient,
) -> None:
    add(admin)
    problem(
        admin.post(f"{API}/connectors", json={"name": "HOOKS", "kind": "webhook", "config": HOOK}),
        409,
        "AlreadyExists",
    )
    changed = admin.patch(f"{API}/connectors/hooks", json={"enabled": False, "mode": "report_only"})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["enabled"], changed.json()["mode"]) == (False, "report_only")
    assert admin.get(f"{API}/connectors", params={"enabled": "false"}).json()["items"]
    assert admin.get(f"{API}/connectors", params={"enabled": "true"}).json()["items"] == []
    problem(admin.patch(f"{API}/connectors/nothing", json={"enabled": True}), 404, "NotFound")


def test_a_mapping_is_made_listed_and_ended_and_drives_provisioning_states(
    rt: Pimlico, admin: TestClient, sign_in: SignIn
) -> None:
    add(admin)
    reader = role(rt, "Reader", "app.read")
    mapped = admin.post(
        f"{API}/connector-mappings",
        json={
            "connector": "hooks",
            "target": {"type": "role", "object_id": reader},
            "downstream_object": "readers",
        },
    )
    assert mapped.status_code == 201, mapped.text
    mapping = mapped.json()
    assert mapping["target"] == {"type": "role", "object_id": reader, "scope": "/"}
    alex = with_password(rt, "alex")
    held = assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ACTIVE,
        principal=PrincipalRef(PrincipalType.USER, alex),
        target=Target.role(reader),
        duration=timedelta(hours=2),
        justification="provisioned through the hooks",
    ).value
    # The worker delivers the activation to provisioning, which records what must be true
    # downstream (no dispatcher runs here, so it stays pending).
    Worker(rt, WORKER_HANDLERS, name="w1").run_once(rt.clock.now())
    states = admin.get(f"{API}/assignments/{held.id}/provisioning")
    assert states.status_code == 200, states.text
    [state] = states.json()
    assert (state["connector"], state["principal_id"], state["present"]) == ("hooks", alex, True)
    assert (state["status"], state["attempts"]) == ("pending", 0)
    with_password(rt, "eve")
    own = sign_in("alex", PASSWORD).get(f"{API}/assignments/{held.id}/provisioning")
    assert own.status_code == 200, own.text
    assert [s["principal_id"] for s in own.json()] == [alex]
    other = sign_in("eve", PASSWORD).get(f"{API}/assignments/{held.id}/provisioning")
    problem(other, 403, "PermissionDenied")
    nothing = sign_in("eve", PASSWORD).get(f"{API}/assignments/{reader}/provisioning")
    problem(nothing, 403, "PermissionDenied")
    everyone = walk(admin, f"{API}/provisioning", limit=1)
    assert [(s["principal_id"], s["mapping_id"]) for s in everyone] == [(alex, mapping["id"])]
    ended = admin.delete(f"{API}/connector-mappings/{mapping['id']}")
    assert ended.status_code == 200, ended.text
    assert ended.json()["ended_at"] is not None
    assert admin.get(f"{API}/connector-mappings").json()["items"] == []
    listed = admin.get(f"{API}/connector-mappings", params={"include_ended": "true"})
    assert [m["id"] for m in listed.json()["items"]] == [mapping["id"]]


def test_a_webhook_connector_is_only_reported_by_reconcile_and_a_dry_run_writes_nothing(
    rt: Pimlico, admin: TestClient
) -> None:
    add(admin)
    reader = role(rt, "Reader", "app.read")
    admin.post(
        f"{API}/connector-mappings",
        json={
            "connector": "hooks",
            "target": {"type": "role", "object_id": reader},
            "downstream_object": "readers",
        },
    )
    before = audit_count(rt)
    dry = admin.post(f"{API}/reconcile", params={"dry_run": "true"})
    assert dry.status_code == 200, dry.text
    assert dry.json()["dry_run"] is True
    assert [c["action"] for c in dry.json()["corrections"]] == ["unlisted"]
    assert audit_count(rt) == before
    real = admin.post(f"{API}/reconcile", params={"connector": "hooks"})
    assert real.status_code == 200, real.text
    assert [(c["action"], c["applied"]) for c in real.json()["corrections"]] == [
        ("unlisted", False)
    ]
    assert int(real.headers["Pimlico-Revision"]) > 0
    problem(admin.post(f"{API}/reconcile", params={"connector": "nothing"}), 404, "NotFound")
