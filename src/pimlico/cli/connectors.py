"""``pimlico connectors …`` and ``pimlico reconcile``: configure provisioning, see its state.

Thin commands over ``services.connectors``, ``services.provisioning`` and ``jobs.reconcile``.
A connector's secret is never taken on the command line (it would sit in the shell history
and in ``ps``): ``--secret-file`` or ``--secret-env`` name where to read it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer

from pimlico.cli._common import ACTOR, command, done, instant, parse_json, runtime, say, show, table
from pimlico.errors import FieldError, InvalidInput
from pimlico.jobs import reconcile as reconciling
from pimlico.services import connector_mappings, connectors, provisioning, resolve

app = typer.Typer(
    help="Connectors: provision targets into downstream systems.", no_args_is_help=True
)

Name = Annotated[str, typer.Argument(help="The connector's name.")]
Reason = Annotated[str | None, typer.Option("--reason", help="Why (kept in the audit log).")]


def _config(text: str) -> Mapping[str, object]:
    value = parse_json(text, "config")
    if not isinstance(value, dict):
        raise InvalidInput(
            "invalid config", [FieldError("config", "JsonObject", "must be a JSON object")]
        )
    return value


def _secret(path: Path | None, env: str | None) -> str | None:
    if path is not None and env is not None:
        raise InvalidInput("give --secret-file or --secret-env, not both")
    if path is not None:
        try:
            return path.read_text().strip() or None
        except OSError as error:
            raise InvalidInput(
                f"cannot read the secret file {path}: {error.strerror}",
                [FieldError("secret_file", "Readable", str(error.strerror))],
            ) from None
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise InvalidInput(
                f"environment variable {env} is not set",
                [FieldError("secret_env", "Set", f"{env} is empty or not set")],
            )
        return value
    return None


SecretFile = Annotated[
    Path | None, typer.Option("--secret-file", help="Read the secret (a password) from this file.")
]
SecretEnv = Annotated[
    str | None, typer.Option("--secret-env", help="Read the secret from this environment variable.")
]


@command(app, "add")
def add(
    name: Name,
    kind: Annotated[str, typer.Option("--kind", help="ldap, postgres, scim or webhook.")],
    config: Annotated[str, typer.Option("--config", help="The configuration, a JSON object.")],
    secret_file: SecretFile = None,
    secret_env: SecretEnv = None,
    report_only: Annotated[
        bool, typer.Option("--report-only", help="Reconcile only reports differences.")
    ] = False,
    disabled: Annotated[bool, typer.Option("--disabled", help="Add it disabled.")] = False,
) -> None:
    """Add a connector."""
    mode = connectors.REPORT_ONLY if report_only else connectors.AUTHORITATIVE
    with runtime() as rt:
        written = connectors.add_connector(
            rt,
            actor=ACTOR,
            name=name,
            kind=kind,
            config=_config(config),
            secret=_secret(secret_file, secret_env),
            mode=mode,
            enabled=not disabled,
        )
    done(f"connector {written.value.name} ({written.value.kind}) added", written.revision)


@command(app, "update")
def update(
    name: Name,
    config: Annotated[str | None, typer.Option("--config", help="A new configuration.")] = None,
    secret_file: SecretFile = None,
    secret_env: SecretEnv = None,
    mode: Annotated[
        str | None, typer.Option("--mode", help="authoritative or report_only.")
    ] = None,
    enable: Annotated[bool, typer.Option("--enable", help="Enable it again.")] = False,
    reason: Reason = None,
) -> None:
    """Change a connector's configuration, secret or mode, or enable it again."""
    with runtime() as rt:
        written = connectors.update_connector(
            rt,
            actor=ACTOR,
            name=name,
            config=None if config is None else _config(config),
            secret=_secret(secret_file, secret_env),
            mode=mode,
            enabled=True if enable else None,
            reason=reason,
        )
    done(f"connector {written.value.name} updated", written.revision)


@command(app, "disable")
def disable(name: Name, reason: Reason = None) -> None:
    """Stop provisioning into a connector (its configuration stays)."""
    with runtime() as rt:
        written = connectors.disable_connector(rt, actor=ACTOR, name=name, reason=reason)
    done(f"connector {written.value.name} disabled", written.revision)


