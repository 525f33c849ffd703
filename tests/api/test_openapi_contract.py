"""Schemathesis over the whole OpenAPI document: every operation, called by the Global
Administrator with generated inputs (valid and not), answers without a 5xx, with a status
it declares, in the content type it declares, and with a body that matches its declared
schema.

It checks the contract, not the behaviour (the other API tests do that): a generated
request is usually refused (unknown ids, broken rules), and a refusal must be a declared
problem+json too. (The schema is loaded from the app's document when the module is
collected; each case is sent through the ``admin`` test client of a fresh store.)
"""

from __future__ import annotations

import tempfile
from typing import Any

import pytest
import schemathesis
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from pydantic import SecretStr
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from pimlico.api import create_app
from pimlico.services.runtime import Pimlico
from pimlico.settings import Settings

EXAMPLES = 200
"""Per operation on SQLite (``test_openapi_contract_postgres`` adds 100 on PostgreSQL): enough
to reach both the refusals and the successes of each, in a few minutes for the whole document
(every operation starts from a fresh store)."""


def _document() -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        Pimlico(Settings(database_url=f"sqlite:///{tmp}/document.db")) as rt,
    ):
        return create_app(rt.settings, runtime=rt).openapi()


schema = schemathesis.openapi.from_dict(_document())


@pytest.fixture
def backend() -> str:
    """SQLite here; PostgreSQL, whose driver refuses more inputs (out-of-range integers, NUL
    characters), in ``test_openapi_contract_postgres``."""
    return "sqlite"


@pytest.fixture
def settings(migrated_url: str) -> Settings:
    """With a secret key, so that MFA enrolment works (without one it is refused, 500
    ``SecretKeyNotConfigured``: the deployment is broken, not the request)."""
    return Settings(
        database_url=migrated_url,
        token_cache_seconds=0,
        secret_key=SecretStr(Fernet.generate_key().decode()),
    )


@schema.parametrize()
@hypothesis_settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_every_operation_keeps_its_declared_contract(
    case: schemathesis.Case[Any], admin: TestClient
) -> None:
    check_contract(case, admin)


def check_contract(case: schemathesis.Case[Any], admin: TestClient) -> None:
    """Send ``case`` as the Global Administrator and check the answer against the document."""
    headers = {"Authorization": admin.headers["Authorization"]}
    sent = case.as_transport_kwargs(base_url=str(admin.base_url), headers=headers)
    sent.pop("cookies", None)  # (the API reads none; httpx refuses them per request)
    if isinstance(sent.get("data"), bytes | str):  # (requests' raw body is httpx's content)
        sent["content"] = sent.pop("data")
    response = admin.request(**sent)
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
        headers=headers,
        transport_kwargs=sent,
    )
