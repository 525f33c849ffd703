"""``pimlico connectors …`` and ``pimlico reconcile`` against a real PostgreSQL downstream."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import Pimlico
from tests.connectors.provisioning_world import KEY, Downstream, downstream

__all__ = ["downstream"]


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIMLICO_SECRET_KEY", KEY)


def add(pimlico: Pimlico, downstream: Downstream, tmp_path: Path, *extra: str) -> None:
    secret = tmp_path / "secret"
    secret.write_text("hunter2-never-printed\n")
    config = json.dumps({"dsn": downstream.dsn()})
    pimlico(
        f"connectors add db --kind postgres --config '{config}' --secret-file {secret} "
        + " ".join(extra)
    )


def test_a_connector_is_added_listed_without_its_secret_and_mapped(
    pimlico: Pimlico, downstream: Downstream, tmp_path: Path
) -> None:
    add(pimlico, downstream, tmp_path)
    pimlico("connectors map db --target 'role:Security Reader' --object reader")

    listed = pimlico("connectors list").stdout

    assert "db" in listed
    assert "postgres" in listed
    assert "set" in listed
    assert "hunter2" not in listed
    assert "reader" in listed
    assert "Security Reader" in listed


def test_bad_input_is_one_clear_line_and_a_non_zero_exit(
    pimlico: Pimlico, downstream: Downstream, tmp_path: Path
) -> None:
    bad = pimlico(
        'connectors add db --kind postgres --config \'{"dsn": "postgresql://u:pw@h/d"}\'',
        code=2,
    )
    assert bad.stderr.count("\n") == 1
    assert "config.dsn" in bad.stderr
    unknown = pimlico("connectors add db --kind pigeon --config '{}'", code=2)
    assert "pigeon" in unknown.stderr
    not_json = pimlico("connectors add db --kind postgres --config 'dsn='", code=2)
    assert "config" in not_json.stderr
    missing = pimlico("connectors map nope --target 'role:Security Reader' --object x", code=2)
    assert "NotFound" in missing.stderr


def test_status_shows_a_failure_with_its_downstream_error(
    pimlico: Pimlico, downstream: Downstream, tmp_path: Path
) -> None:
    add(pimlico, downstream, tmp_path)
    pimlico(f"connectors map db --target 'role:Security Reader' --object {downstream.prefix}-gone")
    alex = downstream.role("alex", login=True)
    pimlico(f"user create {alex}")
    made = pimlico.assignment_id(
        f"assignment add {alex} 'role:Security Reader' --active --duration PT1H "
        "--justification test"
    )
    pimlico("worker --once")

    status = pimlico("connectors status db").stdout

    assert "failed" in status
    assert "no role" in status
    assert alex in status
    own = pimlico(f"connectors status --assignment {made}").stdout
    assert "failed" in own
    assert alex in own
    bob = downstream.role("bob", login=True)
    pimlico(f"user create {bob}")
    other = pimlico.assignment_id(
        f"assignment add {bob} 'role:Security Reader' --eligible --duration P1D"
    )
    assert bob not in pimlico(f"connectors status --assignment {other}").stdout


def test_reconcile_dry_run_says_what_it_would_do_and_does_nothing(
    pimlico: Pimlico, downstream: Downstream, tmp_path: Path
) -> None:
    add(pimlico, downstream, tmp_path)
    obj = downstream.role("reader")
    stray = downstream.role("stray", login=True)
    downstream.grant(obj, stray)
    pimlico(f"connectors map db --target 'role:Security Reader' --object {obj}")

    dry = pimlico("reconcile --dry-run").stdout

    assert f"would revoke {stray}" in dry
    assert "dry run: 1 difference(s)" in dry
    assert downstream.members(obj) == {stray}
    done = pimlico("reconcile --connector db").stdout
    assert f"revoked {stray}" in done
    assert downstream.members(obj) == set()
