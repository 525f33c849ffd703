"""``pimlico bootstrap-admin``, ``pimlico user set-password`` and the demo's sign-ins: the
passwords they set are the ones that sign in."""

from __future__ import annotations

from pathlib import Path

import pytest

from pimlico.cli import app
from pimlico.demo import PEOPLE, demo_password
from pimlico.errors import NotAuthenticated
from pimlico.services import accounts
from pimlico.services.runtime import Pimlico as Runtime
from pimlico.settings import Settings
from tests.cli.conftest import Pimlico

PASSWORD = "correct horse battery staple"


def password_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "password"
    path.write_text(text)
    return path


def signs_in(pimlico: Pimlico, user_name: str, password: str) -> bool:
    with Runtime(Settings(database_url=f"sqlite:///{pimlico.database}")) as rt:
        try:
            accounts.sign_in(rt, user_name=user_name, password=password)
        except NotAuthenticated:
            return False
    return True


def test_bootstrap_admin_makes_a_permanent_global_administrator_who_signs_in(
    pimlico: Pimlico, tmp_path: Path
) -> None:
    secret = password_file(tmp_path, PASSWORD + "\n")

    made = pimlico(f"bootstrap-admin --user-name root --password-file {secret}").stdout

    assert len(made.strip().splitlines()) == 1
    assert made.startswith("created break-glass administrator root (")
    assert signs_in(pimlico, "root", PASSWORD)  # the file's newline is not the password's
    assert "allowed" in pimlico("check root pim.policies.write").stdout
    access = pimlico("access root").stdout
    assert "Global Administrator" in access


def test_bootstrap_admin_reads_the_password_from_a_prompt_asked_twice(pimlico: Pimlico) -> None:
    result = pimlico.runner.invoke(
        app, ["bootstrap-admin", "--user-name", "root"], input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.stdout  # the prompt does not echo
    assert signs_in(pimlico, "root", PASSWORD)


def test_bootstrap_admin_refuses_a_store_that_has_an_administrator(
    pimlico: Pimlico, tmp_path: Path
) -> None:
    secret = password_file(tmp_path, PASSWORD)
    pimlico(f"bootstrap-admin --user-name root --password-file {secret}")

    refused = pimlico(f"bootstrap-admin --user-name other --password-file {secret}", code=2)

    assert "error: Conflict:" in refused.stderr
    assert "already has an administrator" in refused.stderr
    assert "other" not in pimlico("user list").stdout


def test_bootstrap_admin_refuses_the_demo_store(pimlico: Pimlico, tmp_path: Path) -> None:
    pimlico("demo load")
    secret = password_file(tmp_path, PASSWORD)
    pimlico(f"bootstrap-admin --user-name admin --password-file {secret}", code=2)


@pytest.mark.parametrize("text", ["", "short\n"])
def test_a_missing_or_short_password_is_refused_and_nothing_is_made(
    pimlico: Pimlico, tmp_path: Path, text: str
) -> None:
    secret = password_file(tmp_path, text)
    refused = pimlico(f"bootstrap-admin --user-name root --password-file {secret}", code=2)
    assert "error: InvalidInput: password" in refused.stderr
    assert "root" not in pimlico("user list").stdout


def test_an_unreadable_password_file_is_one_line(pimlico: Pimlico, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    refused = pimlico(f"bootstrap-admin --user-name root --password-file {missing}", code=2)
    assert refused.stderr.startswith("error: ")
    assert "Traceback" not in refused.stderr


def test_the_operator_sets_a_user_s_password_from_a_file_or_a_prompt(
    pimlico: Pimlico, tmp_path: Path
) -> None:
    pimlico("user create alex")
    secret = password_file(tmp_path, PASSWORD + "\n")

    said = pimlico(f"user set-password alex --password-file {secret}").stdout

    assert said.startswith("set the password of alex")
    assert "revision" in said
    assert signs_in(pimlico, "alex", PASSWORD)

    other = "another long passphrase"
    result = pimlico.runner.invoke(
        app, ["user", "set-password", "alex"], input=f"{other}\n{other}\n"
    )
    assert result.exit_code == 0, result.output
    assert signs_in(pimlico, "alex", other)
    assert not signs_in(pimlico, "alex", PASSWORD)


def test_setting_the_password_of_an_unknown_user_is_refused(
    pimlico: Pimlico, tmp_path: Path
) -> None:
    secret = password_file(tmp_path, PASSWORD)
    refused = pimlico(f"user set-password nobody --password-file {secret}", code=2)
    assert "error: NotFound:" in refused.stderr


def test_every_demo_person_signs_in_with_the_demo_password_printed(pimlico: Pimlico) -> None:
    pimlico("demo load")
    printed = pimlico("demo sign-ins").stdout

    assert "demo store only" in printed
    for name, *_ in PEOPLE:
        assert f"{name} " in printed
        assert demo_password(name) in printed
        assert signs_in(pimlico, name, demo_password(name))
