"""``pimlico activate|requests|approve|cancel``: self-service through the CLI, on SQLite."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from tests.cli.conftest import Pimlico

_REQUEST = re.compile(r"request ([0-9a-f-]{36}):")


@pytest.fixture
def world(pimlico: Pimlico) -> Pimlico:
    """Alex eligible for Reader (no MFA, no justification) and for the Purge group (approval
    by Bob); Bob exists."""
    pimlico("user create alex")
    pimlico("user create bob")
    pimlico("role create Reader -p security.read")
    pimlico("assignment add alex role:Reader --eligible --duration P30D")
    pimlico(
        "settings set role:Reader --set activation.require_mfa=false "
        "--set activation.require_justification=false"
    )
    pimlico("group create Purge --role-assignable")
    pimlico("assignment add alex member:Purge --eligible --duration P30D")
    bob = pimlico("user list").stdout
    bob_id = re.search(r"bob\s.*?([0-9a-f-]{36})", bob)
    assert bob_id is not None, bob
    stages = json.dumps([{"approvers": [{"type": "user", "id": bob_id.group(1)}]}])
    pimlico(
        "settings set member:Purge --set activation.require_mfa=false "
        f"--set approval.required=true --set approval.stages={shlex.quote(stages)}"
    )
    return pimlico


def request_id(out: str) -> str:
    match = _REQUEST.search(out)
    assert match is not None, out
    return match.group(1)


def test_alex_activates_reader_at_once(world: Pimlico) -> None:
    out = world("activate alex role:Reader --duration PT2H").stdout

    assert "self_activate role:Reader" in out
    assert "until 2026-03-01T11:00:00Z: provisioned" in out
    assert "allowed" in world("check alex security.read").stdout


def test_a_dry_run_writes_nothing(world: Pimlico) -> None:
    out = world("activate alex role:Reader --dry-run").stdout

    assert out.startswith("dry run, nothing written")
    assert "self_activate" not in world("requests --all").stdout


def test_bob_approves_alex_request_and_it_is_listed(world: Pimlico) -> None:
    asked = request_id(world("activate alex member:Purge --justification 'INC-7'").stdout)

    assert asked in world("requests --to-approve bob").stdout
    assert asked in world("requests --mine alex").stdout
    out = world(f"approve {asked} --as bob --justification ok").stdout

    assert "provisioned" in out
    assert asked not in world("requests --to-approve bob").stdout


def test_alex_cancels_a_pending_request(world: Pimlico) -> None:
    asked = request_id(world("activate alex member:Purge --justification 'INC-7'").stdout)

    out = world(f"cancel {asked} --as alex --reason 'not needed'").stdout

    assert f"request {asked}" in out
    assert "canceled" in out


def test_approving_ones_own_request_is_one_red_line_and_exit_code_2(world: Pimlico) -> None:
    asked = request_id(world("activate alex member:Purge --justification 'INC-7'").stdout)

    result = world(f"approve {asked} --as alex --justification mine", code=2)

    assert result.stderr.startswith("error: PermissionDenied: ")
    assert len(result.stderr.strip().splitlines()) == 1
