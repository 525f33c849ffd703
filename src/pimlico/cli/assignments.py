"""``pimlico assignment``: administrators grant, change, end, extend and renew assignments."""

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
    show,
    table,
    target_label,
)
from pimlico.domain.model import Assignment, AssignmentKind
from pimlico.services import assignments, resolve
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


def _describe(rt: Pimlico, assignment: Assignment) -> str:
    labels = resolve.labels(rt, [assignment.principal.id, assignment.target.object_id])
    who = labels.get(assignment.principal.id, str(assignment.principal))
    end = instant(assignment.effective_end, "forever")
    window = f"from {instant(assignment.start)} until {end}"
    return (
        f"{assignment.kind.value} {target_label(assignment.target, labels)} "
        f"for {who} {window} (assignment {assignment.id})"
    )


def _report(rt: Pimlico, verb: str, written: Written[Assignment]) -> str:
    return f"{verb} {_describe(rt, written.value)}"


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
) -> None:
    """Assign TARGET to PRINCIPAL, eligibly or actively, for a window."""
    kind = one_of("kind", {"--eligible": eligible, "--active": active}, required=True)
    one_of(
        "end",
        {"--end": end is not None, "--duration": duration is not None, "--permanent": permanent},
        required=True,
    )
    with runtime() as rt:
        written = assignments.assign(
            rt,
            actor=ACTOR,
            kind=AssignmentKind.ELIGIBLE if kind == "--eligible" else AssignmentKind.ACTIVE,
            principal=resolve.resolve_principal(rt, principal),
            target=resolve.resolve_target(rt, target, scope),
            start=parse_instant(start, "start"),
            end=parse_instant(end, "end"),
            duration=parse_duration_option(duration),
            justification=justification,
        )
        done(_report(rt, "assigned", written), written.revision)


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
) -> None:
    """Change the window of a current assignment (what is not given stays)."""
    one_of(
        "end",
        {"--end": end is not None, "--duration": duration is not None, "--permanent": permanent},
        required=False,
    )
    with runtime() as rt:
        written = assignments.update_assignment(
            rt,
            actor=ACTOR,
            assignment_id=assignment_id,
            start=parse_instant(start, "start"),
            end=parse_instant(end, "end"),
            duration=parse_duration_option(duration),
            permanent=permanent,
            justification=justification,
        )
        done(_report(rt, "updated", written), written.revision)


@command(app, "remove")
def remove(
    assignment_id: AssignmentId,
    reason: Annotated[str | None, typer.Option("--reason", help="Why: kept in the audit log.")] = (
        None
    ),
) -> None:
    """End an assignment now (access stops at once); the record stays."""
    with runtime() as rt:
        written = assignments.remove_assignment(
            rt, actor=ACTOR, assignment_id=assignment_id, reason=reason
        )
        done(_report(rt, "ended", written), written.revision)


def _new_end(end: str | None, duration: str | None) -> None:
    one_of("end", {"--end": end is not None, "--duration": duration is not None}, required=True)


@command(app, "extend")
def extend(
    assignment_id: AssignmentId,
    end: End = None,
    duration: Duration = None,
    justification: Justification = None,
) -> None:
    """Move a current assignment's end later (a duration counts from now)."""
    _new_end(end, duration)
    with runtime() as rt:
        written = assignments.extend_assignment(
            rt,
            actor=ACTOR,
            assignment_id=assignment_id,
            end=parse_instant(end, "end"),
            duration=parse_duration_option(duration),
            justification=justification,
        )
        done(_report(rt, "extended", written), written.revision)


@command(app, "renew")
def renew(
    assignment_id: AssignmentId,
    end: End = None,
    duration: Duration = None,
    justification: Justification = None,
) -> None:
    """Grant an expired assignment again from now, as a new assignment."""
    _new_end(end, duration)
    with runtime() as rt:
        written = assignments.renew_assignment(
            rt,
            actor=ACTOR,
            assignment_id=assignment_id,
            end=parse_instant(end, "end"),
            duration=parse_duration_option(duration),
            justification=justification,
        )
        done(_report(rt, "renewed as", written), written.revision)
