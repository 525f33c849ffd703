"""A ``pimlico`` to drive in tests: its own SQLite database, migrated, and a clock we move.

The CLI builds its runtime from the environment like any entry point; the tests give it
``PIMLICO_DATABASE_URL`` through the runner and make the system clock a fixed one (a fake,
not a mock: it answers ``now`` and moves only when told to).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from pimlico.cli import app
from pimlico.clock import FixedClock, SystemClock
from tests.factories import T0

_ASSIGNMENT_ID = re.compile(r"\(assignment ([0-9a-f-]{36})\)")


@dataclass
class Pimlico:
    """Runs ``pimlico`` commands against one database and says what they printed."""

    runner: CliRunner
    database: Path
    clock: FixedClock

    def __call__(self, command: str, *, code: int = 0) -> Result:
        """Run ``pimlico COMMAND`` (split as a shell would); fail unless it exits ``code``."""
        result = self.runner.invoke(app, shlex.split(command))
        assert result.exit_code == code, (
            f"pimlico {command} exited {result.exit_code}, not {code}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}\n{result.exception!r}"
        )
        return result

    def assignment_id(self, command: str) -> str:
        """Run a command that writes an assignment and return the assignment's id."""
        match = _ASSIGNMENT_ID.search(self(command).stdout)
        assert match is not None
        return match.group(1)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FixedClock:
    """The time every command sees: 2026-03-01T09:00:00Z until a test moves it."""
    fixed = FixedClock(T0)
    monkeypatch.setattr(SystemClock, "now", lambda self: fixed.now())
    return fixed


@pytest.fixture
def pimlico(tmp_path: Path, clock: FixedClock) -> Pimlico:
    """``pimlico`` on a fresh database in ``tmp_path``, already upgraded to head."""
    database = tmp_path / "p.db"
    runner = CliRunner(env={"PIMLICO_DATABASE_URL": f"sqlite:///{database}"})
    cli = Pimlico(runner, database, clock)
    cli("db upgrade")
    return cli
