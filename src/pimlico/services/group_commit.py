"""Group commit: the units of work that threads hand in at the same time, run many per write.

Every write takes the store's one write lock and commits on its own, so a write's fixed
costs — the lock, the round trips of its statements, the commit — bound how many writes a
second the store takes, however many threads ask. ``GroupCommit`` lets concurrent callers
share those costs: the first caller to arrive runs a batch of every unit waiting (its own
included) through ``run``, usually in one write; the callers that arrive meanwhile wait, and
the next batch takes them all. Alone, a caller runs a batch of one at once, so nothing waits
for a batch to fill. Reads that many threads make at once share a statement the same way
(``accounts`` reading tokens on their first use).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

U = TypeVar("U")
R = TypeVar("R")


@dataclass(slots=True)
class _Slot(Generic[U, R]):
    unit: U
    done: bool = False
    result: R | None = None
    error: BaseException | None = None
    wake: threading.Lock | None = None
    """Held while its caller waits; released to wake it: its unit is done, or it leads."""


class GroupCommit(Generic[U, R]):
    """Runs the units handed to ``submit`` through ``run``, at most ``most`` at a time, in
    the order they arrived, one batch at a time.

    ``run`` takes a batch and answers each of its units, in order: a result, or the
    exception that unit's caller raises. If ``run`` itself raises, every caller of the batch
    raises that.

    A finished batch wakes its own callers and, when units wait, the first of their callers,
    who leads the next batch: no other waiting thread wakes (with dozens waiting, waking them
    all to find one leader cost more than the batch's bookkeeping).
    """

    def __init__(
        self, run: Callable[[Sequence[U]], Sequence[R | BaseException]], *, most: int
    ) -> None:
        if most < 1:
            raise ValueError("a batch holds at least one unit")
        self._run = run
        self._most = most
        self._lock = threading.Lock()
        self._waiting: list[_Slot[U, R]] = []
        self._running = False

    def waiting(self) -> int:
        """How many units wait for a batch (not those of the batch running)."""
        with self._lock:
            return len(self._waiting)

    def submit(self, unit: U) -> R:
        """Run ``unit`` in the next batch (led by this thread if none is running) and return
        its result, or raise its exception."""
        slot: _Slot[U, R] = _Slot(unit)
        with self._lock:
            self._waiting.append(slot)
            leads = not self._running
            if leads:
                self._running = True
            else:
                slot.wake = threading.Lock()
                slot.wake.acquire()
        if not leads:
            slot.wake.acquire()  # type: ignore[union-attr]  # set above when not leading
        if not slot.done:  # woken to lead: this unit is the first waiting
            self._lead()
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]  # done without an error: a result

    def _lead(self) -> None:
        """Run the next batch (its first unit the caller's own), then wake its other callers
        and hand the lead to the first caller still waiting, if any."""
        with self._lock:
            batch = self._waiting[: self._most]
            del self._waiting[: self._most]
        try:
            answers: Sequence[R | BaseException] = self._run([s.unit for s in batch])
            if len(answers) != len(batch):
                raise RuntimeError(f"{len(answers)} answers to a batch of {len(batch)}")
        except BaseException as error:  # every caller of the batch raises it
            answers = [error] * len(batch)
        for slot, answer in zip(batch, answers, strict=True):
            if isinstance(answer, BaseException):
                slot.error = answer
            else:
                slot.result = answer
            slot.done = True
        with self._lock:
            after = self._waiting[0] if self._waiting else None
            self._running = after is not None
        for slot in batch[1:]:
            assert slot.wake is not None  # every caller but the leader waits
            slot.wake.release()
        if after is not None:
            assert after.wake is not None
            after.wake.release()
