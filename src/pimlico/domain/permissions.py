"""Permission strings and patterns.

A permission is dot-separated lowercase segments (``mail.purge``, ``pim.policies.write``). A
role holds patterns: a permission, or a prefix ending in a wildcard (``mail.*``), or ``*`` for
everything. ``mail.*`` matches ``mail.purge`` and ``mail.admin.read`` but not ``mail`` itself.
"""

from __future__ import annotations

import re
from functools import lru_cache

from pimlico.errors import FieldError, InvalidInput

WILDCARD = "*"
_PERMISSION = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$")
_PATTERN = re.compile(r"^(\*|[a-z0-9_-]+(\.[a-z0-9_-]+)*(\.\*)?)$")


def validate_permission(permission: str, field: str = "permission") -> str:
    if not _PERMISSION.match(permission):
        raise InvalidInput(
            "invalid permission",
            [
                FieldError(
                    field,
                    "PermissionFormat",
                    f"{permission!r} is not dot-separated segments of a-z, 0-9, _ and -",
                )
            ],
        )
    return permission


def pattern_problem(pattern: str) -> str | None:
    if _PATTERN.match(pattern):
        return None
    return (
        f"{pattern!r} is not a permission, a permission prefix ending in '.*', or '*' "
        "(a wildcard may only stand at the end)"
    )


def validate_patterns(patterns: list[str] | tuple[str, ...], field: str = "permissions") -> None:
    errors = [
        FieldError(f"{field}[{i}]", "PermissionFormat", problem)
        for i, p in enumerate(patterns)
        if (problem := pattern_problem(p)) is not None
    ]
    if errors:
        raise InvalidInput("invalid permissions", errors)


@lru_cache(maxsize=65536)
def candidate_patterns(permission: str) -> tuple[str, ...]:
    """Every pattern that matches ``permission``, most specific first.

    ``mail.purge.hard`` → (``mail.purge.hard``, ``mail.purge.*``, ``mail.*``, ``*``).
    """
    parts = permission.split(".")
    found = [permission]
    for i in range(len(parts) - 1, 0, -1):
        found.append(".".join(parts[:i]) + ".*")
    found.append(WILDCARD)
    return tuple(found)


def matches(pattern: str, permission: str) -> bool:
    """Does ``pattern`` grant ``permission``?"""
    if pattern in (WILDCARD, permission):
        return True
    if pattern.endswith(".*"):
        return permission.startswith(pattern[:-1])
    return False
