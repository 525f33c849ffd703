"""``pimlico bootstrap-admin`` and ``pimlico user set-password``: local accounts, as the operator.

A password comes from a file (``--password-file``: its first line, so a trailing newline is
not part of it; ``-`` reads standard input) or, without one, from a prompt that does not
echo and asks twice. Never from an option's value: that would leave it in the shell's history
and in the process list.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from pimlico.cli._common import ACTOR, done, fail_with, runtime, say
from pimlico.services import accounts, resolve

PasswordFile = Annotated[
    Path | None,
    typer.Option(
        "--password-file",
        help="Read the password from this file's first line ('-': standard input); "
        "without it, prompt.",
        dir_okay=False,
        allow_dash=True,
    ),
]


def bootstrap_admin(
    user_name: Annotated[
        str, typer.Option("--user-name", help="The administrator's user name.", show_default=False)
    ],
    password_file: PasswordFile = None,
    display_name: Annotated[str | None, typer.Option("--display-name")] = None,
    email: Annotated[str | None, typer.Option("--email")] = None,
) -> None:
    """Create the first, break-glass administrator (permanent, active Global Administrator)
    on a store that has no administrator yet."""
    password = _password(password_file)
    with runtime() as rt:
        user_id = accounts.bootstrap_admin(
            rt, user_name=user_name, password=password, display_name=display_name, email=email
        )
    say(
        f"created break-glass administrator {user_name} ({user_id}): permanent, active Global "
        "Administrator; keep its password offline and use it only when nothing else works"
    )


def set_password(
    name: Annotated[str, typer.Argument(help="A user name (or id).", show_default=False)],
    password_file: PasswordFile = None,
) -> None:
    """Set a user's password (their sign-in sessions end)."""
    password = _password(password_file)
    with runtime() as rt:
        user = resolve.resolve_user(rt, name)
        written = accounts.set_password(rt, actor=ACTOR, user_id=user.id, password=password)
    done(f"set the password of {user.user_name}; their sign-in sessions ended", written.revision)


def _password(path: Path | None) -> str:
    if path is None:
        entered: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
        return entered
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        fail_with("CannotReadPassword", f"{path}: {getattr(error, 'strerror', None) or error}")
    lines = text.splitlines()
    return lines[0] if lines else ""
