"""``pimlico activate|deactivate|requests|approve|deny|cancel``: self-service and approvals.

These commands act on behalf of the user they name (``Actor.principal``), not as the
operator: self-service is about a person, and approvals are refused to the requester. The
local operator can therefore impersonate any user here — as it could by editing the store.
"""

from __future__ import annotations

from typing import Annotated

import typer

from pimlico.cli._common import (
    instant,
    one_of,
    parse_duration_option,
    runtime,
    say,
    show,
    table,
    target_label,
)
from pimlico.domain.model import AssignmentKind, PrincipalType
from pimlico.domain.requests import RequestAction, Schedule, Ticket
from pimlico.errors import FieldError, InvalidInput
from pimlico.services import approvals, requests, resolve
from pimlico.services.request_records import RequestView
from pimlico.services.runtime import Actor, Pimlico, Written

IMPERSONATES = " The local operator acts on behalf of the named user."
User = Annotated[str, typer.Argument(help="The user who asks (alex or user:alex).")]
TargetArg = Annotated[str, typer.Argument(help="role:NAME or member:GROUP.")]
Scope = Annotated[str, typer.Option("--scope", help="Where the role applies.")]
RequestId = Annotated[str, typer.Argument(help="The request's id.", show_default=False)]
As = Annotated[str, typer.Option("--as", help="The user who decides.", show_default=False)]
Justification = Annotated[str | None, typer.Option("--justification", help="Why.")]


def _person(rt: Pimlico, text: str) -> Actor:
    ref = resolve.resolve_principal(rt, text)
    if ref.type is not PrincipalType.USER:
        raise InvalidInput(
            "requests are made by users", [FieldError("user", "UserRequired", f"{text} is not")]
        )
    return Actor.principal(ref.id)


def _line(rt: Pimlico, view: RequestView) -> str:
    r = view.request
    labels = resolve.labels(rt, [r.principal.id, r.target.object_id])
    who = labels.get(r.principal.id, str(r.principal))
    window = ""
    if view.window is not None:
        window = f" from {instant(view.window.start)} until {instant(view.window.end, 'forever')}"
    return (
        f"request {r.id}: {r.action.value} {target_label(r.target, labels)} for {who}"
        f"{window}: {r.status.value}"
    )


def _report(rt: Pimlico, written: Written[RequestView]) -> None:
    view = written.value
    if view.dry_run:
        say(f"dry run, nothing written: {_line(rt, view)}")
        return
    say(f"{_line(rt, view)}; revision {written.revision}")


def activate(
    user: User,
    target: TargetArg,
    scope: Scope = "/",
    duration: Annotated[
        str | None, typer.Option("--duration", help="ISO 8601, such as PT2H (default: longest).")
    ] = None,
    justification: Justification = None,
    ticket_system: Annotated[str | None, typer.Option("--ticket-system")] = None,
    ticket_number: Annotated[str | None, typer.Option("--ticket-number")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate only.")] = False,
) -> None:
    """Activate USER's eligible TARGET, now."""
    ticket = None
    if ticket_system is not None or ticket_number is not None:
        ticket = Ticket(ticket_system or "", ticket_number or "")
    with runtime() as rt:
        written = requests.submit(
            rt,
            actor=_person(rt, user),
            action=RequestAction.SELF_ACTIVATE,
            kind=AssignmentKind.ACTIVE,
            target=resolve.resolve_target(rt, target, scope),
            schedule=Schedule(duration=parse_duration_option(duration)),
            justification=justification,
            ticket=ticket,
            dry_run=dry_run,
        )
        _report(rt, written)


def deactivate(user: User, target: TargetArg, scope: Scope = "/") -> None:
    """End USER's activation of TARGET now."""
    with runtime() as rt:
        written = requests.submit(
            rt,
            actor=_person(rt, user),
            action=RequestAction.SELF_DEACTIVATE,
            kind=AssignmentKind.ACTIVE,
            target=resolve.resolve_target(rt, target, scope),
        )
        _report(rt, written)


def list_requests(
    mine: Annotated[str | None, typer.Option("--mine", help="USER's own requests.")] = None,
    to_approve: Annotated[
        str | None, typer.Option("--to-approve", help="Requests USER may decide now.")
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Every request.")] = False,
) -> None:
    """List requests, newest first."""
    chosen = one_of(
        "filter",
        {"--mine": mine is not None, "--to-approve": to_approve is not None, "--all": every},
        required=True,
    )
    with runtime() as rt:
        if chosen == "--all":
            found = requests.list_requests(rt, actor=Actor.operator("cli"))
        else:
            name = mine if chosen == "--mine" else to_approve
            assert name is not None
            found = requests.list_requests(
                rt,
                actor=_person(rt, name),
                mine=chosen == "--mine",
                to_approve=chosen == "--to-approve",
            )
        labels = resolve.labels(
            rt,
            {v.request.principal.id for v in found} | {v.request.target.object_id for v in found},
        )
        rows = table("requests", "id", "action", "principal", "target", "requested", "status")
        for view in found:
            r = view.request
            rows.add_row(
                r.id,
                r.action.value,
                labels.get(r.principal.id, str(r.principal)),
                target_label(r.target, labels),
                instant(r.requested_at),
                r.status.value,
            )
        show(rows)


def approve(request_id: RequestId, who: As, justification: Justification = None) -> None:
    """Approve a pending request as the user named by --as."""
    with runtime() as rt:
        written = approvals.approve(
            rt, actor=_person(rt, who), request_id=request_id, justification=justification
        )
        _report(rt, written)


def deny(request_id: RequestId, who: As, justification: Justification = None) -> None:
    """Deny a pending request as the user named by --as."""
    with runtime() as rt:
        written = approvals.deny(
            rt, actor=_person(rt, who), request_id=request_id, justification=justification
        )
        _report(rt, written)


def cancel(
    request_id: RequestId,
    who: As,
    reason: Annotated[str | None, typer.Option("--reason", help="Why.")] = None,
) -> None:
    """Cancel a request that has not started, as its requester (or an approver admin)."""
    with runtime() as rt:
        written = requests.cancel(rt, actor=_person(rt, who), request_id=request_id, reason=reason)
        _report(rt, written)


for _command in (activate, deactivate, list_requests, approve, deny, cancel):
    if _command.__doc__:
        _command.__doc__ += IMPERSONATES
