"""The C decision path (``pimlico.domain._decide``): built here, exact, and falling back to the
pure-Python engine for whatever it does not know. (That both engines give the same decisions
on random worlds and through random changes is shown by the property and following tests,
which ask both on every question: ``tests.engines.decide_both``.)"""

from __future__ import annotations

import gc
import os
import sys
from datetime import UTC, datetime, timedelta, timezone
from random import Random

import pytest

from pimlico.domain import decisions
from pimlico.domain.decisions import DecisionIndex
from tests.engines import decide_both

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.fixture
def native() -> object:
    if not decisions.NATIVE_AVAILABLE:
        message = "pimlico.domain._decide was not built (no C compiler or Python headers)"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"{message} (CI=true: nothing may skip)")
        pytest.skip(message)
    from pimlico.domain import _decide

    return _decide


def _index(*, native: bool = True) -> DecisionIndex:
    index = DecisionIndex(max_depth=4, native=native)
    with index.bulk():
        index.put_principal("alex", enabled=True)
        index.put_principal("dana", enabled=False)
        index.put_group("readers")
        index.put_role("reader", ["mail.read", "security.*"])
        index.put_membership(
            "m1",
            group_id="readers",
            member_id="alex",
            relation="member",
            start=T0.timestamp(),
            end=(T0 + timedelta(hours=2)).timestamp(),
        )
        for aid, holder in (("a1", "readers"), ("a2", "alex"), ("a3", "dana")):
            index.put_assignment(
                aid,
                kind="active",
                principal_id=holder,
                target_type="role",
                target_id="reader",
                scope="/apps/mail" if holder == "alex" else "/",
                start=T0.timestamp(),
                end=(T0 + timedelta(hours=1)).timestamp(),
            )
    return index


def test_the_index_uses_the_c_path_when_built_and_the_pure_one_when_asked(native: object) -> None:
    assert isinstance(DecisionIndex().decide, native.Decider)  # type: ignore[attr-defined]
    pure = DecisionIndex(native=False)
    assert pure.decide == pure._decide
    assert not pure.native


def test_the_c_path_reads_utc_instants_exactly_as_python_does(native: object) -> None:
    rnd = Random(7)
    instants = [
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2000, 2, 29, 12, tzinfo=UTC),
    ]
    instants += [
        datetime(1, 1, 1, tzinfo=UTC)
        + timedelta(microseconds=rnd.randrange(315_537_897_600 * 10**6))
        for _ in range(20_000)
    ]
    # Not UTC, or naive: the C path asks the object itself.
    instants += [T0.astimezone(timezone(timedelta(hours=5, minutes=30))), T0.replace(tzinfo=None)]
    for at in instants:
        assert native.timestamp(at) == at.timestamp(), at  # type: ignore[attr-defined]


def test_each_answer_the_c_path_gives_is_the_pure_engines() -> None:
    index = _index()
    for principal in ("alex", "dana", "readers", "nobody"):
        for permission in ("mail.read", "mail.purge", "security.alerts.read"):
            for scope in ("/", "/apps/mail", "/apps/mail/inbox", "/apps/defender"):
                for at in (
                    T0 - timedelta(seconds=1),
                    T0,
                    T0 + timedelta(hours=1),
                    T0.replace(tzinfo=None),
                ):
                    decide_both(index, principal, permission, scope, at)


def test_the_boundaries_hold_on_the_c_path() -> None:
    index = _index()
    end = T0 + timedelta(hours=1)
    assert not index.decide(
        "alex", "mail.read", "/apps/mail", T0 - timedelta(microseconds=1)
    ).allowed
    assert index.decide("alex", "mail.read", "/apps/mail", T0).allowed
    assert index.decide("alex", "mail.read", "/apps/mail", end - timedelta(microseconds=1)).allowed
    assert not index.decide("alex", "mail.read", "/apps/mail", end).allowed


