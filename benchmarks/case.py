"""One (workload, backend) pair, run in its own child process: ``python -m benchmarks.case``.

anyexec (A) and the engine used directly (B, one or more idiomatic variants) run alternately,
A B1 B2, B1 B2 A, B2 A B1, ..., after one untimed warm-up of each, so all see the same machine
load and none always runs right after the same other.
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

from benchmarks.engines import (
    ENGINES,
    Engine,
    Variant,
    close_shared,
    expected,
    fn_for,
    source,
    workers_for,
)
from benchmarks.workloads import SIZES, Sizes, counting

__all__ = ["main", "run_cases"]

ANYEXEC = "anyexec"
# Repetitions beyond ``Sizes.reps`` (up to ``Sizes.tiny_reps``) run only within this time.
_EXTRA_REPS_SECONDS = 20.0


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


def _anyexec_variant(ex: Any, workload: str, engine: Engine) -> Variant:
    fn = fn_for(workload)

    def run(n: int) -> int | list[int]:
        # What a user writes: results = list(ex.map(...)); a stream is consumed as it comes.
        if workload == "stream":
            return sum(ex.map(fn, source(workload, n)))
        return list(ex.map(fn, source(workload, n)))

    return Variant(ANYEXEC, run, engine.n)


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
    # anyexec's map iterator hands out values from a generator of chunks, which holds the run.
    frame = getattr(getattr(it, "_chunks", it), "gi_frame", None)
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


def run_cases(workloads: list[str], backend: str, sizes: Sizes) -> list[dict[str, Any]]:
    """Run the workloads (all with the same ``max_workers``) on one executor and one engine
    runtime, so the engine starts once per process; return one result per workload."""
    import anyexec

    workers = workers_for(workloads[0], sizes)
    ex = anyexec.get_executor(backend, max_workers=workers)
    try:
        return [_run_one(ex, workload, backend, sizes) for workload in workloads]
    finally:
        close_shared()
        ex.shutdown()


def _run_one(ex: Any, workload: str, backend: str, sizes: Sizes) -> dict[str, Any]:
    """Time anyexec and the engine's idioms alternately for one workload."""
    result: dict[str, Any] = {"workload": workload, "backend": backend, "times": {},
                              "n": {}, "memory": {}, "extra": {}, "reference": []}
    engine: Engine | None = None
    try:
        # A plugin backend with no direct counterpart here still gets its anyexec figures.
        engine = ENGINES.get(backend, Engine)(workload, sizes)
        variants = [_anyexec_variant(ex, workload, engine), *engine.variants()]
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
        # The tiny workload's ratio is a few milliseconds on ~30 ms per run: its pairs spread
        # 0.8x-1.7x on a shared 2-core machine, so it gets more of them while they are cheap.
        reps = sizes.tiny_reps if workload == "tiny" else sizes.reps
        began = time.monotonic()
        for rep in range(reps):
            if rep >= sizes.reps and time.monotonic() - began > _EXTRA_REPS_SECONDS:
                break
            # Rotate the order each repetition, so no variant always follows the same one.
            shift = rep % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                if workload == "sleep":
                    # Engines resize their worker pools (Ray ends idle workers after a second;
                    # a 2-slot variant leaves 8 of 10 workers idle): each variant is timed
                    # from its own warm pool, not from the pool the previous variant left.
                    variant.run(min(variant.n, warm))
                with _PeakRss() as rss:
                    started = time.perf_counter()
                    got = variant.run(variant.n)
                    seconds = time.perf_counter() - started
                total = got if isinstance(got, int) else sum(got)
                del got
                want = expected(workload, variant.n)
                if want is not None and total != want:
                    raise AssertionError(f"{variant.label} returned {total}, expected {want}")
                result["times"][variant.label].append(seconds)
                result["memory"][variant.label].append(rss.growth)
        if workload == "stream":
            result["extra"]["stall"] = _stall_checks(backend, engine, ex)
    except Exception as exc:  # reported in the table; the other workloads still run
        return {"workload": workload, "backend": backend,
                "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    finally:
        if engine is not None:
            engine.close()
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
    parser.add_argument("--workloads", required=True, help="comma-separated, same max_workers")
    parser.add_argument("--backend", required=True)
    parser.add_argument("--mode", default="quick", choices=sorted(SIZES))
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    workloads = args.workloads.split(",")
    try:
        results = run_cases(workloads, args.backend, SIZES[args.mode])
    except BaseException as exc:  # reported in the table, not fatal to the whole run
        results = [{"workload": w, "backend": args.backend,
                    "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
                   for w in workloads]
    with open(args.out, "w") as out:
        json.dump(results, out)
    sys.stdout.flush()
    # Engines leave non-daemon threads behind (Dask, Ray); the results are written, so go.
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
