"""``pimlico demo``: load the demo directory of DESIGN.md's stories, and show how to walk them."""

from __future__ import annotations

from typing import Annotated

import typer

from pimlico.cli._common import ACTOR, command, runtime, say, settings
from pimlico.demo import PEOPLE, demo_password, load_demo
from pimlico.services import directory

app = typer.Typer(
    help="The demo directory (Alex, Bob, Search and Purge, ...).", no_args_is_help=True
)

WALKTHROUGH = """\
The demo store is {url}
People: root (break-glass Global Administrator), alex, bob, erin, dana, mike, sam, priya.

Walk the Search and Purge story with the CLI (prefix each with `uv run`):
  pimlico check alex mail.purge --scope /apps/mail       # denied: Alex holds nothing standing
  pimlico access alex                                     # ...but is eligible for two things
  pimlico settings show "member:Search and Purge PIM"     # MFA, justification, ticket, Bob approves
  pimlico assignment add alex "member:Search and Purge PIM" --active --duration PT2H \\
      --justification "INC-4711 phishing wave"
  pimlico explain alex mail.purge --scope /apps/mail/inbox   # allowed, and through which groups
  pimlico assignment list --principal alex                # remove it with: assignment remove ID
  pimlico audit list --limit 5 && pimlico audit verify

Self-service, as Alex: enrol MFA with `pimlico mfa enroll alex` and `mfa confirm`, verify
with `mfa verify alex CODE`, then `pimlico activate alex "member:Search and Purge PIM"
--duration PT1H --justification ... --ticket-system ... --ticket-number ...`; Bob decides
with `pimlico approve REQUEST --as bob`. The same people sign in to the HTTP API that
`pimlico serve` serves (`pimlico demo sign-ins` lists their demo passwords); `make test`
runs the whole suite.\
"""


@command(app, "load")
def load(
    if_empty: Annotated[
        bool, typer.Option("--if-empty", help="Do nothing if the store already has users.")
    ] = False,
) -> None:
    """Create the demo directory in the configured store."""
    with runtime() as rt:
        if directory.list_users(rt, actor=ACTOR):
            if if_empty:
                say("the store already has users: demo not loaded again")
                return
            say("the store already has users: the demo loads into an empty store only")
            raise typer.Exit(2)
        demo = load_demo(rt, ACTOR)
    say(
        f"demo loaded: {len(demo.users)} users, {len(demo.groups)} groups, "
        f"{len(demo.roles)} custom roles; revision {demo.revision}"
    )


@command(app, "walkthrough")
def walkthrough() -> None:
    """Print how to walk the demo stories."""
    say(WALKTHROUGH.format(url=settings().database_url))


@command(app, "sign-ins")
def sign_ins() -> None:
    """Print the demo people's user names and demo passwords (for the demo store only)."""
    width = max(len(demo_password(name)) for name, *_ in PEOPLE)
    say("Demo sign-ins. These passwords are public and set by `pimlico demo load`: they are")
    say("for the demo store only, never for a store with real accounts.")
    for name, _, _, part in PEOPLE:
        say(f"  {name:<6} {demo_password(name):<{width}}  {part}")
    example = f'{{"user_name": "alex", "password": "{demo_password("alex")}"}}'
    say("Sign in to the portal at /portal/ with one of them, or through the API:")
    say(f"  POST /api/v1/auth/sign-in {example}")
    say("The CLI walk of the same stories: `uv run pimlico demo walkthrough`.")
