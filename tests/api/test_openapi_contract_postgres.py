"""The contract test of ``test_openapi_contract`` again, on PostgreSQL: its driver refuses
inputs SQLite takes (integers out of range, NUL characters), and such a refusal must be a
declared problem, never a 5xx."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from tests.api.test_openapi_contract import check_contract, schema, settings

EXAMPLES = 100
"""Per operation, on top of the 200 on SQLite."""

__all__ = ["settings"]  # (the fixture with a secret key, shared with the SQLite run)


@pytest.fixture
def backend() -> str:
    return "postgres"


@schema.parametrize()
@hypothesis_settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_every_operation_keeps_its_declared_contract_on_postgresql(
    case: schemathesis.Case[Any], admin: TestClient
) -> None:
    check_contract(case, admin)
