"""Scopes are paths: ``/`` is everything; a grant at a scope covers all of its descendants."""

from __future__ import annotations

import re
from functools import lru_cache

from pimlico.errors import FieldError, InvalidInput

ROOT = "/"
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
MAX_DEPTH = 16
MAX_LENGTH = 1024


def scope_problem(scope: str) -> str | None:
    """Why ``scope`` is not a valid scope path, or ``None`` when it is."""
    if len(scope) > MAX_LENGTH:  # (checked first: the cache keeps only bounded scopes)
        return f"a scope is at most {MAX_LENGTH} characters"
    return _shape_problem(scope)


@lru_cache(maxsize=65536)
def _shape_problem(scope: str) -> str | None:
    # Cached: every decision asked over HTTP checks its scope, and a policy point asks
    # about a few.
    if scope == ROOT:
        return None
    if not scope.startswith("/"):
        return "a scope is a path that starts with '/'"
    if scope.endswith("/"):
        return "a scope other than '/' does not end with '/'"
    segments = scope[1:].split("/")
    if len(segments) > MAX_DEPTH:
        return f"a scope has at most {MAX_DEPTH} segments"
    for segment in segments:
        if not _SEGMENT.match(segment):
            return (
                f"segment {segment!r} must start with a letter or digit and hold only "
                "letters, digits and . _ : @ -"
            )
    return None


def validate_scope(scope: str, field: str = "scope") -> str:
    """Return ``scope`` if valid; otherwise raise ``InvalidInput`` naming ``field``."""
    problem = scope_problem(scope)
    if problem is not None:
        raise InvalidInput("invalid scope", [FieldError(field, "ScopeFormat", problem)])
    return scope


@lru_cache(maxsize=65536)
def ancestors(scope: str) -> frozenset[str]:
    """The scope itself and every scope above it, ``/`` included."""
    if scope == ROOT:
        return frozenset((ROOT,))
    parts = scope[1:].split("/")
    found = {ROOT}
    for i in range(1, len(parts) + 1):
        found.add("/" + "/".join(parts[:i]))
    return frozenset(found)


def covers(grant_scope: str, scope: str) -> bool:
    """Does a grant at ``grant_scope`` apply at ``scope``?"""
    return grant_scope in ancestors(scope)
