"""``pimlico role`` and ``pimlico settings``: roles, and the policy (role settings) of targets."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated

import typer

from pimlico.cli._common import (
    ACTOR,
    command,
    done,
    instant,
    parse_json,
    runtime,
    say,
    show,
    table,
    target_label,
    yes_no,
)
from pimlico.cli.assignments import assignments_table
from pimlico.domain.model import Target
from pimlico.domain.policy_codec import to_dict
from pimlico.errors import FieldError, InvalidInput
from pimlico.services import assignments, resolve, role_settings, roles
from pimlico.services.runtime import Pimlico

role_app = typer.Typer(help="Roles: named sets of permissions.", no_args_is_help=True)
settings_app = typer.Typer(
    help="Role settings: the activation, approval, assignment and notification rules of a "
    "target (role:NAME, member:GROUP or owner:GROUP).",
    no_args_is_help=True,
)

RoleName = Annotated[str, typer.Argument(help="A role name (or id).", show_default=False)]
Description = Annotated[str | None, typer.Option("--description", help="What it is for.")]
TargetText = Annotated[
    str, typer.Argument(help="role:NAME, member:GROUP or owner:GROUP.", show_default=False)
]
SECTIONS = ("activation", "approval", "assignment", "notifications")


# -- roles ----------------------------------------------------------------------------------


@command(role_app, "create")
def create_role(
    name: RoleName,
    permission: Annotated[
        list[str] | None,
        typer.Option("--permission", "-p", help="A permission or pattern (mail.*); repeat."),
    ] = None,
    description: Description = None,
) -> None:
    """Create a custom role."""
    with runtime() as rt:
        written = roles.create_role(
            rt,
            actor=ACTOR,
            name=name,
            permissions=list(permission or []),
            description=description or "",
        )
    role = written.value
    done(f"created role {role.name} ({role.id}): {', '.join(role.permissions)}", written.revision)


@command(role_app, "update")
def update_role(
    name: RoleName,
    permission: Annotated[
        list[str] | None,
        typer.Option("--permission", "-p", help="The new permissions, all of them; repeat."),
    ] = None,
    description: Description = None,
) -> None:
    """Change a custom role's permissions (the whole list) or description."""
    with runtime() as rt:
        role = resolve.resolve_role(rt, name)
        written = roles.update_role(
            rt, actor=ACTOR, role_id=role.id, permissions=permission, description=description
        )
    role = written.value
    done(f"updated role {role.name}: {', '.join(role.permissions)}", written.revision)


@command(role_app, "list")
def list_roles() -> None:
    """List roles, built-in ones included."""
    with runtime() as rt:
        found = roles.list_roles(rt, actor=ACTOR)
    rows = table("roles", "name", "built-in", "permissions", "description", "id")
    for role in found:
        rows.add_row(
            role.name,
            yes_no(role.built_in),
            ", ".join(role.permissions),
            role.description,
            role.id,
        )
    show(rows)


@command(role_app, "show")
def show_role(name: RoleName) -> None:
    """Show a role, its permissions and its current assignments."""
    with runtime() as rt:
        role = resolve.resolve_role(rt, name)
        held = assignments.list_assignments(rt, actor=ACTOR, target=Target.role(role.id))
        details = table(None, "", "")
        details.show_header = False
        details.add_row("name", role.name)
        details.add_row("description", role.description)
        details.add_row("built-in", yes_no(role.built_in))
        details.add_row("permissions", "\n".join(role.permissions))
        details.add_row("created", instant(role.created_at))
        details.add_row("id", role.id)
        show(details, assignments_table(rt, held, "assignments"))


# -- settings -------------------------------------------------------------------------------


def _is_ref(value: object) -> bool:
    return isinstance(value, Mapping) and set(value) == {"type", "id"}


def _flatten(value: object, path: str, labels: dict[str, str]) -> Iterator[tuple[str, str]]:
    """Dotted paths and printable values; approvers as ``user:bob`` rather than ids."""
    if isinstance(value, Mapping) and not _is_ref(value):
        for key, inner in value.items():
            yield from _flatten(inner, f"{path}.{key}" if path else str(key), labels)
    elif isinstance(value, list) and value and all(_is_ref(item) for item in value):
        refs = [item for item in value if isinstance(item, Mapping)]
        yield path, ", ".join(labels.get(str(r["id"]), f"{r['type']}:{r['id']}") for r in refs)
    elif isinstance(value, list) and any(isinstance(item, Mapping) for item in value):
        for index, item in enumerate(value):
            yield from _flatten(item, f"{path}[{index}]", labels)
    elif isinstance(value, str):
        yield path, value
    else:
        yield path, json.dumps(value)


