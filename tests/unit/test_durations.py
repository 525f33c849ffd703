"""Durations: ISO 8601 and ``str(timedelta)`` in, canonical ISO 8601 out."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pimlico.domain.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT8H", timedelta(hours=8)),
        ("PT1H45M", timedelta(hours=1, minutes=45)),
        ("PT30M", timedelta(minutes=30)),
        ("PT90S", timedelta(seconds=90)),
        ("P1D", timedelta(days=1)),
        ("P365D", timedelta(days=365)),
        ("P1DT2H30M", timedelta(days=1, hours=2, minutes=30)),
        ("P1W", timedelta(weeks=1)),
        ("P1W2D", timedelta(days=9)),
        ("PT0S", timedelta(0)),
        ("P0D", timedelta(0)),
        ("PT0.5S", timedelta(milliseconds=500)),
        ("PT1,25S", timedelta(seconds=1, milliseconds=250)),
        ("PT0.000001S", timedelta(microseconds=1)),
        ("PT36H", timedelta(hours=36)),
    ],
)
def test_iso_8601_durations_are_read(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5:00:00", timedelta(hours=5)),
        ("0:05:00", timedelta(minutes=5)),
        ("1 day, 2:30:00", timedelta(days=1, hours=2, minutes=30)),
        ("2 days, 0:00:00", timedelta(days=2)),
        ("365 days, 0:00:00", timedelta(days=365)),
        ("0:00:00.500000", timedelta(milliseconds=500)),
        ("05:00:00", timedelta(hours=5)),
    ],
)
def test_the_str_timedelta_form_the_graph_sdk_sends_is_read(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "value",
    [
        timedelta(hours=5),
        timedelta(days=1, hours=2, minutes=30),
        timedelta(days=2),
        timedelta(seconds=1, microseconds=5),
    ],
)
def test_what_str_timedelta_writes_reads_back_as_the_same_duration(value: timedelta) -> None:
    assert parse_duration(str(value)) == value


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("P1Y", "years and months"),
        ("P1M", "years and months"),
        ("P1Y2M3D", "years and months"),
        ("PT0.5H", "only seconds may have a fraction"),
        ("P1.5D", "only seconds may have a fraction"),
        ("PT1.1234567S", "six digits"),
        ("-PT8H", "negative"),
        ("-1 day, 23:00:00", "negative"),
        ("P99999999999D", "may not exceed"),
        ("P" + "1" * 80 + "D", "too long"),
    ],
)
def test_durations_that_are_not_fixed_lengths_or_are_negative_are_refused_with_a_reason(
    text: str, hint: str
) -> None:
    with pytest.raises(ValueError, match=hint):
        parse_duration(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "P",
        "PT",
        "P1DT",
        "8h",
        "pt8h",
        " PT8H",
        "PT8H ",
        "PT8H5M3H",
        "P1DT1M1H",
        "PT٨H",  # Arabic-Indic eight: int() would read it, a duration must not
        "1:60:00",
        "1:00:60",
        "1 day 2:30:00",
        "forever",
    ],
)
def test_text_that_is_not_a_duration_is_refused_with_an_example_of_what_to_write(
    text: str,
) -> None:
    with pytest.raises(ValueError, match="PT8H"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (timedelta(hours=8), "PT8H"),
        (timedelta(days=1), "P1D"),
        (timedelta(days=365), "P365D"),
        (timedelta(weeks=1), "P7D"),
        (timedelta(days=1, hours=2, minutes=30), "P1DT2H30M"),
        (timedelta(hours=1, minutes=45), "PT1H45M"),
        (timedelta(minutes=5), "PT5M"),
        (timedelta(seconds=30), "PT30S"),
        (timedelta(hours=1, seconds=1), "PT1H1S"),
        (timedelta(milliseconds=1500), "PT1.5S"),
        (timedelta(microseconds=1), "PT0.000001S"),
        (timedelta(0), "PT0S"),
    ],
)
def test_durations_are_written_in_canonical_iso_8601(value: timedelta, expected: str) -> None:
    assert format_duration(value) == expected


def test_a_negative_duration_cannot_be_written() -> None:
    with pytest.raises(ValueError, match="zero or more"):
        format_duration(timedelta(minutes=-5))


@given(st.timedeltas(min_value=timedelta(0)))
def test_any_duration_survives_a_round_trip_through_iso_8601(value: timedelta) -> None:
    assert parse_duration(format_duration(value)) == value


@given(st.timedeltas(min_value=timedelta(0)))
def test_any_duration_survives_a_round_trip_through_the_str_timedelta_form(
    value: timedelta,
) -> None:
    assert parse_duration(str(value)) == value


@given(st.timedeltas(min_value=timedelta(0)))
def test_formatting_a_parsed_canonical_duration_gives_the_same_text(value: timedelta) -> None:
    text = format_duration(value)
    assert format_duration(parse_duration(text)) == text
