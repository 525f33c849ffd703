"""``python -m bench``: run every benchmark in ``bench/`` (or those named with ``--only``).

This module owns the command line shared by the benchmarks (``--only``, ``--scale``) and the
list of benchmarks; each benchmark module adds its own options and prints its own report.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench import activations, decisions, http_activations, http_check, revocation, worker


@dataclass(frozen=True, slots=True)
class Benchmark:
    name: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


BENCHMARKS = (
    Benchmark(decisions.NAME, decisions.add_arguments, decisions.run),
    Benchmark(worker.NAME, worker.add_arguments, worker.run),
    Benchmark(activations.NAME, activations.add_arguments, activations.run),
    Benchmark(http_check.NAME, http_check.add_arguments, http_check.run),
    Benchmark(http_activations.NAME, http_activations.add_arguments, http_activations.run),
    Benchmark(revocation.NAME, revocation.add_arguments, revocation.run),
)


def _scale(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError("a scale is in (0, 1]: 1 is the issue's full size")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--only",
        action="append",
        choices=[b.name for b in BENCHMARKS],
        help="run only this benchmark (repeatable)",
    )
    parser.add_argument(
        "--scale",
        type=_scale,
        default=1.0,
        help="size of the generated data, 1 = full size (0.01 for a quick smoke run)",
    )
    for benchmark in BENCHMARKS:
        benchmark.add_arguments(parser)
    args = parser.parse_args(argv)
    status = 0
    for benchmark in BENCHMARKS:
        if args.only is None or benchmark.name in args.only:
            status = benchmark.run(args) or status
    return status


if __name__ == "__main__":
    sys.exit(main())
