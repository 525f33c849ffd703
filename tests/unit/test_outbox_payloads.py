"""The outbox's pure parts: a job's payload as the worker reads it (JSON text, decoded on first
use, or a batch's together), payloads serialised once, and the time-ordered ids of
bulk-enqueued jobs."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

import pytest

from pimlico.domain.events import AssignmentEnded, AssignmentFacts
from pimlico.domain.model import AssignmentKind, PrincipalRef, PrincipalType, Target
from pimlico.jobs.claims import JSONPayload, decode_all
from pimlico.jobs.events import _encoded, decode, encode
from pimlico.jobs.outbox import encode_payload, time_ordered_ids

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def test_a_payload_reads_as_the_mapping_its_text_holds() -> None:
    payload = JSONPayload('{"assignment_id": "a-1", "days": 14, "end": null}')

    assert payload == {"assignment_id": "a-1", "days": 14, "end": None}
    assert (payload["days"], payload.get("start"), len(payload)) == (14, None, 3)
    assert dict(payload) == {"assignment_id": "a-1", "days": 14, "end": None}
    assert payload.text == '{"assignment_id": "a-1", "days": 14, "end": null}'


def test_a_payload_is_decoded_only_when_read() -> None:
    payload = JSONPayload("not JSON, and never read")

    assert payload.text == "not JSON, and never read"
    with pytest.raises(json.JSONDecodeError):
        payload["anything"]


def test_payloads_decoded_together_read_as_each_alone() -> None:
    texts = ['{"n": 1}', '{"n": [2, {"deep": null}]}', '{"s": "a,]b"}']
    together = [JSONPayload(text) for text in texts]

    decode_all([*together, {"plain": "mapping"}])

    assert [p._value for p in together] == [json.loads(text) for text in texts]
    assert together == [JSONPayload(text) for text in texts]


def test_a_payload_that_is_not_json_leaves_the_others_of_its_batch_to_decode_alone() -> None:
    good, bad = JSONPayload('{"n": 1}'), JSONPayload("not JSON")

    decode_all([good, bad])

    assert good == {"n": 1}
    with pytest.raises(json.JSONDecodeError):
        bad["n"]


def test_a_payload_is_stored_as_compact_json_of_the_same_object() -> None:
    payload = {"request_id": "r-1", "days": 1, "end": None}

    assert json.loads(encode_payload(payload)) == payload
    assert " " not in encode_payload(payload)


def test_an_event_serialised_once_reads_back_as_the_one_built_as_a_dict() -> None:
    principal = PrincipalRef(PrincipalType.USER, "u-1")
    target = Target.role("r-1", "/apps/ü")
    facts = AssignmentFacts("a-1", AssignmentKind.ACTIVE, principal, target, T0, T0, None)
    event = AssignmentEnded(facts, T0, "expired")

    stored = json.loads(_encoded(event, 7, 3))

    assert stored == {**encode(event), "revision": 7, "index": 3}
    assert decode(stored) == event


def test_time_ordered_ids_are_uuids_of_version_7_carrying_the_instant_they_were_made() -> None:
    before = time.time_ns() // 1_000_000
    ids = time_ordered_ids(1000)
    after = time.time_ns() // 1_000_000

    assert len(set(ids)) == 1000
    for text in ids:
        made = uuid.UUID(text)
        assert (str(made), made.version, made.variant) == (text, 7, uuid.RFC_4122)
        assert before <= made.int >> 80 <= after


def test_no_ids_are_made_for_no_jobs() -> None:
    assert time_ordered_ids(0) == []