def test_the_words_for_what_it_does_not_decide_come_from_the_pure_engine() -> None:
    index = _index()
    assert index.decide("nobody", "mail.read", "/", T0).reason == "unknown principal"
    assert index.decide("dana", "mail.read", "/", T0).reason == "principal is disabled"
    decision = index.decide("alex", "mail.read", "/apps/mail", T0)
    assert decision.grant is not None
    assert decision.grant.assignment_id == "a2"
    by_group = index.decide("alex", "security.alerts.read", "/apps/defender", T0)
    assert by_group.grant is not None
    assert (by_group.grant.holder_id, [s.group_id for s in by_group.grant.chain]) == (
        "readers",
        ["readers"],
    )

    # A str subclass is the pure engine's too (the C path reads exact str only).
    class Name(str):
        pass

    assert decide_both(index, Name("alex"), "mail.read", "/apps/mail", T0).allowed


def test_a_view_of_a_shape_it_does_not_know_is_not_packed(native: object) -> None:
    pack = native.pack  # type: ignore[attr-defined]
    read = sys.intern("mail.read")
    grant = (sys.intern("/apps/mail"), 0.0, 1.0, "a1", "reader")
    assert pack("uma", ("not", "a view"), None) is None
    assert pack("uma", (True, None), {"".join(["mail", ".read"]): (grant,)}) is None  # not interned
    assert pack("uma", (True, None), {read: (7,)}) is None  # not a grant
    assert pack("uma", (True, None), {read: ()}) is None  # no grants
    assert pack("uma", (True, None), {read: (("/apps/".join("ab"), 0.0, 1.0, "a", "r"),)}) is None
    assert pack("uma", (True, None, {"".join(["mail", ".read"]): (grant,)}, (), "g"), None) is None
    assert pack("uma", (True, None, {read: (grant,)}, ((0.0,),), "g"), None) is None  # short path
    assert pack("uma", (True, None), None) is not None
    assert pack("uma", (True, None, {read: (grant,)}, ((0.0, 1.0),), "g"), {read: (grant,)})


def test_the_map_of_packed_views_finds_each_id_after_any_puts_and_pops(native: object) -> None:
    """Open addressing with deletions that shift entries back: checked against a dict."""
    packed_map = native.PackedMap()  # type: ignore[attr-defined]
    pack = native.pack  # type: ignore[attr-defined]
    expected: dict[str, object] = {}
    rnd = Random(11)
    ids = [f"user-{i}" for i in range(300)] + ["ü-ümlaut", "日本", "x" * 200, ""]
    for _ in range(5_000):
        pid = rnd.choice(ids)
        if rnd.random() < 0.6:
            packed = pack("".join(pid), (True, None), None)  # an equal str, not the same object
            packed_map.put(packed)
            expected[pid] = packed
        else:
            packed_map.pop("".join(pid))
            expected.pop(pid, None)
        assert len(packed_map) == len(expected)
    for pid in ids:
        assert packed_map.get(pid) is expected.get(pid), pid


def test_a_change_is_seen_by_the_c_path_at_once() -> None:
    index = _index()
    assert not index.decide("alex", "mail.purge", "/", T0).allowed
    index.put_role("reader", ["mail.read", "mail.purge"])  # the group's grants change in place
    assert decide_both(index, "alex", "mail.purge", "/", T0).allowed
    index.put_principal("alex", enabled=False)
    assert (
        decide_both(index, "alex", "mail.read", "/apps/mail", T0).reason == "principal is disabled"
    )


def test_deciding_leaks_no_references(native: object) -> None:
    index = _index()
    grant = index._held["alex"][sys.intern("mail.read")][0]
    questions = [("alex", "mail.read", "/apps/mail", T0), ("alex", "mail.purge", "/", T0)]
    for q in questions * 100:  # warm the caches first
        index.decide(*q)
    gc.collect()
    before = sys.getrefcount(grant), sys.getrefcount(T0), sys.getrefcount(index)
    for q in questions * 10_000:
        index.decide(*q)
    gc.collect()
    assert (sys.getrefcount(grant), sys.getrefcount(T0), sys.getrefcount(index)) == before
