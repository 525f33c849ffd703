"""Group commit: units handed in together run in one batch, each caller gets its own answer."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import pytest

from pimlico.services.group_commit import GroupCommit


class Refused(Exception):
    pass


class Recorder:
    """A ``run`` that records its batches; answers each unit doubled, or refuses odd ones.
    The first batch can be held until ``release`` is set."""

    def __init__(self, *, hold_first: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.release = threading.Event()
        self.started = threading.Event()
        if not hold_first:
            self.release.set()

        self.leaders: list[str] = []

    def __call__(self, batch: Sequence[int]) -> list[int | BaseException]:
        self.batches.append(list(batch))
        self.leaders.append(threading.current_thread().name)
        self.started.set()
        self.release.wait(timeout=10)
        return [Refused(f"{u} is odd") if u % 2 else u * 2 for u in batch]


def test_a_caller_alone_runs_a_batch_of_one_at_once() -> None:
    run = Recorder()
    group: GroupCommit[int, int] = GroupCommit(run, most=8)
    assert group.submit(4) == 8
    assert group.submit(6) == 12
    assert run.batches == [[4], [6]]


def test_each_caller_gets_its_own_answer_or_its_own_error() -> None:
    run = Recorder()
    group: GroupCommit[int, int] = GroupCommit(run, most=8)
    with pytest.raises(Refused, match="3 is odd"):
        group.submit(3)
    assert group.submit(2) == 4


def submit_in_threads(
    group: GroupCommit[int, int], units: Sequence[int]
) -> tuple[list[threading.Thread], dict[int, int | BaseException]]:
    answers: dict[int, int | BaseException] = {}

    def call(unit: int) -> None:
        try:
            answers[unit] = group.submit(unit)
        except Exception as error:
            answers[unit] = error

    threads = [threading.Thread(target=call, args=(u,), name=f"unit-{u}") for u in units]
    for thread in threads:
        thread.start()
    return threads, answers


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_callers_arriving_while_a_batch_runs_share_the_next_batch_in_arrival_order() -> None:
    run = Recorder(hold_first=True)
    group: GroupCommit[int, int] = GroupCommit(run, most=3)
    threads, _ = submit_in_threads(group, [100])
    run.started.wait(timeout=10)
    for unit in (2, 3, 4, 6, 8):  # one at a time, so their arrival order is known
        more, _ = submit_in_threads(group, [unit])
        threads += more
        queued = len(threads) - 1
        wait_until(lambda: group.waiting() == queued)  # noqa: B023 - called in this iteration
    run.release.set()
    for thread in threads:
        thread.join(timeout=10)
    assert run.batches == [[100], [2, 3, 4], [6, 8]]
    assert group.waiting() == 0
    # The lead passes to the first caller waiting, whose unit heads the next batch.
    assert run.leaders == ["unit-100", "unit-2", "unit-6"]


def test_every_caller_gets_the_answer_for_its_own_unit_under_contention() -> None:
    run = Recorder()
    group: GroupCommit[int, int] = GroupCommit(run, most=16)
    units = list(range(200))
    threads, answers = submit_in_threads(group, units)
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(answers) == units
    for unit, answer in answers.items():
        if unit % 2:
            assert isinstance(answer, Refused)
            assert str(answer) == f"{unit} is odd"
        else:
            assert answer == unit * 2
    assert sorted(u for batch in run.batches for u in batch) == units
    assert all(len(batch) <= 16 for batch in run.batches)


def test_when_the_run_itself_fails_every_caller_of_that_batch_raises_it() -> None:
    def broken(batch: Sequence[int]) -> list[int | BaseException]:
        raise RuntimeError("the store went away")

    group: GroupCommit[int, int] = GroupCommit(broken, most=4)
    with pytest.raises(RuntimeError, match="went away"):
        group.submit(1)
    with pytest.raises(RuntimeError, match="went away"):  # and the next batch runs again
        group.submit(2)


def test_a_run_that_answers_the_wrong_number_of_units_is_an_error_for_all() -> None:
    group: GroupCommit[int, int] = GroupCommit(lambda batch: [], most=4)
    with pytest.raises(RuntimeError, match="0 answers to a batch of 1"):
        group.submit(1)


def test_a_batch_holds_at_least_one_unit() -> None:
    with pytest.raises(ValueError, match="at least one"):
        GroupCommit(Recorder(), most=0)
