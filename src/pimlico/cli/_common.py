"""What every command shares: the runtime, the operator actor, parsing and printing.

Commands translate text to use-case calls and results back to text, nothing more. Every
``PimlicoError`` becomes one red line on stderr, ``error: <code>: <message>``, and exit code
2; input the CLI itself parses (instants, durations, JSON) fails the same way, as
``InvalidInput``. Exit code 1 is reserved for answers that are "no" (``check`` denied, a
broken audit chain).
"""

from __future__ import annotations

import enum
import functools
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import NoReturn, ParamSpec, TypeVar

import pydantic
import typer
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from pimlico.clock import as_utc
from pimlico.db import migrate
from pimlico.domain.durations import parse_duration
from pimlico.domain.model import AssignmentKind, Target, TargetType
from pimlico.domain.requests import ExpirationType, Schedule, Ticket
from pimlico.errors import FieldError, InvalidInput, PimlicoError
from pimlico.services.runtime import Actor, Pimlico
from pimlico.settings import Settings

P = ParamSpec("P")
T = TypeVar("T")
E = TypeVar("E", bound=enum.StrEnum)

ACTOR = Actor.operator("cli")
"""Who the local CLI acts as: the operator, named in every audit event it writes."""

USER_ERROR = 2
"""Exit code for every refused command (and for usage errors, as click does)."""
ANSWER_NO = 1
"""Exit code for a command that ran and answered "no"."""

_PIPED_WIDTH = 200
"""Width for output that is not a terminal: piped output is for grep and files, and cutting
it at 80 columns would split ids across lines."""


# -- printing -------------------------------------------------------------------------------


def _console(*, stderr: bool) -> Console:
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, _PIPED_WIDTH)
    return console


def say(message: str) -> None:
    """Print one line of plain text (no Rich markup: names may hold brackets)."""
    _console(stderr=False).print(Text(message), soft_wrap=True)


def show(*renderables: RenderableType) -> None:
    console = _console(stderr=False)
    for renderable in renderables:
        console.print(renderable)


def done(message: str, revision: int) -> None:
    """What a write did, and the revision it wrote."""
    say(f"{message}; revision {revision}")


def table(title: str | None, *columns: str) -> Table:
    result = Table(title=title, title_justify="left", show_lines=False)
    for column in columns:
        result.add_column(column, overflow="fold")
    return result


def instant(at: datetime | None, none: str = "—") -> str:
    """An instant as RFC 3339 UTC to the second (``2026-03-01T09:00:00Z``)."""
    if at is None:
        return none
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def yes_no(value: bool) -> str:
    return "yes" if value else "no"


def target_label(target: Target, labels: dict[str, str], *, scope: bool = True) -> str:
    """``role:NAME at /scope`` (``role:NAME`` without ``scope``), ``member:GROUP`` or
    ``owner:GROUP``."""
    name = labels.get(target.object_id, target.object_id).partition(":")[2] or target.object_id
    if target.type is TargetType.ROLE:
        return f"role:{name} at {target.scope}" if scope else f"role:{name}"
    prefix = "member" if target.type is TargetType.GROUP_MEMBER else "owner"
    return f"{prefix}:{name}"


def error_line(error: PimlicoError) -> str:
    """``error: <code>: <message>``, naming each failing field and rule, on one line."""
    message = error.message
    if isinstance(error, InvalidInput) and error.errors:
        details = "; ".join(f"{e.field} [{e.rule}] {e.message}" for e in error.errors)
        message = f"{message}: {details}"
    return f"error: {error.code}: {message}"


def _refuse(line: str) -> NoReturn:
    _console(stderr=True).print(Text(" ".join(line.split()), style="red"), soft_wrap=True)
    raise typer.Exit(USER_ERROR)


def fail(error: PimlicoError) -> NoReturn:
    _refuse(error_line(error))


def fail_with(code: str, message: str) -> NoReturn:
    """Refuse for a reason outside the error tree (the store, the environment)."""
    _refuse(f"error: {code}: {message}")


def handles_errors(func: Callable[P, T]) -> Callable[P, T]:
    """Turn a command's ``PimlicoError`` into one red line and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return func(*args, **kwargs)
        except PimlicoError as error:
            fail(error)

    return wrapper


def command(app: typer.Typer, name: str) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Register ``func`` as command ``name`` of ``app``, with the error handling above."""

    def register(func: Callable[P, T]) -> Callable[P, T]:
        app.command(name)(handles_errors(func))
        return func

    return register


# -- the runtime ----------------------------------------------------------------------------


def settings() -> Settings:
    try:
        return Settings()
    except pydantic.ValidationError as error:
        problems = "; ".join(
            f"PIMLICO_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in error.errors()
        )
        fail_with("InvalidSettings", problems)


