"""The audit chain's pure parts: canonical JSON, the event hash, and chain verification."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import math
from datetime import UTC, date, datetime, timedelta, timezone
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pimlico.domain.audit import (
    GENESIS_HASH,
    AuditRecord,
    canonical_json,
    compute_hash,
    format_instant,
    verify_chain,
)

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


class Colour(enum.Enum):
    RED = "red"


def chain(length: int, *, start_hash: str = GENESIS_HASH, start: int = 1) -> list[AuditRecord]:
    """A valid chain of ``length`` events numbered from ``start``, two events per revision."""
    records: list[AuditRecord] = []
    prev = start_hash
    for sequence in range(start, start + length):
        fields = {
            "sequence": sequence,
            "revision": (sequence + 1) // 2,
            "occurred_at": T0 + timedelta(minutes=sequence),
            "actor": "alice",
            "action": "group.update",
            "target_type": "group",
            "target_id": f"g{sequence}",
            "before": canonical_json({"n": sequence - 1}),
            "after": canonical_json({"n": sequence}),
            "reason": None,
            "request_id": "req-1",
        }
        digest = compute_hash(prev, **fields)  # type: ignore[arg-type]
        records.append(AuditRecord(**fields, prev_hash=prev, hash=digest))  # type: ignore[arg-type]
        prev = digest
    return records


def head(records: list[AuditRecord]) -> tuple[int, str]:
    return records[-1].sequence, records[-1].hash


def reason(records: list[AuditRecord], **kwargs: object) -> tuple[int, str] | None:
    broken = verify_chain(records, **kwargs)  # type: ignore[arg-type]
    return None if broken is None else (broken.sequence, broken.reason)


# canonical JSON


def test_canonical_json_sorts_keys_and_drops_whitespace() -> None:
    assert canonical_json({"b": 1, "a": [1, 2], "c": {"z": None, "y": True}}) == (
        '{"a":[1,2],"b":1,"c":{"y":true,"z":null}}'
    )


def test_canonical_json_does_not_depend_on_insertion_order() -> None:
    assert canonical_json({"a": 1, "b": 2}) == canonical_json({"b": 2, "a": 1})


def test_canonical_json_keeps_non_ascii_text_as_it_is() -> None:
    assert canonical_json({"name": "Zoë ✓"}) == '{"name":"Zoë ✓"}'


def test_canonical_json_writes_instants_as_rfc3339_utc_with_microseconds() -> None:
    paris = timezone(timedelta(hours=1))
    assert canonical_json(datetime(2026, 3, 1, 10, 0, 0, 5, tzinfo=paris)) == (
        '"2026-03-01T09:00:00.000005Z"'
    )


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),  # noqa: DTZ001 - hypothesis bounds are naive
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5))]),
    )
)
def test_instants_are_written_as_strftime_writes_them_whatever_the_year(at: datetime) -> None:
    # The chain's hashes depend on this exact text: a faster formatting must not change it.
    assert format_instant(at) == at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_canonical_json_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match="naive"):
        canonical_json({"at": datetime(2026, 3, 1)})  # noqa: DTZ001 - the point of the test


def test_canonical_json_writes_enums_as_their_value_and_tuples_as_lists() -> None:
    assert canonical_json({"c": Colour.RED, "t": (1, "x")}) == '{"c":"red","t":[1,"x"]}'


def test_canonical_json_writes_dates_and_uuids_as_text() -> None:
    value = {"d": date(2026, 3, 1), "u": UUID(int=1)}
    assert canonical_json(value) == (
        '{"d":"2026-03-01","u":"00000000-0000-0000-0000-000000000001"}'
    )


def test_canonical_json_refuses_nan_and_unknown_types() -> None:
    with pytest.raises(ValueError, match="JSON"):
        canonical_json({"x": math.nan})
    with pytest.raises(TypeError, match="set is not allowed"):
        canonical_json({"x": {1, 2}})


# the hash


def test_the_hash_is_sha256_of_the_canonical_json_of_the_fields_and_is_pinned() -> None:
    """Pinned: a change here would make every stored chain fail to verify."""
    preimage = (
        '{"action":"group.update","actor":"alice","after":"{\\"name\\":\\"g1\\"}",'
        '"before":null,"occurred_at":"2026-03-01T09:00:00.000000Z",'
        f'"prev_hash":"{GENESIS_HASH}","reason":"because","request_id":"req-1",'
        '"revision":1,"sequence":1,"target_id":"g1","target_type":"group"}'
    )
    digest = compute_hash(
        GENESIS_HASH,
        sequence=1,
        revision=1,
        occurred_at=T0,
        actor="alice",
        action="group.update",
        target_type="group",
        target_id="g1",
        before=None,
        after='{"name":"g1"}',
        reason="because",
        request_id="req-1",
    )
    assert digest == hashlib.sha256(preimage.encode()).hexdigest()
    assert digest == "12ca150c40fdeac9e1e91559754b4394b2880d2d903d3ecd2b83a4712bd87eee"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("prev_hash", "1" * 64),
        ("sequence", 2),
        ("revision", 2),
        ("occurred_at", T0 + timedelta(microseconds=1)),
        ("actor", "bob"),
        ("actor", None),
        ("action", "group.create"),
        ("target_type", "role"),
        ("target_id", "g2"),
        ("before", "{}"),
        ("after", '{"name":"g2"}'),
        ("after", None),
        ("reason", ""),
        ("request_id", None),
    ],
)
def test_the_hash_changes_when_any_field_changes(name: str, value: object) -> None:
    (record,) = chain(1)
    fields = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
    del fields["hash"]
    original = record.computed_hash()

    fields[name] = value
    prev_hash = fields.pop("prev_hash")

    assert compute_hash(prev_hash, **fields) != original


def test_the_hash_tells_a_missing_value_from_an_empty_one() -> None:
    (record,) = chain(1)
    assert (
        dataclasses.replace(record, reason="").computed_hash()
        != dataclasses.replace(record, reason=None).computed_hash()
    )


# verifying a chain


def test_a_valid_chain_verifies() -> None:
    records = chain(6)
    assert reason(records, expected_head=head(records)) is None


def test_an_empty_chain_verifies_against_the_genesis_head() -> None:
    assert reason([], expected_head=(0, GENESIS_HASH)) is None


def test_a_chain_verifies_from_a_known_good_point() -> None:
    records = chain(6)
    assert reason(records[3:], start_hash=records[2].hash, start_sequence=4) is None


def test_an_edited_event_is_named() -> None:
    records = chain(6)
    records[3] = dataclasses.replace(records[3], after='{"n":99}')

    assert reason(records) == (4, "content does not match its hash (edited)")


def test_an_event_whose_hash_alone_was_rewritten_is_named() -> None:
    records = chain(6)
    records[3] = dataclasses.replace(records[3], hash="f" * 64)

    assert reason(records) == (4, "content does not match its hash (edited)")


def test_an_event_rehashed_after_an_edit_breaks_the_link_of_the_next_one() -> None:
    records = chain(6)
    edited = dataclasses.replace(records[3], reason="covered up")
    records[3] = dataclasses.replace(edited, hash=edited.computed_hash())

    assert reason(records) == (
        5,
        "does not link to the event before it (an event was removed, replaced or reordered)",
    )


def test_a_deleted_middle_event_is_named() -> None:
    records = chain(6)
    del records[2]

    assert reason(records) == (3, "sequence 3 is missing (deleted)")


def test_several_deleted_events_are_named_from_the_first() -> None:
    records = chain(6)
    del records[1:4]

    assert reason(records) == (2, "sequences 2 to 4 are missing (deleted)")


def test_a_deleted_first_event_is_named() -> None:
    assert reason(chain(6)[1:]) == (1, "sequence 1 is missing (deleted)")


def test_a_deleted_middle_event_with_the_rest_renumbered_breaks_the_link() -> None:
    records = chain(6)
    renumbered = records[:2] + [
        dataclasses.replace(r, sequence=r.sequence - 1) for r in records[3:]
    ]

    broken = reason(renumbered)

    assert broken is not None
    assert broken[0] == 3


def test_a_deleted_last_event_is_named_only_against_the_expected_head() -> None:
    records = chain(6)
    expected = head(records)

    assert reason(records[:-1]) is None
    assert reason(records[:-1], expected_head=expected) == (
        6,
        "sequence 6 is missing (deleted): the chain ends before its head",
    )
    assert reason(records[:-3], expected_head=expected) == (
        4,
        "sequences 4 to 6 are missing (deleted): the chain ends before its head",
    )


def test_a_replaced_last_event_is_named_against_the_expected_head() -> None:
    records = chain(6)
    forged = chain(6, start_hash="1" * 64)

    assert reason(records, expected_head=head(forged)) == (
        6,
        "the last event does not match the recorded head hash (replaced)",
    )


def test_an_event_beyond_the_expected_head_is_named() -> None:
    records = chain(6)

    assert reason(records, expected_head=head(records[:4])) == (
        5,
        "event 5 is beyond the recorded head (inserted)",
    )


def test_two_neighbours_that_traded_places_are_out_of_order() -> None:
    records = chain(6)
    third, fourth = records[2], records[3]
    records[2] = dataclasses.replace(fourth, sequence=3)
    records[3] = dataclasses.replace(third, sequence=4)

    assert reason(records) == (3, "out of order: the content of event 4 belongs here (swapped)")


def test_two_neighbours_whose_contents_were_swapped_are_out_of_order() -> None:
    records = chain(6)
    third, fourth = records[2], records[3]
    records[2] = dataclasses.replace(
        third,
        target_id=fourth.target_id,
        before=fourth.before,
        after=fourth.after,
        occurred_at=fourth.occurred_at,
        revision=fourth.revision,
    )
    records[3] = dataclasses.replace(
        fourth,
        target_id=third.target_id,
        before=third.before,
        after=third.after,
        occurred_at=third.occurred_at,
        revision=third.revision,
    )

    assert reason(records) == (3, "out of order: the content of event 4 belongs here (swapped)")


def test_records_given_out_of_sequence_order_are_out_of_order() -> None:
    records = chain(6)
    records[2], records[3] = records[3], records[2]

    assert reason(records) == (3, "out of order: sequence 4 where 3 was expected")


def test_a_repeated_sequence_is_out_of_order() -> None:
    records = chain(6)
    records.insert(3, records[2])

    assert reason(records) == (4, "out of order: sequence 3 where 4 was expected")


def test_the_first_of_several_breaks_is_named() -> None:
    records = chain(6)
    records[4] = dataclasses.replace(records[4], reason="x")
    records[1] = dataclasses.replace(records[1], reason="y")

    assert reason(records) == (2, "content does not match its hash (edited)")


def test_a_long_chain_is_checked_from_a_generator() -> None:
    records = chain(2000)

    assert verify_chain(iter(records), expected_head=head(records)) is None
