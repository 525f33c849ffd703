"""Durations as text: ISO 8601 (``PT8H``, ``P1DT2H30M``) and the ``str(timedelta)`` form.

Owns parsing and canonical formatting of the durations in role settings and requests. The
API speaks ISO 8601; the Microsoft Graph SDK for Python sends ``str(timedelta)``
(``"5:00:00"``, ``"1 day, 2:30:00"``), so both are read and only ISO 8601 is written.

Only fixed-length units are accepted: weeks, days, hours, minutes and seconds. Years and
months are refused because their length depends on the calendar. Only seconds may carry a
decimal fraction (at most microseconds), so ``PT0.5H`` is refused and ``PT30M`` is the way
to say it. Negative durations are refused. Every refusal is a ``ValueError`` whose message
says what to write instead; callers turn it into a ``FieldError``.
"""

from __future__ import annotations

import re
from datetime import timedelta

_MAX_TEXT = 64
"""Longer input is not a duration anyone means; refusing it early keeps ``int()`` cheap."""

_ISO = re.compile(
    r"P(?:(?P<weeks>[0-9]+)W)?(?:(?P<days>[0-9]+)D)?"
    r"(?:T(?=[0-9])(?:(?P<hours>[0-9]+)H)?(?:(?P<minutes>[0-9]+)M)?"
    r"(?:(?P<seconds>[0-9]+)(?:[.,](?P<fraction>[0-9]{1,6}))?S)?)?",
    re.ASCII,
)
_TIMEDELTA_STR = re.compile(
    r"(?:(?P<days>[0-9]+) days?, )?"
    r"(?P<hours>[0-9]+):(?P<minutes>[0-5][0-9]):(?P<seconds>[0-5][0-9])"
    r"(?:\.(?P<fraction>[0-9]{1,6}))?",
    re.ASCII,
)
_HINT = "use ISO 8601 such as PT8H, PT1H45M, P1D or P1DT2H30M"


def parse_duration(text: str) -> timedelta:
    """The duration ``text`` names, in ISO 8601 or ``str(timedelta)`` form.

    Raises ``ValueError`` with a message that says what to write instead.
    """
    shown = text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "…"
    if len(text) > _MAX_TEXT:
        raise ValueError(f"{shown!r} is too long to be a duration; {_HINT}")
    if text.startswith("-"):
        raise ValueError(f"{shown!r} is negative; a duration must be zero or more")
    match = _ISO.fullmatch(text)
    if match is not None and text != "P":
        return _build(match.groupdict())
    match = _TIMEDELTA_STR.fullmatch(text)
    if match is not None:
        return _build(match.groupdict())
    raise ValueError(f"{shown!r} is not a duration: {_why_not(text)}")


def _why_not(text: str) -> str:
    if text.startswith("P"):
        date_part = text[1:].split("T", 1)[0]
        if "Y" in date_part or "M" in date_part:
            return "years and months have no fixed length; count in days (P365D) instead"
        if re.search(r"[0-9][.,][0-9]+[WDHM]", text):
            return "only seconds may have a fraction; write PT30M rather than PT0.5H"
    if re.search(r"[.,][0-9]{7,}", text):
        return "a fraction of a second has at most six digits (microseconds)"
    return _HINT + " (or the form '1 day, 2:30:00')"


def _build(parts: dict[str, str | None]) -> timedelta:
    def number(name: str) -> int:
        value = parts.get(name)
        return int(value) if value else 0

    fraction = parts.get("fraction") or ""
    try:
        return timedelta(
            weeks=number("weeks"),
            days=number("days"),
            hours=number("hours"),
            minutes=number("minutes"),
            seconds=number("seconds"),
            microseconds=int(fraction.ljust(6, "0")) if fraction else 0,
        )
    except OverflowError:
        raise ValueError(f"a duration may not exceed {timedelta.max.days} days") from None


def format_duration(duration: timedelta) -> str:
    """The canonical ISO 8601 form: ``PT8H``, ``P1D``, ``P1DT2H30M``, ``PT0S``.

    Days are never folded into weeks; seconds appear only when non-zero.
    ``parse_duration(format_duration(d)) == d`` for every duration of zero or more.
    """
    if duration < timedelta(0):
        raise ValueError("a duration must be zero or more")
    hours, rest = divmod(duration.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    date = f"{duration.days}D" if duration.days else ""
    time = ""
    if hours:
        time += f"{hours}H"
    if minutes:
        time += f"{minutes}M"
    if seconds or duration.microseconds:
        fraction = f".{duration.microseconds:06d}".rstrip("0") if duration.microseconds else ""
        time += f"{seconds}{fraction}S"
    if not date and not time:
        return "PT0S"
    return "P" + date + (f"T{time}" if time else "")
