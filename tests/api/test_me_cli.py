"""``pimlico me …`` against a real server: the CLI's own commands as the token's holder."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from pimlico.cli import app
from pimlico.domain.catalogue import SECURITY_READER
from pimlico.domain.model import AssignmentKind, PrincipalRef, PrincipalType, Target
from pimlico.services import accounts, assignments, role_settings
from pimlico.services.runtime import Actor, Pimlico
from pimlico.settings import Settings
from tests.integration.world import OPERATOR, user


@pytest.fixture
def settings(migrated_url: str) -> Settings:
    return Settings(
        database_url=migrated_url,
        token_cache_seconds=0,
        secret_key=SecretStr("q5wqT0Vf0mB3rXy2kZ8nN4pL7sD1gH6jC9vE2aR5tYU="),
    )


def test_a_user_activates_checks_and_deactivates_through_the_server(
    rt: Pimlico, pimlico_url: str
) -> None:
    alex = user(rt, "alex").id
    role_settings.update_policy(
        rt,
        actor=OPERATOR,
        target_type=Target.role(SECURITY_READER.id).type,
        object_id=SECURITY_READER.id,
        changes={"activation": {"require_mfa": False, "require_justification": True}},
    )
    eligible = assignments.assign(
        rt,
        actor=OPERATOR,
        kind=AssignmentKind.ELIGIBLE,
        principal=PrincipalRef(PrincipalType.USER, alex),
        target=Target.role(SECURITY_READER.id),
        duration=timedelta(days=30),
    ).value.id
    token = accounts.issue_token(rt, actor=Actor.principal(alex), name="cli").bearer
    runner = CliRunner(env={"PIMLICO_URL": pimlico_url, "PIMLICO_TOKEN": token})

    def me(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, ["me", *args])
        return result.exit_code, result.output + (result.stderr or "")

    assert me("whoami") == (0, f"alex ({alex}; scopes: all)\n")
    code, listed = me("eligible")
    assert code == 0
    assert eligible in listed
    assert me("check", "security.read")[0] == 1

    code, refused = me("activate", eligible)
    assert code == 2
    assert "JustificationRule" in refused

    code, done = me("activate", eligible, "--duration", "PT1H", "--justification", "triage")
    assert code == 0, done
    assert "provisioned" in done
    assert me("check", "security.read") == (0, "allowed\n")
    assert "self_activate" in me("requests")[1]

    code, early = me("deactivate", eligible)
    assert code == 2
    assert "ActiveDurationTooShort" in early


def test_without_a_server_the_command_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIMLICO_URL", raising=False)
    result = CliRunner().invoke(app, ["me", "whoami"])
    assert result.exit_code == 2
    assert "PIMLICO_URL" in result.output + (result.stderr or "")
