"""One (workload, backend) pair, run in its own child process: ``python -m benchmarks.case``.

anyexec (A) and the engine used directly (B, one or more idiomatic variants) run alternately,
A B1 B2 A B1 B2 ..., after one untimed warm-up of each, so both see the same machine load.
The result is written as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from benchmarks.engines import ENGINES, Engine, Variant, expected, fn_for, source
from benchmarks.workloads import SIZES, Sizes, counting

__all__ = ["main", "run_case"]

ANYEXEC = "anyexec"


class _PeakRss:
    """Samples this process's resident memory in a thread; ``growth`` is peak minus start."""

    def __init__(self) -> None:
        try:
            import psutil
        except ImportError:  # psutil is a dev dependency; without it no memory figures
            self._proc: Any = None
        else:
            self._proc = psutil.Process()
        self.growth = 0
        self._stop = threading.Event()

    def __enter__(self) -> _PeakRss:
        if self._proc is not None:
            self._start = self._peak = self._proc.memory_info().rss
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self._peak = max(self._peak, self._proc.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, self._proc.memory_info().rss)
            self.growth = self._peak - self._start


def _anyexec_variant(backend: str, workload: str, engine: Engine) -> tuple[Variant, Any]:
    import anyexec

    ex = anyexec.get_executor(backend, max_workers=engine.workers)
    fn = fn_for(workload)

    def run(n: int) -> int:
        return sum(ex.map(fn, source(workload, n)))

    return Variant(ANYEXEC, run, engine.n), ex


def _stall(make: Callable[[list[int]], Iterator[int]], consumed: int,
           pause: float) -> dict[str, Any]:
    """Consume a few results, then stop consuming for ``pause`` s: does the input stop too?"""
    pulled = [0]
    it = make(pulled)
    for _ in range(consumed):
        next(it)
    time.sleep(pause / 2)
    settled = pulled[0]
    time.sleep(pause / 2)
    bound = None
    frame = getattr(it, "gi_frame", None)
    local = frame.f_locals if frame is not None else {}
    run = local.get("self")
    if run is not None and hasattr(run, "_items_open"):
        # anyexec's own count of items in flight or waiting to be yielded (the window), plus
        # the chunk being yielded now.
        bound = run._items_open + len(local.get("values") or ())
    close = getattr(it, "close", None)
    if close is not None:
        close()
    return {"consumed": consumed, "pulled_ahead": pulled[0] - consumed,
            "grew_while_stalled": pulled[0] - settled, "window_items": bound}


def run_case(workload: str, backend: str, sizes: Sizes) -> dict[str, Any]:
    """Time anyexec and the engine's idioms alternately; return medians' raw material."""
    result: dict[str, Any] = {"workload": workload, "backend": backend, "times": {},
                              "n": {}, "memory": {}, "extra": {}, "reference": []}
    # A plugin backend with no direct counterpart here still gets its anyexec figures.
    engine = ENGINES.get(backend, Engine)(workload, sizes)
    ex = None
    try:
        ours, ex = _anyexec_variant(backend, workload, engine)
        variants = [ours, *engine.variants()]
        result["workers"] = engine.workers
        result["full_n"] = engine.n
        warm = min(engine.n, 4 * engine.workers)
        for variant in variants:
            variant.run(min(variant.n, warm))  # starts workers, imports the function
            result["times"][variant.label] = []
            result["n"][variant.label] = variant.n
            result["memory"][variant.label] = []
            if variant.reference:
                result["reference"].append(variant.label)
        for _ in range(sizes.reps):
            for variant in variants:
                with _PeakRss() as rss:
                    started = time.perf_counter()
                    total = variant.run(variant.n)
                    seconds = time.perf_counter() - started
                want = expected(workload, variant.n)
                if want is not None and total != want:
                    raise AssertionError(f"{variant.label} returned {total}, expected {want}")
                result["times"][variant.label].append(seconds)
                result["memory"][variant.label].append(rss.growth)
        if workload == "stream":
            result["extra"]["stall"] = _stall_checks(backend, engine, ex)
    finally:
        # The engine first: anyexec's executor may own the runtime the engine's idioms share.
        engine.close()
        if ex is not None:
            ex.shutdown()
    return result


def _stall_checks(backend: str, engine: Engine, ex: Any) -> dict[str, Any]:
    fn = fn_for("stream")
    n = engine.n
    checks = {ANYEXEC: _stall(lambda pulled: ex.map(fn, counting(n, pulled)), 10, 1.0)}
    if backend == "processes":
        import multiprocessing

        with multiprocessing.Pool(engine.workers) as pool:
            checks["Pool.imap chunksize=1000"] = _stall(
                lambda pulled: pool.imap(fn, counting(n, pulled), chunksize=1000), 10, 1.0)
            pool.terminate()
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workload", required=True)
    parser.add_argument("--backend", required=True)
    parser.add_argument("--mode", default="quick", choices=sorted(SIZES))
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        result = run_case(args.workload, args.backend, SIZES[args.mode])
    except BaseException as exc:  # reported in the table, not fatal to the whole run
        result = {"workload": args.workload, "backend": args.backend,
                  "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    with open(args.out, "w") as out:
        json.dump(result, out)
    sys.stdout.flush()
    # Engines leave non-daemon threads behind (Dask, Ray); the result is written, so go.
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
