"""Automatic chunk sizing that adapts to how long the tasks take.

Tiny tasks are batched so the engine's per-task cost (an IPC round trip, a Ray or Dask task)
is paid once per chunk; slow tasks stay one per chunk so the workers stay balanced. Each
finished chunk reports how long its calls took on the worker, and the next chunk is sized so
it takes about ``target`` seconds. Growth is geometric (at most 8x per step) so that a few
fast items at the start cannot produce one huge chunk of slow ones.

Input of unknown length (a generator, possibly endless) is capped at 4,096 trivial items per
chunk on the cheapest engines: that keeps the caller's memory flat (65,536 grew the parent by
15-30 MB on a million-item generator); engines with a costlier task (Ray, Dask: a larger
``target``) get a proportionally larger cap. Input of known length is finite and already
bounded per chunk by the guided self-scheduling below, so it gets the largest cap: each chunk
costs the caller ~0.13 ms of its own CPU on ``processes`` (the CPU the workers need on a small
machine). 200,000 trivial calls in fixed chunks of 4,096 took 1.08x ``Pool.map``'s 8 chunks
of 25,000, in chunks of 16,384 0.89x (docs/benchmarks.md, "The tiny-task figure").

A map can start from an earlier map's measured call duration (``per_item``): the executor
remembers it for the last function it mapped, so repeated maps skip the ramp from single items.
"""

from __future__ import annotations

import math

__all__ = ["Chunker"]

_GROWTH = 8
# The cap on input of unknown length for the cheapest engines (target 0.02 s, processes); it
# scales with the target. Input of known length is capped at _MAX_CHUNK.
_BASE_MAX_CHUNK = 4_096
_BASE_TARGET = 0.02
_MAX_CHUNK = 65_536
# When the input's length is known, no chunk is larger than remaining / (workers * this):
# chunks shrink towards the end (guided self-scheduling), so no worker idles while another
# finishes a big last chunk. Simulated and measured (100 x 9 ms on Ray, 2 workers, ~10 ms per
# task): 2 -> 0.56 s, 4 -> 0.60 s, 8 -> 0.67 s (ideal 0.45 s); sleep workloads do not care.
_CHUNKS_PER_WORKER = 2
# ... but no smaller than a chunk lasting target / this (5x the engine's per-task cost): below
# that the tail's tasks cost more than the imbalance they avoid. Measured: without this floor,
# 200,000 trivial calls on Dask ended in ~150 shrinking tasks and took 1.3 s instead of 0.16 s.
_TAIL_FLOOR = 20


class Chunker:
    """Chooses the size of each chunk; a fixed ``chunksize`` disables adaptation."""

    def __init__(self, *, fixed: int | None, target_seconds: float, workers: int,
                 total: int | None, per_item: float | None = None) -> None:
        self._fixed = fixed
        self._target = target_seconds
        self._workers = max(1, workers)
        self._total = total
        self._size = 1
        self._per_item: float | None = None
        scale = max(1.0, target_seconds / _BASE_TARGET)
        self._max = _MAX_CHUNK if total is not None else \
            min(_MAX_CHUNK, int(_BASE_MAX_CHUNK * scale))
        if per_item is not None and fixed is None:
            # What an earlier map of the same function measured: start one growth step below
            # the size it settled on instead of from single items. A map whose calls turn out
            # slower than that map's starts with chunks of at most 1/8 of the target; slow
            # calls (over target / 8 each) still start one per chunk.
            self._per_item = max(per_item, 1e-8)
            wanted = int(target_seconds / self._per_item)
            self._size = max(1, min(wanted, self._max) // _GROWTH)

    @property
    def per_item(self) -> float | None:
        """The current estimate of one call's duration on a worker (None: nothing measured)."""
        return None if self._fixed is not None else self._per_item

    def next_size(self, pulled: int) -> int:
        """Size of the next chunk, given that ``pulled`` items were taken so far."""
        if self._fixed is not None:
            return self._fixed
        size = self._size
        if self._total is not None:
            remaining = self._total - pulled
            balanced = math.ceil(remaining / (self._workers * _CHUNKS_PER_WORKER))
            if self._per_item is not None:
                balanced = max(balanced, int(self._target / (_TAIL_FLOOR * self._per_item)))
            size = min(size, balanced)
        return max(1, size)

    def observe(self, items: int, seconds: float) -> None:
        """Learn from a finished chunk: ``items`` calls took ``seconds`` on the worker."""
        if self._fixed is not None or items <= 0:
            return
        per_item = max(seconds / items, 1e-8)
        # Weighted towards the latest chunk, so a change in task duration is followed quickly.
        self._per_item = per_item if self._per_item is None else (self._per_item + per_item) / 2
        wanted = max(1, int(self._target / self._per_item))
        self._size = max(1, min(wanted, self._size * _GROWTH, self._max))
