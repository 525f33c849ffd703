"""Benchmarks, run by ``make bench`` (``python -m bench``); never timed tests.

The package itself holds what every benchmark measures with: timing calls one by one (with
the timer's own cost taken out), percentiles, memory readings, the machine's description and
the units figures are printed in. It must not know any engine or any data.
"""

from __future__ import annotations

import math
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

Q = TypeVar("Q")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Sample:
    """Individually timed answers: latencies (ns, timer overhead subtracted) in question order."""

    latencies: list[int]
    answers: list[bool]

    def percentiles(self, *qs: float, allowed: bool | None = None) -> list[int]:
        """Nearest-rank percentiles, of every answer or only of the allowed (denied) ones."""
        values = sorted(
            v for v, a in zip(self.latencies, self.answers, strict=True) if allowed in (None, a)
        )
        if not values:
            return [0 for _ in qs]
        return [values[max(0, math.ceil(q * len(values)) - 1)] for q in qs]

    @property
    def p50(self) -> int:
        return self.percentiles(0.5)[0]

    @property
    def p99(self) -> int:
        return self.percentiles(0.99)[0]

    @property
    def allowed_share(self) -> float:
        return sum(self.answers) / len(self.answers) if self.answers else 0.0


def timer_overhead(samples: int = 200_000) -> int:
    """The median of two back-to-back ``perf_counter_ns`` reads, read as ``timed`` reads them."""
    clock = time.perf_counter_ns
    found = [0] * samples
    for i in range(samples):
        start = clock()
        found[i] = clock() - start
    return sorted(found)[samples // 2]


def timed(
    ask: Callable[[str, str, str, Q], R],
    questions: Sequence[tuple[str, str, str, Q]],
    verdict: Callable[[R], bool],
    overhead: int,
) -> Sample:
    """Each question timed on its own; ``verdict`` turns an answer into allowed/denied, outside
    the timed region."""
    clock = time.perf_counter_ns
    latencies = [0] * len(questions)
    answers = [False] * len(questions)
    for i, (principal, permission, scope, at) in enumerate(questions):
        start = clock()
        result = ask(principal, permission, scope, at)
        latencies[i] = max(0, clock() - start - overhead)
        answers[i] = verdict(result)
    return Sample(latencies, answers)


def peak_rss() -> int:
    """This process's peak resident set size, in bytes.

    Linux's ``ru_maxrss`` keeps the parent's high-water mark across fork and exec, so a fresh
    child started by a big parent would report the parent's size: read the process's own
    ``VmHWM`` where there is one.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def current_rss() -> int | None:
    """This process's resident set size now, in bytes (``None`` where /proc is missing)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def physical_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}), {size(physical_memory())} RAM, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def duration(ns: float) -> str:
    """``850 ns``, ``1.4 µs``, ``23 µs``, ``1.02 ms``, ``20.6 ms``, ``1.3 s``."""
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            value = ns / scale
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{ns:.0f} ns"


def size(nbytes: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(nbytes) >= scale:
            return (
                f"{nbytes / scale:.3g} {unit}"
                if abs(nbytes) < 100 * scale
                else (f"{nbytes / scale:.0f} {unit}")
            )
    return f"{nbytes:.0f} B"
