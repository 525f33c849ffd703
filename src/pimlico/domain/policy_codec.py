"""Role settings to and from JSON-ready dicts, whole or partial (a PATCH body).

Owns the wire shape of ``RoleSettings``: field names as in ``policy``, durations as ISO 8601
strings, enums as their values, tuples as lists, and notifications nested as
``{event: {recipient: rule}}``. It does not parse JSON text or know about HTTP.

Partial documents merge like JSON Merge Patch (RFC 7396): an object merges into the base's
value, a list replaces it whole, and each element of a new list (a stage, an approver) starts
from the defaults. Unknown keys, wrong types and bad values are all collected, with their
dotted paths, and raised together as ``InvalidPolicy``; a document that decodes is then
validated, so ``from_dict`` returns only valid settings. Callers never see ``KeyError`` or
``TypeError``.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, fields, is_dataclass
from datetime import timedelta
from functools import cache
from typing import TYPE_CHECKING

from pimlico.domain.durations import format_duration, parse_duration
from pimlico.domain.policy import (
    NotificationEvent,
    NotificationRecipient,
    NotificationRule,
    NotificationRules,
    RoleSettings,
    validated,
)
from pimlico.errors import FieldError, InvalidPolicy

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


def to_dict(settings: RoleSettings) -> dict[str, object]:
    """``settings`` as plain dicts, lists, strings, numbers and booleans, ready for JSON.

    ``settings`` need not be valid, but its durations must not be negative (``ValueError``).
    """
    return _encode_record(settings)


def from_dict(data: Mapping[str, object], base: RoleSettings | None = None) -> RoleSettings:
    """The settings ``data`` describes; keys it leaves out keep ``base``'s values.

    ``base`` defaults to ``RoleSettings.default()``. Raises ``InvalidPolicy`` listing every
    problem of the document, or else every rule the merged settings break.
    """
    decoder = _Decoder()
    result = decoder.value(
        RoleSettings, data, "", base if base is not None else RoleSettings.default()
    )
    if decoder.errors or not isinstance(result, RoleSettings):
        count = len(decoder.errors)
        message = f"the role settings document has {count} problem{'s' if count != 1 else ''}"
        raise InvalidPolicy(message, decoder.errors)
    return validated(result)


def with_changes(settings: RoleSettings, patch: Mapping[str, object]) -> RoleSettings:
    """``settings`` with a partial document applied: ``from_dict(patch, base=settings)``."""
    return from_dict(patch, base=settings)


def _encode(value: object) -> object:
    if isinstance(value, NotificationRules):
        nested: dict[str, dict[str, object]] = {}
        for event, recipient, rule in value.items():
            nested.setdefault(event.value, {})[recipient.value] = _encode_record(rule)
        return nested
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_encode(item) for item in value]
    if is_dataclass(value) and not isinstance(value, type):
        return _encode_record(value)
    return value


def _encode_record(record: DataclassInstance) -> dict[str, object]:
    return {f.name: _encode(getattr(record, f.name)) for f in fields(record)}


class _Invalid:
    """Stands for a value that could not be decoded; its error is already recorded."""


_INVALID = _Invalid()


@cache
def _hints(cls: type) -> dict[str, object]:
    return typing.get_type_hints(cls)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _json_type(raw: object) -> str:
    if raw is None:
        return "null"
    if isinstance(raw, bool):
        return "a boolean"
    if isinstance(raw, int | float):
        return "a number"
    if isinstance(raw, str):
        return "a string"
    if isinstance(raw, Mapping):
        return "an object"
    if isinstance(raw, Sequence):
        return "a list"
    return type(raw).__name__


class _Decoder:
    """Decodes one document against the type hints of the settings, collecting every error.

    A new field in ``policy`` needs no change here when its type is ``bool``, ``int``,
    ``str``, ``str | None``, ``timedelta``, an enum, a dataclass, or a tuple of those.
    """

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def wrong_type(self, path: str, expected: str, raw: object) -> _Invalid:
        self.errors.append(FieldError(path, "Type", f"must be {expected}, not {_json_type(raw)}"))
        return _INVALID

    def value(self, hint: object, raw: object, path: str, base: object) -> object:
        """``raw`` decoded as ``hint``; objects merge into ``base`` (``None``: defaults)."""
        if hint is NotificationRules:
            return self.notifications(raw, path, base)
        if isinstance(hint, type) and is_dataclass(hint):
            return self.record(hint, raw, path, base)
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin is tuple:
            return self.sequence(args[0], raw, path)
        if origin is types.UnionType or origin is typing.Union:
            if raw is None:
                return None
            (inner,) = (arg for arg in args if arg is not type(None))
            return self.value(inner, raw, path, base)
        if hint is bool:
            return raw if isinstance(raw, bool) else self.wrong_type(path, "true or false", raw)
        if hint is int:
            if isinstance(raw, int) and not isinstance(raw, bool):
                return raw
            return self.wrong_type(path, "an integer", raw)
        if hint is str:
            return raw if isinstance(raw, str) else self.wrong_type(path, "a string", raw)
        if hint is timedelta:
            return self.duration(raw, path)
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            return self.choice(hint, raw, path)
        raise NotImplementedError(f"policy_codec cannot decode {hint!r} at {path}")

    def duration(self, raw: object, path: str) -> object:
        if not isinstance(raw, str):
            return self.wrong_type(path, "an ISO 8601 duration string such as PT8H", raw)
        try:
            return parse_duration(raw)
        except ValueError as error:
            self.errors.append(FieldError(path, "DurationFormat", str(error)))
            return _INVALID

    def choice(self, enum_type: type[enum.Enum], raw: object, path: str) -> object:
        allowed = [str(member.value) for member in enum_type]
        if isinstance(raw, str) and raw in allowed:
            return enum_type(raw)
        if not isinstance(raw, str):
            return self.wrong_type(path, f"one of {', '.join(allowed)}", raw)
        self.errors.append(
            FieldError(path, "Choice", f"must be one of {', '.join(allowed)}, not {raw[:64]!r}")
        )
        return _INVALID

    def sequence(self, item_hint: object, raw: object, path: str) -> object:
        if isinstance(raw, str | bytes | Mapping) or not isinstance(raw, Sequence):
            return self.wrong_type(path, "a list", raw)
        items = [self.value(item_hint, item, f"{path}[{i}]", None) for i, item in enumerate(raw)]
        if any(item is _INVALID for item in items):
            return _INVALID
        return tuple(items)

    def unknown_keys(self, raw: Mapping[object, object], known: list[str], path: str) -> None:
        for key in raw:
            if key not in known:
                self.errors.append(
                    FieldError(
                        _join(path, str(key)[:64]),
                        "UnknownField",
                        f"is not a setting here; expected one of {', '.join(known)}",
                    )
                )

    def record(self, cls: type, raw: object, path: str, base: object) -> object:
        """A dataclass from an object: given keys decoded, the rest from ``base`` or defaults."""
        if not isinstance(raw, Mapping):
            return self.wrong_type(path, "an object", raw)
        hints = _hints(cls)
        self.unknown_keys(raw, [f.name for f in fields(cls)], path)
        start = base if isinstance(base, cls) else None
        values: dict[str, object] = {}
        for f in fields(cls):
            where = _join(path, f.name)
            if f.name in raw:
                inherited = getattr(start, f.name) if start is not None else None
                values[f.name] = self.value(hints[f.name], raw[f.name], where, inherited)
            elif start is not None:
                values[f.name] = getattr(start, f.name)
            elif f.default is not MISSING:
                values[f.name] = f.default
            elif f.default_factory is not MISSING:
                values[f.name] = f.default_factory()
            else:
                self.errors.append(FieldError(where, "Required", "is required"))
                values[f.name] = _INVALID
        if any(value is _INVALID for value in values.values()):
            return _INVALID
        return cls(**values)

    def notifications(self, raw: object, path: str, base: object) -> object:
        """Nine rules nested by event then recipient; each given rule merges into ``base``."""
        if not isinstance(raw, Mapping):
            return self.wrong_type(path, "an object", raw)
        rules = base if isinstance(base, NotificationRules) else NotificationRules()
        self.unknown_keys(raw, [e.value for e in NotificationEvent], path)
        recipients = [r.value for r in NotificationRecipient]
        for event in NotificationEvent:
            if event.value not in raw:
                continue
            event_path = _join(path, event.value)
            per_recipient = raw[event.value]
            if not isinstance(per_recipient, Mapping):
                self.wrong_type(event_path, "an object", per_recipient)
                continue
            self.unknown_keys(per_recipient, recipients, event_path)
            for recipient in NotificationRecipient:
                if recipient.value not in per_recipient:
                    continue
                rule = self.record(
                    NotificationRule,
                    per_recipient[recipient.value],
                    _join(event_path, recipient.value),
                    rules.rule(event, recipient),
                )
                if isinstance(rule, NotificationRule):
                    rules = rules.with_rule(event, recipient, rule)
        return rules
