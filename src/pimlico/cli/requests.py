"""``pimlico activate|deactivate|extend|renew|requests|approve|deny|cancel``: self-service
and approvals.

These commands act on behalf of the user they name (``Actor.principal``), not as the
operator: self-service is about a person, and approvals are refused to the requester. The
local operator can therefore impersonate any user here — as it could by editing the store.
``requests --all`` (the default) is the operator's view of every request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from pimlico.cli._common import (
    ACTOR,
    instant,
    one_of,
    parse_choice,
    parse_count,
    parse_duration_option,
    parse_instant,
    runtime,
    say,
    schedule_of,
    show,
    table,
    target_label,
    ticket_of,
)
from pimlico.domain.model import AssignmentKind, PrincipalType
from pimlico.domain.requests import RequestAction, RequestStatus, Schedule
from pimlico.errors import FieldError, InvalidInput
from pimlico.services import approvals, requests, resolve
from pimlico.services.request_records import RequestView
from pimlico.services.requests import RequestFilter
from pimlico.services.runtime import Actor, Pimlico, Written

IMPERSONATES = " The local operator acts on behalf of the named user."
DEFAULT_APPROVERS = "holders of pim.requests.approve"
"""Who decides a stage that names no approvers (as the default extend/renew stage)."""

User = Annotated[str, typer.Argument(help="The user who asks (alex or user:alex).")]
TargetArg = Annotated[str, typer.Argument(help="role:NAME or member:GROUP.")]
Scope = Annotated[str, typer.Option("--scope", help="Where the role applies.")]
RequestId = Annotated[str, typer.Argument(help="The request's id.", show_default=False)]
As = Annotated[str, typer.Option("--as", help="The user who decides.", show_default=False)]
Justification = Annotated[str | None, typer.Option("--justification", help="Why.")]
TicketSystem = Annotated[str | None, typer.Option("--ticket-system", help="Such as Jira.")]
TicketNumber = Annotated[str | None, typer.Option("--ticket-number", help="Such as OPS-42.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Check only; write nothing.")]
IdempotencyKey = Annotated[
    str | None,
    typer.Option("--idempotency-key", help="Asking again with the same key answers the first."),
]
Eligible = Annotated[
    bool, typer.Option("--eligible", help="The eligible assignment (default: the active one).")
]
NewEnd = Annotated[str | None, typer.Option("--end", help="RFC 3339 instant it should end at.")]
NewDuration = Annotated[
    str | None, typer.Option("--duration", help="ISO 8601 duration from now, such as P30D.")
]


def _person(rt: Pimlico, text: str) -> Actor:
    ref = resolve.resolve_principal(rt, text)
    if ref.type is not PrincipalType.USER:
        raise InvalidInput(
            "requests are made by users", [FieldError("user", "UserRequired", f"{text} is not")]
        )
    return Actor.principal(ref.id)


def _awaiting(view: RequestView, labels: dict[str, str]) -> str:
    """`` (stage N of M: who may approve)`` for a request pending approval, else nothing.
    Escalation approvers are not named (they join only later)."""
    number = view.awaiting
    if number is None:
        return ""
    stage = view.stages[number]
    who = ", ".join(labels.get(a.id, f"{a.type.value}:{a.id}") for a in stage.approvers)
    quorum = f"{stage.quorum} of " if stage.quorum > 1 else ""
    return f" (stage {number + 1} of {len(view.stages)}: {quorum}{who or DEFAULT_APPROVERS})"


def _line(rt: Pimlico, view: RequestView) -> str:
    r = view.request
    approvers = {a.id for stage in view.stages for a in stage.approvers}
    labels = resolve.labels(rt, {r.principal.id, r.target.object_id} | approvers)
    who = labels.get(r.principal.id, str(r.principal))
    window = ""
    if view.window is not None:
        window = f" from {instant(view.window.start)} until {instant(view.window.end, 'forever')}"
    prolongs = r.action in (RequestAction.SELF_EXTEND, RequestAction.SELF_RENEW)
    kind = f" {r.kind.value}" if prolongs else ""
    # A dry run's request was never stored: its id would name nothing.
    asked = "would ask" if view.dry_run else f"request {r.id}:"
    return (
        f"{asked} {r.action.value}{kind} {target_label(r.target, labels)} for {who}"
        f"{window}: {r.status.value}{_awaiting(view, labels)}"
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
    ticket_system: TicketSystem = None,
    ticket_number: TicketNumber = None,
    dry_run: DryRun = False,
    idempotency_key: IdempotencyKey = None,
) -> None:
    """Activate USER's eligible TARGET, now."""
    with runtime() as rt:
        written = requests.submit(
            rt,
            actor=_person(rt, user),
            action=RequestAction.SELF_ACTIVATE,
            kind=AssignmentKind.ACTIVE,
            target=resolve.resolve_target(rt, target, scope),
            schedule=Schedule(duration=parse_duration_option(duration)),
            justification=justification,
            ticket=ticket_of(ticket_system, ticket_number),
            idempotency_key=idempotency_key,
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


def _prolonging(action: RequestAction, doc: str) -> Callable[..., None]:
    """The ``extend`` or ``renew`` command: the same options, one action."""

    def command(
        user: User,
        target: TargetArg,
        scope: Scope = "/",
        eligible: Eligible = False,
        end: NewEnd = None,
        duration: NewDuration = None,
        justification: Justification = None,
        ticket_system: TicketSystem = None,
        ticket_number: TicketNumber = None,
        dry_run: DryRun = False,
        idempotency_key: IdempotencyKey = None,
    ) -> None:
        one_of("end", {"--end": end is not None, "--duration": duration is not None}, required=True)
        when = schedule_of(end=parse_instant(end, "end"), duration=parse_duration_option(duration))
        with runtime() as rt:
            written = requests.submit(
                rt,
                actor=_person(rt, user),
                action=action,
                kind=AssignmentKind.ELIGIBLE if eligible else AssignmentKind.ACTIVE,
                target=resolve.resolve_target(rt, target, scope),
                schedule=when,
                justification=justification,
                ticket=ticket_of(ticket_system, ticket_number),
                idempotency_key=idempotency_key,
                dry_run=dry_run,
            )
            _report(rt, written)

    command.__doc__ = doc
    command.__name__ = action.value.removeprefix("self_")
    return command


extend = _prolonging(
    RequestAction.SELF_EXTEND,
    """Ask to extend USER's own assignment of TARGET that ends within 14 days.

    It waits for an approver (pim.requests.approve, or the stages the settings name).""",
)
renew = _prolonging(
    RequestAction.SELF_RENEW,
    """Ask to renew USER's own assignment of TARGET that expired (within 30 days).

    It waits for an approver (pim.requests.approve, or the stages the settings name).""",
)


def _requested_by(rt: Pimlico, text: str | None) -> str | None:
    """A user's id, or the operator's name as recorded (``system:cli``) for the
    administrators' requests made with this CLI."""
    if text is None or text.strip().startswith("system:"):
        return None if text is None else text.strip()
    return _person(rt, text).name


def _filter(
    rt: Pimlico,
    status: str | None,
    action: str | None,
    target: str | None,
    principal: str | None,
    requested_by: str | None,
    since: str | None,
    until: str | None,
) -> RequestFilter:
    chosen = None if target is None else resolve.resolve_target(rt, target)
    return RequestFilter(
        status=parse_choice(RequestStatus, status, "status"),
        action=parse_choice(RequestAction, action, "action"),
        principal=None if principal is None else resolve.resolve_principal(rt, principal),
        target_type=None if chosen is None else chosen.type,
        target_id=None if chosen is None else chosen.object_id,
        requested_by=_requested_by(rt, requested_by),
        since=parse_instant(since, "since"),
        until=parse_instant(until, "until"),
    )


def list_requests(
    mine: Annotated[str | None, typer.Option("--mine", help="USER's own requests.")] = None,
    to_approve: Annotated[
        str | None, typer.Option("--to-approve", help="Requests USER may decide now.")
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Every request (the default).")] = False,
    status: Annotated[
        str | None, typer.Option("--status", help="Such as pending_approval or provisioned.")
    ] = None,
    action: Annotated[
        str | None, typer.Option("--action", help="Such as self_activate or admin_assign.")
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", help="role:NAME (any scope) or member:GROUP.")
    ] = None,
    principal: Annotated[
        str | None, typer.Option("--principal", help="Whose assignment: alex, group:NAME.")
    ] = None,
    requested_by: Annotated[
        str | None, typer.Option("--requested-by", help="Who asked: alex, or system:cli.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Asked at or after (RFC 3339).")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="Asked before (RFC 3339).")] = None,
    limit: Annotated[
        str | None, typer.Option("--limit", help="At most N requests.", metavar="N")
    ] = None,
) -> None:
    """List requests, newest first: every one, USER's own (--mine), or those USER may decide
    now (--to-approve, on USER's behalf); each filter given narrows the list."""
    chosen = one_of(
        "filter",
        {"--mine": mine is not None, "--to-approve": to_approve is not None, "--all": every},
        required=False,
    )
    count = parse_count(limit, "limit")
    with runtime() as rt:
        where = _filter(rt, status, action, target, principal, requested_by, since, until)
        if chosen in (None, "--all"):
            found = requests.list_requests(rt, actor=ACTOR, where=where, limit=count)
        else:
            name = mine if chosen == "--mine" else to_approve
            assert name is not None
            found = requests.list_requests(
                rt,
                actor=_person(rt, name),
                mine=chosen == "--mine",
                to_approve=chosen == "--to-approve",
                where=where,
                limit=count,
            )
        labels = resolve.labels(
            rt,
            {v.request.principal.id for v in found}
            | {v.request.target.object_id for v in found}
            | {v.request.requested_by for v in found},
        )
    rows = table("requests", "id", "action", "principal", "target", "requested", "by", "status")
    for view in found:
        r = view.request
        rows.add_row(
            r.id,
            r.action.value,
            labels.get(r.principal.id, str(r.principal)),
            target_label(r.target, labels),
            instant(r.requested_at),
            labels.get(r.requested_by, r.requested_by),
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


for _command in (activate, deactivate, extend, renew, approve, deny, cancel):
    if _command.__doc__:
        _command.__doc__ += IMPERSONATES