@contextmanager
def database_errors() -> Iterator[None]:
    """Report a failure of the store itself (unreachable, bad URL, failed migration) as one
    line. Only for the store plumbing around use cases, never around a use case: a bug there
    must show its traceback."""
    try:
        yield
    except Exception as error:
        text = str(error).strip()
        fail_with("DatabaseError", text.splitlines()[0] if text else repr(error))


def _require_migrated(url: str) -> None:
    with database_errors():
        at = migrate.current(url)
    heads = migrate.heads()
    if at not in heads:
        fail_with(
            "DatabaseNotMigrated",
            f"the database is at revision {at or 'none'}, this Pimlico needs "
            f"{', '.join(heads)}: run `pimlico db upgrade`",
        )


@contextmanager
def runtime() -> Iterator[Pimlico]:
    """The runtime on the configured store, which must be migrated to head."""
    config = settings()
    _require_migrated(config.database_url)
    with Pimlico(config) as rt:
        yield rt


# -- parsing --------------------------------------------------------------------------------


def parse_instant(text: str | None, field: str) -> datetime | None:
    """An RFC 3339 instant (a naive one is UTC); ``None`` stays ``None``."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(
            f"invalid {field}",
            [
                FieldError(
                    field,
                    "InstantFormat",
                    f"{text[:64]!r} is not an RFC 3339 instant such as 2026-03-01T09:00:00Z",
                )
            ],
        ) from None
    return as_utc(value)


def parse_duration_option(text: str | None, field: str = "duration") -> timedelta | None:
    if text is None:
        return None
    try:
        return parse_duration(text.strip())
    except ValueError as error:
        raise InvalidInput(
            f"invalid {field}", [FieldError(field, "DurationFormat", str(error))]
        ) from None


def parse_kind(text: str | None) -> AssignmentKind | None:
    if text is None:
        return None
    try:
        return AssignmentKind(text.strip().lower())
    except ValueError:
        raise InvalidInput(
            "invalid kind",
            [FieldError("kind", "Choice", f"must be eligible or active, not {text[:32]!r}")],
        ) from None


def one_of(field: str, given: dict[str, bool], *, required: bool) -> str | None:
    """The one option given among ``given`` (name → given?); refuse two, or none if required."""
    chosen = [name for name, present in given.items() if present]
    *rest, last = list(given)
    names = f"{', '.join(rest)} or {last}" if rest else last
    if len(chosen) > 1:
        raise InvalidInput(
            f"conflicting options {' and '.join(chosen)}",
            [FieldError(field, "Conflict", f"give only one of {names}")],
        )
    if not chosen and required:
        raise InvalidInput(
            f"{field} is required", [FieldError(field, "Required", f"give one of {names}")]
        )
    return chosen[0] if chosen else None


def parse_json(text: str, field: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidInput(
            f"invalid {field}", [FieldError(field, "JsonFormat", f"not JSON: {error}")]
        ) from None


def parse_choice(choices: type[E], text: str | None, field: str) -> E | None:
    """One of the values of the enum ``choices`` (any case); ``None`` stays ``None``."""
    if text is None:
        return None
    try:
        return choices(text.strip().lower())
    except ValueError:
        allowed = ", ".join(c.value for c in choices)
        raise InvalidInput(
            f"invalid {field}",
            [FieldError(field, "Choice", f"must be one of {allowed}, not {text[:32]!r}")],
        ) from None


def parse_count(text: str | None, field: str) -> int | None:
    """A whole number of at least 1 (such as ``--limit``); ``None`` stays ``None``. Parsed
    here, not by click, so a bad value is one line like every other refusal."""
    if text is None:
        return None
    try:
        value = int(text.strip())
    except ValueError:
        value = 0
    if value < 1:
        raise InvalidInput(
            f"invalid {field}",
            [
                FieldError(
                    field, "Range", f"must be a whole number of at least 1, not {text[:32]!r}"
                )
            ],
        )
    return value


def ticket_of(system: str | None, number: str | None) -> Ticket | None:
    """The ticket given by ``--ticket-system`` and ``--ticket-number``; ``None`` if neither.
    One without the other is passed on half empty, for the use case to refuse by name."""
    if system is None and number is None:
        return None
    return Ticket(system or "", number or "")


def schedule_of(
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    duration: timedelta | None = None,
    permanent: bool = False,
) -> Schedule:
    """The request schedule that ``--start`` with ``--end``, ``--duration`` or
    ``--permanent`` ask for (none of them: as long as the settings allow)."""
    if permanent:
        return Schedule(start=start, expiration=ExpirationType.NO_EXPIRATION)
    if end is not None:
        return Schedule(start=start, expiration=ExpirationType.AFTER_DATETIME, end=end)
    return Schedule(start=start, duration=duration)