@command(app, "list")
def list_connectors() -> None:
    """Every connector and its mappings (never a secret)."""
    with runtime() as rt:
        found = connectors.list_connectors(rt, actor=ACTOR)
        mappings = connector_mappings.list_mappings(rt, actor=ACTOR)
        names = resolve.labels(rt, {m.target.object_id for m in mappings})
    listing = table("Connectors", "name", "kind", "mode", "enabled", "secret", "config")
    for c in found:
        secret = "set" if c.has_secret else "—"
        enabled = "yes" if c.enabled else "no"
        listing.add_row(c.name, c.kind, c.mode, enabled, secret, str(c.config))
    mapped = table("Mappings", "id", "connector", "target", "downstream object")
    for m in mappings:
        label = names.get(m.target.object_id, m.target.object_id)
        target = f"{m.target.type.value} {label}" + (
            f" at {m.target.scope}" if not m.target.is_group else ""
        )
        mapped.add_row(m.id, m.connector, target, m.downstream_object)
    show(listing, mapped)


@command(app, "map")
def map_target(
    name: Name,
    target: Annotated[
        str, typer.Option("--target", help="role:NAME, member:GROUP or owner:GROUP.")
    ],
    obj: Annotated[str, typer.Option("--object", help="The downstream object it drives.")],
    scope: Annotated[str, typer.Option("--scope", help="For a role: the scope.")] = "/",
) -> None:
    """Make a Pimlico target drive a downstream object of a connector."""
    with runtime() as rt:
        written = connector_mappings.add_mapping(
            rt,
            actor=ACTOR,
            connector=name,
            target=resolve.resolve_target(rt, target, scope),
            downstream_object=obj,
        )
    done(f"mapping {written.value.id}: {target} → {obj} in {name}", written.revision)


@command(app, "unmap")
def unmap(
    mapping_id: Annotated[str, typer.Argument(help="The mapping's id (see `connectors list`).")],
    reason: Reason = None,
) -> None:
    """End a mapping: its object is no longer managed (its members stay as they are)."""
    with runtime() as rt:
        written = connector_mappings.end_mapping(
            rt, actor=ACTOR, mapping_id=mapping_id, reason=reason
        )
    done(f"mapping {mapping_id} ended", written.revision)


@command(app, "status")
def status(
    name: Annotated[str | None, typer.Argument(help="Only this connector.")] = None,
    only: Annotated[
        str | None, typer.Option("--status", help="pending, provisioned, failed or revoked.")
    ] = None,
    assignment: Annotated[
        str | None,
        typer.Option("--assignment", help="Only where this assignment is provisioned."),
    ] = None,
) -> None:
    """Provisioning states, failures first, with their downstream errors."""
    with runtime() as rt:
        if assignment is None:
            found = provisioning.states(rt, actor=ACTOR, connector=name, status=only)
        else:
            found = [
                s
                for s in provisioning.states_of_assignment(
                    rt, actor=ACTOR, assignment_id=assignment
                )
                if name in (None, s.connector) and only in (None, s.status)
            ]
        names = resolve.labels(rt, {s.principal_id for s in found})
    listing = table(
        "Provisioning",
        "connector",
        "object",
        "principal",
        "wanted",
        "status",
        "attempts",
        "updated",
        "error",
    )
    for s in found:
        listing.add_row(
            s.connector,
            s.downstream_object,
            names.get(s.principal_id, s.principal_id),
            "present" if s.present else "absent",
            s.status,
            str(s.attempts),
            instant(s.updated_at),
            s.last_error or "",
        )
    show(listing)
    failed = sum(1 for s in found if s.status == provisioning.FAILED)
    if failed:
        say(f"{failed} failed")


def reconcile(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would change; change nothing.")
    ] = False,
    connector: Annotated[
        str | None, typer.Option("--connector", help="Only this connector.")
    ] = None,
) -> None:
    """Make every managed downstream object match what is in force now."""
    with runtime() as rt:
        found = reconciling.reconcile(rt, actor=ACTOR, dry_run=dry_run, connector=connector)
    for c in found:
        if c.action in ("grant", "revoke"):
            verb = (
                {"grant": "granted", "revoke": "revoked"}[c.action]
                if c.applied
                else (
                    f"would {c.action}" if dry_run else f"drift (not corrected): would {c.action}"
                )
            )
            say(f"{c.connector}: {c.downstream_object}: {verb} {c.identity}")
        else:
            say(f"{c.connector}: {c.downstream_object}: {c.action}: {c.detail}")
    changes = sum(1 for c in found if c.action in ("grant", "revoke"))
    say(f"{'dry run: ' if dry_run else ''}{changes} difference(s) found")
