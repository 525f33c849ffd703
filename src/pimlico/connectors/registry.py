"""Which module builds each kind of connector, imported only when a connector of it is built.

Each connector module exposes ``build(config, secret) -> Connector``, validating ``config``
with its own pydantic model. The modules are imported by name, lazily: a kind whose module
is not installed (or not written yet) is refused as bad input when configured, and reported
as a non-retryable ``ConnectorError`` when a dispatcher needs it, while every other kind
works. ``validate`` turns a ``ValidationError`` into ``InvalidInput`` naming each field.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import cast

from pydantic import ValidationError

from pimlico.connectors.base import Connector, ConnectorError
from pimlico.errors import FieldError, InvalidInput

Build = Callable[[Mapping[str, object], str | None], Connector]

MODULES: Mapping[str, str] = {
    "ldap": "pimlico.connectors.ldap",
    "postgres": "pimlico.connectors.postgres",
    "scim": "pimlico.connectors.scim",
    "webhook": "pimlico.connectors.webhook",
}
"""Kind → the module that builds it."""

KINDS = tuple(MODULES)


def builder(kind: str) -> Build:
    """The ``build`` function of ``kind``; ``LookupError`` if it is unknown or not installed."""
    module_name = MODULES.get(kind)
    if module_name is None:
        raise LookupError(f"unknown connector kind {kind!r}: one of {', '.join(KINDS)}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        raise LookupError(f"connector kind {kind!r} is not available here") from None
    return cast(Build, module.build)


def build(kind: str, config: Mapping[str, object], secret: str | None) -> Connector:
    """A connector of ``kind``, for a dispatcher: every failure is a ``ConnectorError``
    (not retryable: the configuration must change first)."""
    try:
        return builder(kind)(config, secret)
    except (LookupError, ValidationError, ValueError) as error:
        raise ConnectorError(
            f"cannot build the {kind} connector: {error}", retryable=False
        ) from None


def validate(kind: str, config: Mapping[str, object]) -> None:
    """Check ``config`` against ``kind``'s model (building a connector, closed at once, which
    does not connect); ``InvalidInput`` naming each field that breaks a rule."""
    try:
        make = builder(kind)
    except LookupError as error:
        raise InvalidInput(str(error), [FieldError("kind", "Known", str(error))]) from None
    try:
        make(config, None).close()
    except ValidationError as error:
        fields = [
            FieldError(".".join(["config", *(str(part) for part in e["loc"])]), e["type"], e["msg"])
            for e in error.errors()
        ]
        raise InvalidInput(f"the {kind} connector's configuration is not valid", fields) from None
