"""Properties of every operation in the OpenAPI document, whoever wrote it: anonymous callers
are refused (but for sign-in, health, readiness and metrics), every success response has a
declared schema, and every operation has a summary."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient

from pimlico.api import create_app
from pimlico.settings import Settings

PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("POST", "/api/v1/auth/sign-in"),
}
"""Operations open to anonymous callers: they say nothing about who holds what."""


def operations(settings: Settings) -> list[tuple[str, str, dict[str, object]]]:
    document = create_app(settings).openapi()
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_anonymous_callers_are_refused_by_every_operation_but_the_public_ones(
    anonymous: TestClient, settings: Settings
) -> None:
    found = operations(settings)
    assert len(found) > len(PUBLIC)
    for method, path, _ in found:
        concrete = re.sub(r"\{[^}]+\}", "00000000-0000-0000-0000-000000000000", path)
        answer = anonymous.request(method, concrete, json={})
        if (method, path) in PUBLIC:
            assert answer.status_code != 401, (method, path)
        else:
            assert answer.status_code == 401, (method, path, answer.status_code, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_every_operation_has_a_summary_and_a_declared_success_schema(settings: Settings) -> None:
    for method, path, operation in operations(settings):
        assert operation.get("summary"), (method, path)
        responses = operation["responses"]
        assert isinstance(responses, dict)
        success = [code for code in responses if code.startswith("2")]
        assert success, (method, path)
        for code in success:
            if code == "204":
                continue
            content = responses[code].get("content", {})
            assert content, (method, path, code)
            for media in content.values():
                schema = media.get("schema", {})
                if path == "/metrics":
                    continue
                assert schema, (method, path, code)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_no_operation_documents_an_answer_it_never_gives(
    settings: Settings, anonymous: TestClient
) -> None:
    """Validation errors are 400 problems, so FastAPI's 422 is in no operation, and no
    reference points at a schema that is not in the document."""
    document = create_app(settings).openapi()
    for method, path, operation in operations(settings):
        responses = operation["responses"]
        assert isinstance(responses, dict)
        assert "422" not in responses, (method, path)
        assert "400" in responses, (method, path)
    text = json.dumps(document)
    for name in set(re.findall(r'"#/components/schemas/([^"]+)"', text)):
        assert name in document["components"]["schemas"], name
    served = anonymous.get("/openapi.json").json()
    assert served == document


def test_a_nul_character_is_bad_input_not_a_server_error(admin: TestClient, admin_id: str) -> None:
    """PostgreSQL cannot hold NUL in text: refused as input wherever it comes, body or path."""
    body = admin.post("/api/v1/users", json={"user_name": "nul", "email": "a\x00b@example.org"})
    assert body.status_code == 400
    path = admin.get("/api/v1/users/abc%00def")
    assert path.status_code in (400, 404)
    reason = admin.put(
        f"/api/v1/users/{admin_id}/enabled", json={"enabled": True, "reason": "why\x00not"}
    )
    assert reason.status_code == 400
    assert reason.json()["code"] == "InvalidInput"