def _approver_ids(value: object) -> Iterator[str]:
    if _is_ref(value) and isinstance(value, Mapping):
        yield str(value["id"])
    elif isinstance(value, Mapping):
        for inner in value.values():
            yield from _approver_ids(inner)
    elif isinstance(value, list):
        for item in value:
            yield from _approver_ids(item)


def _policy(rt: Pimlico, text: str) -> tuple[Target, str]:
    target = resolve.resolve_target(rt, text)
    return target, target_label(target, resolve.labels(rt, [target.object_id]), scope=False)


@command(settings_app, "show")
def show_settings(
    target: TargetText,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the settings as one JSON document.")
    ] = False,
) -> None:
    """Print every rule of TARGET's settings, grouped, and their version."""
    with runtime() as rt:
        chosen, name = _policy(rt, target)
        policy = role_settings.get_policy(
            rt, actor=ACTOR, target_type=chosen.type, object_id=chosen.object_id
        )
        document = to_dict(policy.settings)
        if as_json:
            say(json.dumps(document, indent=2, sort_keys=False))
            return
        labels = resolve.labels(rt, _approver_ids(document))
    suffix = " (never set: the defaults apply)" if policy.version == 0 else ""
    say(f"settings of {name}: version {policy.version}{suffix}")
    tables = []
    for section in SECTIONS:
        rows = table(section, "setting", "value")
        for key, value in _flatten(document[section], "", labels):
            rows.add_row(key, value)
        tables.append(rows)
    show(*tables)


def _leaf(text: str) -> object:
    """A ``--set`` value: JSON when it parses (``true``, ``2``, ``["a"]``), else the text."""
    try:
        parsed: object = json.loads(text)
    except json.JSONDecodeError:
        return text
    return parsed


def _merge(into: dict[str, object], patch: Mapping[str, object]) -> None:
    """Merge ``patch`` into ``into`` as JSON Merge Patch does: objects merge, the rest replace."""
    for key, value in patch.items():
        current = into.get(key)
        if isinstance(value, Mapping):
            merged: dict[str, object] = current if isinstance(current, dict) else {}
            _merge(merged, value)
            into[key] = merged
        else:
            into[key] = value


def _dotted(assignments_: list[str]) -> dict[str, object]:
    document: dict[str, object] = {}
    for index, item in enumerate(assignments_):
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(part.strip() for part in parts):
            raise InvalidInput(
                "invalid --set",
                [
                    FieldError(
                        f"set[{index}]",
                        "SetFormat",
                        f"{item[:64]!r} is not KEY=VALUE with a dotted key, "
                        "such as activation.maximum_duration=PT2H",
                    )
                ],
            )
        nested: dict[str, object] = {parts[-1].strip(): _leaf(raw)}
        for part in reversed(parts[:-1]):
            nested = {part.strip(): nested}
        _merge(document, nested)
    return document


def _object(value: object, field: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise InvalidInput(
            f"invalid {field}",
            [FieldError(field, "Type", 'must be a JSON object such as {"approval": {...}}')],
        )
    return value


def _read_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput(
            "cannot read the settings file", [FieldError("file", "FileRead", str(error))]
        ) from None


@command(settings_app, "set")
def set_settings(
    target: TargetText,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="KEY=VALUE, dotted key; VALUE is JSON when it parses; repeat."),
    ] = None,
    json_text: Annotated[
        str | None, typer.Option("--json", help="A partial settings document (JSON).")
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="A file holding a partial settings document.")
    ] = None,
    if_version: Annotated[
        int | None, typer.Option("--if-version", help="Refuse if the version has moved on.")
    ] = None,
) -> None:
    """Change some of TARGET's settings; the rest stay. Sources merge: file, --json, --set."""
    changes: dict[str, object] = {}
    if file is not None:
        _merge(changes, _object(parse_json(_read_file(file), "file"), "file"))
    if json_text is not None:
        _merge(changes, _object(parse_json(json_text, "json"), "json"))
    _merge(changes, _dotted(list(set_ or [])))
    if not changes:
        raise InvalidInput(
            "nothing to change",
            [FieldError("changes", "Required", "give --set KEY=VALUE, --json or --file")],
        )
    with runtime() as rt:
        chosen, name = _policy(rt, target)
        written = role_settings.update_policy(
            rt,
            actor=ACTOR,
            target_type=chosen.type,
            object_id=chosen.object_id,
            changes=changes,
            if_version=if_version,
        )
    keys = ", ".join(key for key, _ in _flatten(changes, "", {}))
    done(f"updated settings of {name} ({keys}): version {written.value.version}", written.revision)
