"""``pimlico assignment``: administrators grant, change, end, extend and renew assignments.

Each change is stored as an administrator's request (``admin_assign``, ``admin_update``, …)
and prints its assignment, the request's id and status, and the revision. Every change takes
a ticket, an idempotency key (the same key again answers the first request, changing
nothing) and ``--dry-run`` (every check made, nothing written).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from pimlico.cli._common import (
    ACTOR,
    command,
    done,
    instant,
    one_of,
    parse_duration_option,
    parse_instant,
    parse_kind,
    runtime,
    say,
    schedule_of,
    show,
    table,
    target_label,
    ticket_of,
)
from pimlico.domain.model import Assignment, AssignmentKind, PrincipalRef, Target
from pimlico.domain.requests import RequestAction, Schedule
from pimlico.services import assignments, resolve
from pimlico.services.assignment_changes import Asked
from pimlico.services.assignments import AdminOutcome
from pimlico.services.runtime import Pimlico, Written

app = typer.Typer(
    help="Assignments: who holds which role or group, eligibly or actively, and until when.",
    no_args_is_help=True,
)

AssignmentId = Annotated[str, typer.Argument(help="The assignment's id.", show_default=False)]
End = Annotated[str | None, typer.Option("--end", help="RFC 3339 instant it ends at.")]
Duration = Annotated[
    str | None, typer.Option("--duration", help="ISO 8601 duration, such as PT8H or P30D.")
]
Permanent = Annotated[bool, typer.Option("--permanent", help="No end (if the settings allow).")]
Start = Annotated[str | None, typer.Option("--start", help="RFC 3339 instant (default: now).")]
Justification = Annotated[
    str | None, typer.Option("--justification", help="Why: kept in the audit log.")
]
TicketSystem = Annotated[str | None, typer.Option("--ticket-system", help="Such as Jira.")]
TicketNumber = Annotated[str | None, typer.Option("--ticket-number", help="Such as OPS-42.")]
IdempotencyKey = Annotated[
    str | None,
    typer.Option("--idempotency-key", help="Asking again with the same key answers the first."),
]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Check only; change nothing.")]


def _status(assignment: Assignment, now: datetime) -> str:
    if assignment.in_force(now):
        return "in force"
    if assignment.is_current_or_future(now):
        return "scheduled"
    return "ended" if assignment.ended_at is not None else "expired"


def assignments_table(rt: Pimlico, found: Sequence[Assignment], title: str) -> Table:
    """A table of assignments with names, not only ids."""
    labels = resolve.labels(
        rt, {a.principal.id for a in found} | {a.target.object_id for a in found}
    )
    now = rt.clock.now()
    rows = table(title, "id", "kind", "principal", "target", "start", "end", "status")
    for a in found:
        rows.add_row(
            a.id,
            a.kind.value,
            labels.get(a.principal.id, str(a.principal)),
            target_label(a.target, labels),
            instant(a.start),
            instant(a.effective_end, "permanent"),
            _status(a, now),
        )
    return rows


def _describe(rt: Pimlico, assignment: Assignment, *, with_id: bool = True) -> str:
    labels = resolve.labels(rt, [assignment.principal.id, assignment.target.object_id])
    who = labels.get(assignment.principal.id, str(assignment.principal))
    end = instant(assignment.effective_end, "forever")
    window = f"from {instant(assignment.start)} until {end}"
    held = f" (assignment {assignment.id})" if with_id else ""
    return (
        f"{assignment.kind.value} {target_label(assignment.target, labels)} "
        f"for {who} {window}{held}"
    )


_DRY_VERBS = {
    RequestAction.ADMIN_ASSIGN: "would assign",
    RequestAction.ADMIN_UPDATE: "would update",
    RequestAction.ADMIN_REMOVE: "would end",
    RequestAction.ADMIN_EXTEND: "would extend",
    RequestAction.ADMIN_RENEW: "would renew as",
}
_CREATES = (RequestAction.ADMIN_ASSIGN, RequestAction.ADMIN_RENEW)


def _report(rt: Pimlico, verb: str, action: RequestAction, written: Written[AdminOutcome]) -> None:
    """One line: the assignment after the change, its request and the revision — or, for a
    dry run, what would have happened (the id of an assignment a dry run would create is
    left out: it was never stored)."""
    outcome = written.value
    request = outcome.request.request
    if outcome.request.dry_run:
        described = _describe(rt, outcome.assignment, with_id=action not in _CREATES)
        say(
            f"dry run, nothing written: {_DRY_VERBS[action]} {described}; "
            f"the {action.value} request would be {request.status.value}"
        )
        return
    described = _describe(rt, outcome.assignment)
    done(f"{verb} {described}; request {request.id}: {request.status.value}", written.revision)


def _change(
    rt: Pimlico,
    action: RequestAction,
    *,
    kind: AssignmentKind | None = None,
    principal: PrincipalRef | None = None,
    target: Target | None = None,
    assignment_id: str | None = None,
    schedule: Schedule | None = None,
    asked: Asked,
) -> Written[AdminOutcome]:
    return assignments.request_change(
        rt,
        actor=ACTOR,
        action=action,
        kind=kind,
        principal=principal,
        target=target,
        assignment_id=assignment_id,
        schedule=schedule,
        asked=asked,
    )


@command(app, "add")
def add(
    principal: Annotated[str, typer.Argument(help="alex, user:alex, group:NAME or sa:NAME.")],
    target: Annotated[str, typer.Argument(help="role:NAME, member:GROUP or owner:GROUP.")],
    eligible: Annotated[bool, typer.Option("--eligible", help="May be activated.")] = False,
    active: Annotated[bool, typer.Option("--active", help="In force: grants access.")] = False,
    scope: Annotated[str, typer.Option("--scope", help="Where a role applies.")] = "/",
    start: Start = None,
    end: End = None,
    duration: Duration = None,
    permanent: Permanent = False,
    justification: Justification = None,
    ticket_system: TicketSystem = None,
    ticket_number: TicketNumber = None,
    idempotency_key: IdempotencyKey = None,
    dry_run: DryRun = False,
) -> None:
    """Assign TARGET to PRINCIPAL, eligibly or actively, for a window."""
    kind = one_of("kind", {"--eligible": eligible, "--active": active}, required=True)
    one_of(
        "end",
        {"--end": end is not None, "--duration": duration is not None, "--permanent": permanent},
        required=True,
    )
    schedule = schedule_of(
        start=parse_instant(start, "start"),
        end=parse_instant(end, "end"),
        duration=parse_duration_option(duration),
        permanent=permanent,
    )
    asked = Asked(justification, ticket_of(ticket_system, ticket_number), idempotency_key, dry_run)
    with runtime() as rt:
        written = _change(
            rt,
            RequestAction.ADMIN_ASSIGN,
            kind=AssignmentKind.ELIGIBLE if kind == "--eligible" else AssignmentKind.ACTIVE,
            principal=resolve.resolve_principal(rt, principal),
            target=resolve.resolve_target(rt, target, scope),
            schedule=schedule,
            asked=asked,
        )
        _report(rt, "assigned", RequestAction.ADMIN_ASSIGN, written)


@command(app, "list")
def list_(
    principal: Annotated[str | None, typer.Option("--principal", help="Held by.")] = None,
    target: Annotated[str | None, typer.Option("--target", help="role:, member:, owner:.")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="eligible or active.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Ended and expired ones too.")] = False,
) -> None:
    """List current and scheduled assignments (newest first)."""
    with runtime() as rt:
        found = assignments.list_assignments(
            rt,
            actor=ACTOR,
            principal=None if principal is None else resolve.resolve_principal(rt, principal),
            target=None if target is None else resolve.resolve_target(rt, target),
            kind=parse_kind(kind),
            include_ended=all_,
        )
        show(assignments_table(rt, found, "assignments"))


@command(app, "update")
def update(
    assignment_id: AssignmentId,
    start: Start = None,
    end: End = None,
    duration: Annotated[
        str | None, typer.Option("--duration", help="ISO 8601, counted from the start.")
    ] = None,
    permanent: Permanent = False,
    justification: Justification = None,
    ticket_system: TicketSystem = None,
    ticket_number: TicketNumber = None,
    idempotency_key: IdempotencyKey = None,
    dry_run: DryRun = False,
) -> None:
    """Change the window of a current assignment (what is not given stays)."""
    chosen = one_of(
        "end",
        {"--end": end is not None, "--duration": duration is not None, "--permanent": permanent},
        required=False,
    )
    begin = parse_instant(start, "start")
    ticket = ticket_of(ticket_system, ticket_number)
    with runtime() as rt:
        if chosen is None:
            # An admin_update request states its whole window; "keep the end" is not one, and
            # reading the end here to restate it could undo a concurrent change. The use case
            # keeps it under its lock instead, and stores the request without answering it.
            kept = assignments.update_assignment(
                rt,
                actor=ACTOR,
                assignment_id=assignment_id,
                start=begin,
                justification=justification,
                ticket=ticket,
                idempotency_key=idempotency_key,
                dry_run=dry_run,
            )
            if dry_run:
                say(f"dry run, nothing written: would update {_describe(rt, kept.value)}")
            else:
                done(f"updated {_describe(rt, kept.value)}", kept.revision)
            return
        written = _change(
            rt,
            RequestAction.ADMIN_UPDATE,
            assignment_id=assignment_id,
            schedule=schedule_of(
                start=begin,
                end=parse_instant(end, "end"),
                duration=parse_duration_option(duration),
                permanent=permanent,
            ),
            asked=Asked(justification, ticket, idempotency_key, dry_run),
        )
        _report(rt, "updated", RequestAction.ADMIN_UPDATE, written)


@command(app, "remove")
def remove(
    assignment_id: AssignmentId,
    reason: Annotated[str | None, typer.Option("--reason", help="Why: kept in the audit log.")] = (
        None
    ),
    ticket_system: TicketSystem = None,
    ticket_number: TicketNumber = None,
    idempotency_key: IdempotencyKey = None,
    dry_run: DryRun = False,
) -> None:
    """End an assignment now (access stops at once); the record stays."""
    with runtime() as rt:
        written = _change(
            rt,
            RequestAction.ADMIN_REMOVE,
            assignment_id=assignment_id,
            asked=Asked(reason, ticket_of(ticket_system, ticket_number), idempotency_key, dry_run),
        )
        _report(rt, "ended", RequestAction.ADMIN_REMOVE, written)


def _prolong(
    action: RequestAction,
    verb: str,
    *,
    assignment_id: str,
    end: str | None,
    duration: str | None,
    justification: str | None,
    ticket_system: str | None,
    ticket_number: str | None,
    idempotency_key: str | None,
    dry_run: bool,
) -> None:
    """Extend or renew: a new end (a duration counts from now)."""
    one_of("end", {"--end": end is not None, "--duration": duration is not None}, required=True)
    schedule = schedule_of(end=parse_instant(end, "end"), duration=parse_duration_option(duration))
    ticket = ticket_of(ticket_system, ticket_number)
    with runtime() as rt:
        written = _change(
            rt,
            action,
            assignment_id=assignment_id,
            schedule=schedule,
            asked=Asked(justification, ticket, idempotency_key, dry_run),
        )
        _report(rt, verb, action, written)


@command(app, "extend")
def extend(
    assignment_id: AssignmentId,
    end: End = None,
    duration: Duration = None,
    justification: Justification = None,
    ticket_system: TicketSystem = None,
    ticket_number: TicketNumber = None,
    idempotency_key: IdempotencyKey = None,
    dry_run: DryRun = False,
) -> None:
    """Move a current assignment's end later (a duration counts from now)."""
    _prolong(
        RequestAction.ADMIN_EXTEND,
        "extended",
        assignment_id=assignment_id,
        end=end,
        duration=duration,
        justification=justification,
        ticket_system=ticket_system,
        ticket_number=ticket_number,
        idempotency_key=idempotency_key,
        dry_run=dry_run,
    )


@command(app, "renew")
def renew(
    assignment_id: AssignmentId,
    end: End = None,
    duration: Duration = None,
    justification: Justification = None,
    ticket_system: TicketSystem = None,
    ticket_number: TicketNumber = None,
    idempotency_key: IdempotencyKey = None,
    dry_run: DryRun = False,
) -> None:
    """Grant an expired assignment again from now, as a new assignment."""
    _prolong(
        RequestAction.ADMIN_RENEW,
        "renewed as",
        assignment_id=assignment_id,
        end=end,
        duration=duration,
        justification=justification,
        ticket_system=ticket_system,
        ticket_number=ticket_number,
        idempotency_key=idempotency_key,
        dry_run=dry_run,
    )
