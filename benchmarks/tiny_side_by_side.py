"""200,000 trivial calls: anyexec ``processes`` against a warm ``multiprocessing.Pool``.

Run: ``.venv/bin/python -m benchmarks.tiny_side_by_side`` (from the repository root). What a
user's side-by-side script does, nothing more: one warm ``multiprocessing.Pool(2)`` and one warm
``get_executor("processes", max_workers=2)``, alternating ``list(ex.map(f, range(N)))`` with
``pool.map(f, range(N))``, for a function defined in an importable module (sent by reference)
and for one defined in the script (sent by value, as cloudpickle does for ``__main__``). Prints
each pair's ratio, their median per function, and the ratio of the two best times (what an idle
machine would show: load only ever adds time, and on a busy machine it pulls the paired ratios
towards 1). The harness (``python -m benchmarks``, tiny workload on processes) times the
module-function case the same way: ``list(ex.map(...))`` against ``pool.map(...)``.
"""

from __future__ import annotations

import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import anyexec
from benchmarks.workloads import inc

N = 200_000
PAIRS = int(sys.argv[1]) if len(sys.argv) > 1 else 15


def inc_here(x: int) -> int:
    """The same function, defined in the script run as __main__."""
    return x + 1


def pairs(ex: Any, pool: Any, fn: Callable[[int], int]) -> tuple[list[float], float]:
    ratios, ours_best, theirs_best = [], float("inf"), float("inf")
    for _ in range(PAIRS):
        start = time.perf_counter()
        list(ex.map(fn, range(N)))
        ours = time.perf_counter() - start
        start = time.perf_counter()
        pool.map(fn, range(N))
        theirs = time.perf_counter() - start
        ratios.append(ours / theirs)
        ours_best, theirs_best = min(ours_best, ours), min(theirs_best, theirs)
    return ratios, ours_best / theirs_best


def main() -> None:
    here = inc_here if __name__ != "__main__" else sys.modules["__main__"].inc_here
    with multiprocessing.Pool(2) as pool, \
            anyexec.get_executor("processes", max_workers=2) as ex:
        for fn in (inc, here):
            pool.map(fn, range(1000))
            list(ex.map(fn, range(1000)))
        for name, fn in (("module function", inc), ("__main__ function", here)):
            ratios, best = pairs(ex, pool, fn)
            shown = " ".join(f"{r:.2f}" for r in ratios)
            print(f"{name}: median {statistics.median(ratios):.2f}x Pool.map, best times "
                  f"{best:.2f}x  ({shown})")


if __name__ == "__main__":
    main()
