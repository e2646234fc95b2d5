"""``amap`` against ``map`` on processes: 200,000 trivial items, same executor, same run.

Run: ``.venv/bin/python -m benchmarks.amap_ratio`` (from the repository root). Prints the best
of seven runs of each: ``map`` drained by ``sum`` (C speed), ``map`` consumed by a ``for``
loop, ``amap`` consumed by an ``async for`` loop, and the ratios; then the floor: ``async for``
over an in-memory async generator of as many items (what any async iterator costs per item).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator

import anyexec
from benchmarks.workloads import inc

N = 200_000
REPS = 7


async def main() -> None:
    with anyexec.get_executor("processes", max_workers=2) as ex:
        list(ex.map(inc, range(N)))  # start the workers
        t_sum, t_for, t_async = [], [], []
        for _ in range(REPS):
            start = time.perf_counter()
            expected = sum(ex.map(inc, range(N)))
            t_sum.append(time.perf_counter() - start)
            start = time.perf_counter()
            total = 0
            for value in ex.map(inc, range(N)):
                total += value
            t_for.append(time.perf_counter() - start)
            start = time.perf_counter()
            total_async = 0
            async for value in ex.amap(inc, range(N)):
                total_async += value
            t_async.append(time.perf_counter() - start)
            if not expected == total == total_async:
                raise AssertionError("amap and map disagree")
        for label, pick in (("best", min), ("median", statistics.median)):
            s, f, a = pick(t_sum), pick(t_for), pick(t_async)
            print(f"{label}: map+sum {s * 1e3:.1f} ms, map+for {f * 1e3:.1f} ms, "
                  f"amap+async for {a * 1e3:.1f} ms; amap/map+for {a / f:.2f}, "
                  f"amap/map+sum {a / s:.2f}")
        values = list(range(N))

        async def in_memory() -> AsyncIterator[int]:
            for value in values:
                yield value

        floor = []
        for _ in range(REPS):
            start = time.perf_counter()
            async for _value in in_memory():
                pass
            floor.append(time.perf_counter() - start)
        print(f"floor: async for over {N} in-memory items {min(floor) * 1e3:.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
