"""``pimlico demo``: the demo directory loads once, and its walkthrough works as printed."""

from __future__ import annotations

from tests.cli.conftest import Pimlico


def walkthrough_commands(text: str) -> list[str]:
    """The ``pimlico ...`` commands the walkthrough prints, continuation lines joined."""
    joined = text.replace("\\\n", " ")
    commands: list[str] = []
    for line in joined.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("pimlico "):
            commands.extend(part.strip() for part in line.split("&&"))
    return [c.removeprefix("pimlico ") for c in commands]


def test_the_demo_loads_into_an_empty_store_only(pimlico: Pimlico) -> None:
    assert "demo loaded: 8 users" in pimlico("demo load").stdout
    assert "not loaded again" in pimlico("demo load --if-empty").stdout
    pimlico("demo load", code=2)


def test_every_command_of_the_walkthrough_does_what_its_comment_says(pimlico: Pimlico) -> None:
    pimlico("demo load")
    commands = walkthrough_commands(pimlico("demo walkthrough").stdout)
    assert commands[0] == "check alex mail.purge --scope /apps/mail"
    pimlico(commands[0], code=1)
    for command in commands[1:]:
        pimlico(command)
    assert "allowed" in pimlico("check alex mail.purge --scope /apps/mail").stdout
