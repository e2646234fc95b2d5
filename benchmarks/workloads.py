"""The task functions and the sizes of each workload.

The functions live in an importable module (not ``__main__``) so every engine can send them by
reference; the harness puts the repository root on ``PYTHONPATH`` for every child process.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["SIZES", "Sizes", "counting", "inc", "nap", "spin"]

# Iterations of the pure-Python loop in ``spin`` that take about 9 ms on the reference machine
# (a 2-core cloud VM with Python 3.11). Fixed, not calibrated per run, so runs compare.
SPIN_LOOPS = 180_000
NAP_SECONDS = 0.05


def inc(x: int) -> int:
    """The trivial task: all cost is the engine's."""
    return x + 1


def spin(x: int) -> int:
    """About 9 ms of pure-Python CPU work (holds the GIL)."""
    total = x
    for i in range(SPIN_LOOPS):
        total += i * i
    return total


def nap(x: int) -> int:
    """Waits 50 ms without using the CPU (I/O-like)."""
    time.sleep(NAP_SECONDS)
    return x


def counting(n: int, pulled: list[int]) -> Iterator[int]:
    """A lazy generator of ``n`` items that counts how many were pulled in ``pulled[0]``."""
    for i in range(n):
        pulled[0] = i + 1
        yield i


@dataclass(frozen=True)
class Sizes:
    """How big each workload is in one mode."""

    tiny: int  # trivial calls
    tiny_per_item: int  # trivial calls for engines' one-task-per-item idiom (extrapolated)
    tiny_slow: int  # trivial calls for other slow idioms (TPE.map, dask.bag; extrapolated)
    cpu: int  # ~9 ms tasks
    sleep: int  # 50 ms naps
    sleep_workers: int
    stream: int  # generator length
    reps: int  # timed repetitions of each variant, alternating
    tiny_reps: int  # the tiny workload's, where each costs little (see case._EXTRA_REPS_SECONDS)


SIZES = {
    "full": Sizes(tiny=200_000, tiny_per_item=2_000, tiny_slow=20_000, cpu=200, sleep=100,
                  sleep_workers=10, stream=1_000_000, reps=5,
                  tiny_reps=15),
    # The tiny workload keeps its full size: the chunking target is stated at 200,000 calls.
    "quick": Sizes(tiny=200_000, tiny_per_item=500, tiny_slow=10_000, cpu=100, sleep=100,
                   sleep_workers=10, stream=200_000, reps=3,
                   tiny_reps=9),
    # The CI smoke run: every code path once, as small as it gets; no timing value.
    "smoke": Sizes(tiny=2_000, tiny_per_item=100, tiny_slow=500, cpu=8, sleep=20,
                   sleep_workers=10, stream=5_000, reps=1,
                   tiny_reps=1),
}
