"""Each engine used directly, the way its documentation says to: the "B" side of every A/B.

An ``Engine`` is created inside a benchmark child process for one (workload, backend) pair. It
starts what the engine needs once (a pool, a Ray runtime, a Dask cluster), offers one or more
idiomatic variants, and stops everything it started in ``close``. Engines are imported here
only inside the functions that need them, so a missing engine costs nothing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from benchmarks.workloads import Sizes, counting, inc, nap, spin

__all__ = ["ENGINES", "Engine", "Variant", "close_shared", "fn_for", "size_for", "workers_for"]


@dataclass
class Variant:
    """One way to run the workload; ``run(n)`` returns the ``n`` results as its user holds them.

    That is a list for every workload but ``stream`` (``list(ex.map(...))``, or what the
    engine's own call returns: ``Pool.map`` returns a list, which is not copied again), and
    for ``stream`` the sum of results consumed one by one as they arrive. The harness checks
    the sum after the timer stops, so the time is what a user's own script measures.
    """

    label: str
    run: Callable[[int], int | list[int]]
    #: How many items this variant runs; fewer than the workload for slow idioms, whose time is
    #: then scaled per item to the workload's size (and the table says so).
    n: int
    #: A yardstick shown in the table (the serial loop), not a rival for "the engine's best".
    reference: bool = False


def fn_for(workload: str) -> Callable[[int], int]:
    return {"tiny": inc, "cpu": spin, "sleep": nap, "stream": inc}[workload]


def size_for(workload: str, sizes: Sizes) -> int:
    return {"tiny": sizes.tiny, "cpu": sizes.cpu, "sleep": sizes.sleep,
            "stream": sizes.stream}[workload]


def workers_for(workload: str, sizes: Sizes) -> int:
    return sizes.sleep_workers if workload == "sleep" else (os.cpu_count() or 1)


def source(workload: str, n: int) -> Iterable[int]:
    """The input: a range (length known), or for ``stream`` a generator (length unknown)."""
    return counting(n, [0]) if workload == "stream" else range(n)


class Engine:
    """The engine used directly for one workload; subclasses add variants."""

    def __init__(self, workload: str, sizes: Sizes) -> None:
        self.workload = workload
        self.sizes = sizes
        self.fn = fn_for(workload)
        self.n = size_for(workload, sizes)
        self.workers = workers_for(workload, sizes)
        self._closers: list[Callable[[], None]] = []

    def variants(self) -> list[Variant]:
        return []

    def on_close(self, closer: Callable[[], None]) -> None:
        self._closers.append(closer)

    def close(self) -> None:
        for closer in reversed(self._closers):
            closer()


class SerialEngine(Engine):
    def variants(self) -> list[Variant]:
        fn, wl = self.fn, self.workload
        if wl == "stream":
            return [Variant("for loop", lambda n: sum(fn(x) for x in source(wl, n)), self.n)]
        return [Variant("for loop", lambda n: [fn(x) for x in source(wl, n)], self.n)]


class ThreadsEngine(Engine):
    def variants(self) -> list[Variant]:
        from concurrent.futures import ThreadPoolExecutor

        if self.workload == "stream":
            return []  # Executor.map pulls the whole input first: nothing to compare with
        pool = ThreadPoolExecutor(self.workers)
        self.on_close(pool.shutdown)
        fn, wl = self.fn, self.workload
        n = min(self.n, self.sizes.tiny_slow) if wl == "tiny" else self.n
        return [Variant("ThreadPoolExecutor.map", lambda n: list(pool.map(fn, source(wl, n))),
                        n)]


class ProcessesEngine(Engine):
    def variants(self) -> list[Variant]:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = multiprocessing.Pool(self.workers)

        def stop() -> None:
            pool.terminate()
            pool.join()

        self.on_close(stop)
        fn, wl = self.fn, self.workload
        if wl == "stream":
            return [Variant("Pool.imap chunksize=1000",
                            lambda n: sum(pool.imap(fn, source(wl, n), chunksize=1000)), self.n)]
        ppe = ProcessPoolExecutor(self.workers)
        self.on_close(ppe.shutdown)
        if wl == "tiny":
            return [
                Variant("Pool.map", lambda n: pool.map(fn, source(wl, n)), self.n),
                Variant("PPE.map chunksize=1000",
                        lambda n: list(ppe.map(fn, source(wl, n), chunksize=1000)), self.n),
            ]
        out = [
            Variant("Pool.map", lambda n: pool.map(fn, source(wl, n)), self.n),
            Variant("PPE.map chunksize=1", lambda n: list(ppe.map(fn, source(wl, n))), self.n),
        ]
        if wl == "cpu":
            # Measured in the same alternation, for the speed-up over serial.
            out.append(Variant("serial loop", lambda n: [fn(x) for x in range(n)], self.n,
                               reference=True))
        return out


class JoblibEngine(Engine):
    def variants(self) -> list[Variant]:
        from joblib import Parallel, delayed

        fn, wl = self.fn, self.workload
        # Entering the context keeps the loky workers between calls, as a user's loop would.
        parallel = Parallel(n_jobs=self.workers,
                            return_as="generator" if wl == "stream" else "list")
        parallel.__enter__()
        self.on_close(lambda: parallel.__exit__(None, None, None))
        call = delayed(fn)
        if wl == "stream":
            return [Variant("Parallel(delayed)",
                            lambda n: sum(parallel(call(x) for x in source(wl, n))), self.n)]
        return [Variant("Parallel(delayed)", lambda n: parallel(call(x) for x in source(wl, n)),
                        self.n)]


class PathosEngine(Engine):
    def variants(self) -> list[Variant]:
        from pathos.pools import ProcessPool

        pool = ProcessPool(nodes=self.workers)

        def stop() -> None:
            pool.close()
            pool.join()
            pool.clear()

        self.on_close(stop)
        fn, wl = self.fn, self.workload
        if wl == "stream":
            return [Variant("ProcessPool.imap chunksize=1000",
                            lambda n: sum(pool.imap(fn, source(wl, n), chunksize=1000)), self.n)]
        return [Variant("ProcessPool.map", lambda n: pool.map(fn, source(wl, n)), self.n)]


class RayEngine(Engine):
    """Ray used directly, in the Ray runtime of this process.

    anyexec's executor is created first, so on a fresh process it starts Ray as a user's
    ``get_executor("ray", max_workers=...)`` would, and the direct idioms share that runtime.
    """

    def variants(self) -> list[Variant]:
        import ray
        from ray.util.multiprocessing import Pool

        if not ray.is_initialized():
            ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False,
                     log_to_driver=False, logging_level=logging.ERROR)
            self.on_close(ray.shutdown)
        fn, wl = self.fn, self.workload
        remote = ray.remote(fn)
        # Ray's Pool refuses more processes than the cluster's CPUs, so it is not a contender
        # for the 10-way sleep workload (fractional CPUs are, below).
        pool = Pool(processes=min(self.workers, os.cpu_count() or 1))
        self.on_close(pool.terminate)

        def tasks(n: int, options: dict[str, Any] | None = None) -> list[int]:
            r = remote.options(**options) if options else remote
            return list(ray.get([r.remote(x) for x in source(wl, n)]))

        per_item_n = min(self.n, self.sizes.tiny_per_item) if wl in ("tiny", "stream") else self.n
        if wl == "stream":
            return [Variant("ray Pool.imap chunksize=1000",
                            lambda n: sum(pool.imap(fn, source(wl, n), chunksize=1000)), self.n)]
        out = [Variant("one task per item", tasks, per_item_n)]
        if wl != "sleep":
            out.append(Variant("ray Pool.map", lambda n: pool.map(fn, source(wl, n)), self.n))
        if wl == "sleep":
            # The idiomatic way to run more tasks than CPUs at once: fractional CPU requests.
            share = (os.cpu_count() or 1) / self.workers
            out.append(Variant(f"tasks num_cpus={share:g}",
                               lambda n: tasks(n, {"num_cpus": share}), self.n))
        return out


class DaskEngine(Engine):
    """A ``LocalCluster`` of one single-threaded worker process per CPU (threads for sleep)."""

    def variants(self) -> list[Variant]:
        # Typed as Any: Dask's own annotations are partial and not what is measured here.
        import dask.bag
        import distributed

        db: Any = dask.bag
        dist: Any = distributed

        fn, wl = self.fn, self.workload
        cpus = os.cpu_count() or 1
        threads = max(1, self.workers // cpus) if wl == "sleep" else 1
        client = _dask_client(dist, cpus, threads)
        def per_item(n: int) -> list[int]:
            futures = client.map(fn, list(source(wl, n)), pure=False)
            return list(client.gather(futures))

        def bag(n: int) -> list[int]:
            return list(db.from_sequence(source(wl, n)).map(fn).compute(scheduler=client.get))

        if wl == "stream":
            return []  # no lazy, bounded map over a generator in Dask's APIs
        per_item_n = min(self.n, self.sizes.tiny_per_item) if wl == "tiny" else self.n
        label = f"client.map ({cpus}x{threads} threads)"
        bag_n = min(self.n, self.sizes.tiny_slow) if wl == "tiny" else self.n
        return [Variant(label, per_item, per_item_n), Variant("dask.bag", bag, bag_n)]


# Dask clusters outlive one workload: starting one costs seconds. Closed by close_shared().
_DASK: dict[tuple[int, int], tuple[Any, Any]] = {}


def _dask_client(dist: Any, workers: int, threads: int) -> Any:
    key = (workers, threads)
    if key not in _DASK:
        cluster = dist.LocalCluster(n_workers=workers, threads_per_worker=threads,
                                    processes=True, dashboard_address=None)
        _DASK[key] = (cluster, dist.Client(cluster, set_as_default=False))
    return _DASK[key][1]


def close_shared() -> None:
    """Stop what engines keep between workloads of one child process."""
    while _DASK:
        _key, (cluster, client) = _DASK.popitem()
        client.close()
        cluster.close()


ENGINES: dict[str, type[Engine]] = {
    "serial": SerialEngine,
    "threads": ThreadsEngine,
    "processes": ProcessesEngine,
    "joblib": JoblibEngine,
    "pathos": PathosEngine,
    "ray": RayEngine,
    "dask": DaskEngine,
}

# Expected sums, to check that every variant computed the right thing.
_SUM_OF_RANGE = {"tiny": 1, "stream": 1, "sleep": 0}


def expected(workload: str, n: int) -> int | None:
    """The sum every variant must return for ``n`` items (None: not checked)."""
    if workload == "cpu":
        return None
    offset = _SUM_OF_RANGE[workload]
    return n * (n - 1) // 2 + offset * n

