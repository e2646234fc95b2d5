"""What a chunk costs: 200,000 trivial calls on ``processes`` at fixed chunk sizes.

Run: ``.venv/bin/python -m benchmarks.tiny_chunks [ROUNDS]`` (from the repository root).

One warm ``multiprocessing.Pool(2)`` and one warm ``get_executor("processes", max_workers=2)``;
each round runs, in a shuffled order, one pair per chunk size (automatic, then fixed sizes):
``list(ex.map(inc, range(N), chunksize=size))`` then ``pool.map(inc, range(N))``. Prints the
median of the pairs' ratios and the caller's CPU time per map (``time.process_time``: every
thread of this process, where pickling, the pool's threads and our callbacks run), for both.
"""

from __future__ import annotations

import multiprocessing
import random
import statistics
import sys
import time

import anyexec
from benchmarks.workloads import inc

N = 200_000
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 25
SIZES: tuple[int | None, ...] = (None, 1_024, 4_096, 8_192, 16_384, 25_000, 50_000)


def main() -> None:
    with multiprocessing.Pool(2) as pool, \
            anyexec.get_executor("processes", max_workers=2) as ex:
        pool.map(inc, range(1000))
        list(ex.map(inc, range(1000)))
        got: dict[int | None, list[tuple[float, float, float, float]]] = {s: [] for s in SIZES}
        order = list(SIZES)
        for _ in range(ROUNDS):
            random.shuffle(order)
            for size in order:
                cpu, wall = time.process_time(), time.perf_counter()
                list(ex.map(inc, range(N), chunksize=size))
                ours, ours_cpu = time.perf_counter() - wall, time.process_time() - cpu
                cpu, wall = time.process_time(), time.perf_counter()
                pool.map(inc, range(N))
                theirs, theirs_cpu = time.perf_counter() - wall, time.process_time() - cpu
                got[size].append((ours, theirs, ours_cpu, theirs_cpu))
        print(f"{N:,} trivial calls, anyexec processes / Pool.map, {ROUNDS} shuffled rounds")
        for size, runs in got.items():
            ratio = statistics.median(a / b for a, b, _, _ in runs)
            cpu_a = statistics.median(r[2] for r in runs) * 1e3
            cpu_b = statistics.median(r[3] for r in runs) * 1e3
            chunks = "automatic" if size is None else f"chunksize={size:,}"
            print(f"  {chunks:18s} median {ratio:.2f}x; caller CPU per map {cpu_a:.1f} ms "
                  f"(Pool.map {cpu_b:.1f} ms)")


if __name__ == "__main__":
    main()
