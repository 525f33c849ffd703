"""``pimlico me …``: a person's own commands against a Pimlico server, as the token's holder.

The server is ``PIMLICO_URL`` and the caller ``PIMLICO_TOKEN`` (a session from sign-in or a
personal token); every command goes through ``pimlico.client``, so the server checks
everything — unlike the local commands, which act with the operator's access to the store.
What to activate is named by the eligible assignment (``pimlico me eligible`` lists them), a
plain user's only way to name a target, since reading roles by name takes a permission.

A refused call is one red line, ``error: <code>: <detail>`` (with the failed rules or
fields), and exit code 2, as for the local commands.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, ParamSpec, TypeVar

import typer

from pimlico.cli._common import fail_with, parse_duration_option, say, show, table
from pimlico.client import ApiError, Client, Request, Target
from pimlico.errors import PimlicoError

P = ParamSpec("P")
T = TypeVar("T")

app = typer.Typer(
    help="Your own requests, against a server (PIMLICO_URL, PIMLICO_TOKEN).",
    no_args_is_help=True,
)

Justification = Annotated[str | None, typer.Option("--justification", help="Why.")]


def _remote(func: Callable[P, T]) -> Callable[P, T]:
    """A server's refusal (or a missing server) becomes one red line and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return func(*args, **kwargs)
        except ApiError as error:
            extra = error.rules or [f"{e.field}: {e.rule}" for e in error.errors]
            fail_with(error.code, error.detail + (f" ({', '.join(extra)})" if extra else ""))
        except PimlicoError as error:  # input this command parses itself
            fail_with(error.code, str(error))

    return wrapper


def _command(name: str) -> Callable[[Callable[P, T]], Callable[P, T]]:
    def register(func: Callable[P, T]) -> Callable[P, T]:
        app.command(name)(_remote(func))
        return func

    return register


def _line(r: Request) -> str:
    end = r.window.end if r.window is not None else None
    until = "" if end is None else f", until {end:%Y-%m-%d %H:%M}Z"
    target = f"{r.target.type}:{r.target.object_id} at {r.target.scope}"
    return f"{r.id}  {r.action}  {target}  {r.status}{until}"


@_command("whoami")
def whoami() -> None:
    """Who the token belongs to, and its scopes."""
    with Client.from_environment() as pimlico:
        me = pimlico.me()
    scopes = "all" if me.scopes is None else ", ".join(me.scopes)
    say(f"{me.name} ({me.principal_id}; scopes: {scopes})")


@_command("eligible")
def eligible() -> None:
    """Your eligible assignments in force now: what you may activate."""
    with Client.from_environment() as pimlico:
        found = list(pimlico.my_assignments("eligible"))
    rows = table(None, "eligible assignment", "target", "scope", "until")
    for a in found:
        end = "permanent" if a.end is None else f"{a.end:%Y-%m-%d %H:%M}Z"
        rows.add_row(a.id, f"{a.target.type}:{a.target.object_id}", a.target.scope, end)
    show(rows)


@_command("activate")
def activate(
    eligible_id: Annotated[str, typer.Argument(help="The eligible assignment (me eligible).")],
    duration: Annotated[str | None, typer.Option("--duration", help="ISO 8601, e.g. PT2H.")] = None,
    justification: Justification = None,
    ticket_system: Annotated[str | None, typer.Option("--ticket-system")] = None,
    ticket_number: Annotated[str | None, typer.Option("--ticket-number")] = None,
) -> None:
    """Activate what an eligible assignment of yours allows."""
    with Client.from_environment() as pimlico:
        target = _target_of(pimlico, eligible_id)
        ticket = None
        if ticket_system is not None or ticket_number is not None:
            ticket = (ticket_system or "", ticket_number or "")
        request = pimlico.activate(
            target,
            duration=parse_duration_option(duration),
            justification=justification,
            ticket=ticket,
        )
    say(f"{_line(request)}; revision {pimlico.last_revision}")


@_command("deactivate")
def deactivate(
    eligible_id: Annotated[str, typer.Argument(help="The eligible assignment you activated.")],
    justification: Justification = None,
) -> None:
    """End your activation of what an eligible assignment allows, now."""
    with Client.from_environment() as pimlico:
        request = pimlico.deactivate(_target_of(pimlico, eligible_id), justification=justification)
    say(f"{_line(request)}; revision {pimlico.last_revision}")


@_command("requests")
def requests() -> None:
    """Your requests, newest first."""
    with Client.from_environment() as pimlico:
        for request in pimlico.my_requests():
            say(_line(request))


@_command("inbox")
def inbox() -> None:
    """Requests you may decide now."""
    with Client.from_environment() as pimlico:
        for request in pimlico.inbox():
            say(f"{_line(request)}  by {request.requested_by}: {request.justification or ''}")


@_command("approve")
def approve(request_id: str, justification: Justification = None) -> None:
    """Approve the current stage of a request you may decide."""
    with Client.from_environment() as pimlico:
        say(_line(pimlico.approve(request_id, justification)))


@_command("deny")
def deny(request_id: str, justification: Justification = None) -> None:
    """Deny a request you may decide."""
    with Client.from_environment() as pimlico:
        say(_line(pimlico.deny(request_id, justification)))


@_command("cancel")
def cancel(request_id: str) -> None:
    """Withdraw a request of yours that has not started."""
    with Client.from_environment() as pimlico:
        say(_line(pimlico.cancel(request_id)))


@_command("mfa-verify")
def mfa_verify(code: Annotated[str, typer.Argument(help="A TOTP or recovery code.")]) -> None:
    """Step up: verify a code, so that requests requiring MFA accept you for a while."""
    with Client.from_environment() as pimlico:
        verified = pimlico.mfa_verify(code)
    say(f"verified ({verified.method}); fresh until {verified.fresh_until:%Y-%m-%d %H:%M:%S}Z")


@_command("check")
def check(
    permission: str,
    scope: Annotated[str, typer.Option("--scope", help="Where.")] = "/",
) -> None:
    """May you use PERMISSION at --scope now? Exit code 0 yes, 1 no."""
    with Client.from_environment() as pimlico:
        me = pimlico.me()
        decision = pimlico.check(me.principal_id, permission, scope)
    say("allowed" if decision.allowed else f"denied ({decision.reason})")
    if not decision.allowed:
        raise typer.Exit(1)


def _target_of(pimlico: Client, eligible_id: str) -> Target:
    for a in pimlico.my_assignments("eligible"):
        if a.id == eligible_id:
            return a.target
    raise ApiError(404, "NotFound", f"no eligible assignment {eligible_id} of yours is in force")
