"""``pimlico audit``: verify the hash chain, list events, export them for safekeeping."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from pimlico.cli._common import (
    ACTOR,
    ANSWER_NO,
    command,
    fail_with,
    instant,
    parse_instant,
    runtime,
    say,
    show,
    table,
)
from pimlico.services import audit, resolve

app = typer.Typer(help="The audit log: verify, list, export.", no_args_is_help=True)

Since = Annotated[str | None, typer.Option("--since", help="RFC 3339; events at or after it.")]
Until = Annotated[str | None, typer.Option("--until", help="RFC 3339; events before it.")]
By = Annotated[
    str | None, typer.Option("--actor", help="Who acted, as logged (system:cli, an id).")
]


@command(app, "verify")
def verify() -> None:
    """Check the whole hash chain. Exit 0 if intact, 1 if broken."""
    with runtime() as rt:
        result = audit.verify_log(rt, actor=ACTOR)
    if result.broken is None:
        say(f"audit chain intact: {result.events} events")
        return
    details = ", ".join(f"{k}={v}" for k, v in sorted(result.broken.details.items()))
    say(
        f"audit chain BROKEN at event {result.broken.sequence}: {result.broken.reason}"
        + (f" ({details})" if details else "")
    )
    raise typer.Exit(ANSWER_NO)


@command(app, "list")
def list_events(
    limit: Annotated[int, typer.Option("--limit", help="At most this many events.")] = 50,
    after: Annotated[
        int | None, typer.Option("--after", help="Only events after this sequence (a cursor).")
    ] = None,
    by: By = None,
    action: Annotated[str | None, typer.Option("--action", help="Such as user.create.")] = None,
    target_type: Annotated[str | None, typer.Option("--target-type")] = None,
    target_id: Annotated[str | None, typer.Option("--target-id")] = None,
    since: Since = None,
    until: Until = None,
) -> None:
    """List audit events, oldest first."""
    with runtime() as rt:
        events = audit.list_events(
            rt,
            actor=ACTOR,
            by=by,
            action=action,
            target_type=target_type,
            target_id=target_id,
            since=parse_instant(since, "since"),
            until=parse_instant(until, "until"),
            limit=limit,
            after_sequence=after,
        )
        labels = resolve.labels(rt, {e.target_id for e in events} | {e.actor or "" for e in events})
    rows = table("audit events", "seq", "rev", "at", "actor", "action", "target", "reason")
    for event in events:
        rows.add_row(
            str(event.sequence),
            str(event.revision),
            instant(event.occurred_at),
            labels.get(event.actor or "", event.actor or ""),
            event.action,
            labels.get(event.target_id, f"{event.target_type}:{event.target_id}"),
            event.reason or "",
        )
    show(rows)


@command(app, "export")
def export(
    format: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
    since: Since = None,
    until: Until = None,
    by: By = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (default: stdout).")
    ] = None,
) -> None:
    """Export every matching event, hashes included, so the export can be re-verified."""
    chosen = audit.export_format(format)
    start, end = parse_instant(since, "since"), parse_instant(until, "until")
    with runtime() as rt:
        if output is None:
            audit.export_log(
                rt, sys.stdout, actor=ACTOR, format=chosen, since=start, until=end, by=by
            )
            return
        try:
            # newline="": the csv module writes its own line ends.
            with output.open("w", encoding="utf-8", newline="") as out:
                count = audit.export_log(
                    rt, out, actor=ACTOR, format=chosen, since=start, until=end, by=by
                )
        except OSError as error:
            fail_with("FileError", f"cannot write {output}: {error.strerror or error}")
    say(f"exported {count} events to {output}")
