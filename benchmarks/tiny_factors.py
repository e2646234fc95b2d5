"""Why two ways of timing 200,000 trivial calls disagree: each factor alone, in one process.

Run: ``.venv/bin/python -m benchmarks.tiny_factors [ROUNDS]`` (from the repository root).

The baseline is a user's side-by-side script (``benchmarks.tiny_side_by_side``): one warm
``multiprocessing.Pool(2)`` and one warm ``get_executor("processes", max_workers=2)``,
``list(ex.map(inc, range(N)))`` then ``pool.map(inc, range(N))``. Each other configuration
changes one thing that the benchmark harness did differently before it was made to measure
the same thing (``sum`` on both sides, the order, the memory sampler, the third variant run
just before), or that might matter (the garbage collector, a function sent by value). Every
round runs one pair of each configuration, in a shuffled order, so all of them see the same
machine load; a configuration's ratio is the median over the rounds of its pairs' ratios,
with the interquartile range.
"""

from __future__ import annotations

import gc
import multiprocessing
import random
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import anyexec
from benchmarks.case import _PeakRss
from benchmarks.workloads import inc

N = 200_000
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 25


def inc_here(x: int) -> int:
    """The same function, defined in the script run as __main__ (sent by value)."""
    return x + 1


def _pair(ours: Callable[[], Any], theirs: Callable[[], Any], *, first: str = "anyexec",
          before: Callable[[], Any] | None = None, sampler: bool = False,
          no_gc: bool = False) -> float:
    def timed(run: Callable[[], Any]) -> float:
        if sampler:
            with _PeakRss():
                started = time.perf_counter()
                run()
                return time.perf_counter() - started
        started = time.perf_counter()
        run()
        return time.perf_counter() - started

    if before is not None:
        before()
    if no_gc:
        gc.disable()
    try:
        if first == "anyexec":
            a = timed(ours)
            b = timed(theirs)
        else:
            b = timed(theirs)
            a = timed(ours)
    finally:
        gc.enable()
    return a / b


def main() -> None:
    here = inc_here if __name__ != "__main__" else sys.modules["__main__"].inc_here
    with multiprocessing.Pool(2) as pool, ProcessPoolExecutor(2) as ppe, \
            anyexec.get_executor("processes", max_workers=2) as ex:
        for fn in (inc, here):
            pool.map(fn, range(1000))
            list(ex.map(fn, range(1000)))
        list(ppe.map(inc, range(1000), chunksize=1000))

        def ours(fn: Callable[[int], int] = inc) -> list[int]:
            return list(ex.map(fn, range(N)))

        def theirs(fn: Callable[[int], int] = inc) -> list[int]:
            return pool.map(fn, range(N))  # type: ignore[no-any-return]

        def ppe_run() -> int:
            return sum(ppe.map(inc, range(N), chunksize=1000))

        configs: dict[str, Callable[[], float]] = {
            "script: list(ex.map) vs pool.map": lambda: _pair(ours, theirs),
            "sum() on both sides": lambda: _pair(lambda: sum(ex.map(inc, range(N))),
                                                 lambda: sum(pool.map(inc, range(N)))),
            "Pool.map first": lambda: _pair(ours, theirs, first="pool"),
            "memory sampler thread": lambda: _pair(ours, theirs, sampler=True),
            "after PPE.map": lambda: _pair(ours, theirs, before=ppe_run),
            "garbage collector off": lambda: _pair(ours, theirs, no_gc=True),
            "__main__ function": lambda: _pair(lambda: ours(here), lambda: theirs(here)),
            "old harness (all of them)": lambda: _pair(
                lambda: sum(ex.map(inc, range(N))), lambda: sum(pool.map(inc, range(N))),
                before=ppe_run, sampler=True),
        }
        ratios: dict[str, list[float]] = {name: [] for name in configs}
        order = list(configs)
        for _ in range(ROUNDS):
            random.shuffle(order)
            for name in order:
                ratios[name].append(configs[name]())
        print(f"{N:,} trivial calls, anyexec processes / Pool.map, {ROUNDS} shuffled rounds")
        for name, got in ratios.items():
            low, _mid, high = statistics.quantiles(got, n=4)
            print(f"  {name:34s} median {statistics.median(got):.2f}x  "
                  f"(IQR {low:.2f}-{high:.2f})")


if __name__ == "__main__":
    main()
