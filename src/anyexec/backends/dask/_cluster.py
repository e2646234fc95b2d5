# Much of distributed's public API has no annotations; calling it is not an error here.
# mypy: disable-error-code="no-untyped-call"
"""Where the Dask backend's tasks run: a ``LocalCluster`` it starts, or a cluster it joins.

``open_cluster`` starts or connects, ``close_cluster`` closes only what was ours; the other
functions read what the cluster is (its size, its workers, what they offer).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import multiprocessing
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distributed import Client, LocalCluster

    from anyexec.backends.dask._options import Options, StartMethod

__all__ = ["Cluster", "capabilities", "close_cluster", "open_cluster", "threads",
           "warn_missing_resources", "worker_pids", "workers_see"]

log = logging.getLogger("anyexec")

_MAIN_GUARD = (
    "the Dask backend's local cluster starts worker processes that import your main module "
    "(Dask starts them with forkserver or spawn); code that creates an executor at the top "
    "level of a script must sit under  if __name__ == '__main__':"
)


@dataclass
class Cluster:
    """The client this executor talks through, and what it must close."""

    client: Client
    #: The LocalCluster we started (None for a joined cluster, and once closed).
    local: LocalCluster | None = None
    #: Threads of the local cluster (worker processes x threads per worker); 0 if joined.
    threads: int = 0
    owns_client: bool = True
    #: The thread of the Dask task this executor was created in, when it maps on the cluster
    #: that runs that task (see _nested_client); it rejoins the worker's pool at close.
    seceded: int | None = None


def open_cluster(options: Options) -> Cluster:
    """Start the local cluster, or connect to the one ``options`` names."""
    if options.client is not None:
        return Cluster(_check_client(options.client), owns_client=False)
    if options.remote:
        nested = _nested_client(options.address, options.scheduler_file)
        if nested is not None:
            return Cluster(nested, owns_client=False, seceded=threading.get_ident())
        return Cluster(_connect(options.address, options.scheduler_file,
                                options.connect_timeout))
    return _start(options)


def _start(options: Options) -> Cluster:
    if options.processes and getattr(multiprocessing.current_process(), "_inheriting", False):
        # We run inside a worker process that is importing the caller's main module.
        raise RuntimeError(_MAIN_GUARD)
    per_worker = options.threads_per_worker or _default_threads(options.workers)
    n_workers = math.ceil(options.workers / per_worker)
    cluster = _start_local_cluster(
        n_workers=n_workers, threads_per_worker=per_worker, processes=options.processes,
        memory_limit=options.memory_limit, resources=options.resources,
        start_method=options.start_method)
    try:
        from distributed import Client

        client = Client(cluster, set_as_default=False, timeout=options.connect_timeout)
    except BaseException:
        cluster.close()
        raise
    return Cluster(client, local=cluster, threads=n_workers * per_worker)


def close_cluster(cluster: Cluster) -> None:
    """Close our client and our local cluster; a joined cluster keeps running."""
    if cluster.seceded == threading.get_ident():
        # Back into the worker's pool of threads, which we left to wait (_nested_client).
        cluster.seceded = None
        from distributed import rejoin

        with contextlib.suppress(Exception):
            rejoin()
    if cluster.owns_client:
        with _quiet_lost_connection(cluster.client), contextlib.suppress(Exception):
            cluster.client.close()
    if cluster.local is not None:
        with contextlib.suppress(Exception):
            cluster.local.close()
        cluster.local = None


def capabilities(cluster: Cluster, processes: bool) -> frozenset[str]:
    """What the cluster really is, as the core's capabilities."""
    if cluster.local is not None:
        if not processes:
            # Worker threads in this process: a crash there is a crash here.
            return frozenset()
        # Our nannies restart a dead worker, and we set allowed-failures to 0 so that the
        # task that killed it fails at once instead of killing more workers.
        return frozenset({"isolated", "recovers_from_worker_death", "reuses_workers"})
    workers = cluster.client.scheduler_info().get("workers", {})
    found = {"isolated"}
    if workers and all(w.get("nanny") for w in workers.values()):
        found.add("recovers_from_worker_death")
    return frozenset(found)


def threads(client: Client) -> int:
    """The cluster's current thread count, as the client last heard it."""
    # The client refreshes this summary every 2 s (distributed.client.scheduler-info-
    # interval) on its own: reading it costs no round trip, so the core may read
    # max_workers at every chunk. Private to distributed, hence the fallback.
    identity = getattr(client, "_scheduler_identity", None) or {}
    total = identity.get("total_threads")
    if isinstance(total, int):
        return total
    workers = identity.get("workers") or {}
    return sum(int(w.get("nthreads", 1)) for w in workers.values())


def workers_see(client: Client, folder: str) -> bool:
    """Whether every worker of the cluster shares our file system (sees ``folder``)."""
    try:
        seen = client.run(os.path.isdir, folder)
    except Exception:
        return False
    return bool(seen) and all(seen.values())


def worker_pids(cluster: Cluster) -> list[int]:
    """The PIDs of our local cluster's worker processes (none for a joined cluster)."""
    if cluster.local is None:
        return []
    pids = []
    for nanny in list(cluster.local.workers.values()):
        process = getattr(getattr(nanny, "process", None), "process", None)
        pid = getattr(process, "pid", None)
        if isinstance(pid, int):
            pids.append(pid)
    return pids


def warn_missing_resources(cluster: Cluster, resources: dict[str, float] | None) -> None:
    """Log the resources no worker of a joined cluster offers (yet)."""
    if not resources or cluster.local is not None:
        return
    workers = cluster.client.scheduler_info().get("workers", {}).values()
    offered = {name for w in workers for name in (w.get("resources") or {})}
    missing = sorted(set(resources) - offered)
    if missing:
        # Not an error: workers offering them may join later (adaptive clusters).
        log.warning("anyexec: no worker of the Dask cluster offers the resource(s) %s yet; "
                    "tasks wait until one does (start workers with "
                    "'dask worker --resources \"%s=1\"')", ", ".join(missing), missing[0])


@contextlib.contextmanager
def _quiet_lost_connection(client: Any) -> Iterator[None]:
    """While closing a client that is still trying to reach its lost scheduler, drop the
    traceback distributed logs for the reconnection attempt that closing interrupts."""
    if client.status != "connecting":
        yield
        return
    import asyncio

    def keep(record: logging.LogRecord) -> bool:
        kind = record.exc_info[0] if record.exc_info else None
        return not (kind is not None and issubclass(kind, asyncio.CancelledError))

    quiet = logging.getLogger("distributed.client")
    quiet.addFilter(keep)
    try:
        yield
    finally:
        quiet.removeFilter(keep)


def _nested_client(address: str | None, scheduler_file: str | None) -> Client | None:
    """In a Dask task on the cluster at ``address``: the worker's client, after seceding.

    A task that maps on the cluster running it and waits for the results would hold its
    worker thread all along; with every thread held, the inner tasks never start. Seceding
    (what ``distributed.worker_client`` does) lets the worker start another thread for them.
    """
    if "distributed" not in sys.modules:
        return None
    from distributed import get_client, get_worker, secede

    try:
        worker = get_worker()
    except ValueError:
        return None  # not in a Dask task
    if address is None and scheduler_file is not None:
        try:
            address = json.loads(Path(scheduler_file).read_text())["address"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
    if address is None:
        return None
    wanted = address if "://" in address else f"tcp://{address}"
    if wanted != worker.scheduler.address:
        return None
    try:
        client = get_client()
    except ValueError:
        return None  # not in a task's thread
    secede()
    return client


def _check_client(client: Any) -> Client:
    from distributed import Client

    if not isinstance(client, Client):
        raise TypeError(f"client must be a distributed.Client, got {type(client).__name__}")
    return client


def _connect(address: str | None, scheduler_file: str | None, timeout: float) -> Client:
    from distributed import Client

    if address is not None and "://" not in address:
        address = f"tcp://{address}"
    where = address if address is not None else f"the scheduler in {scheduler_file}"
    try:
        return Client(address, scheduler_file=scheduler_file, timeout=timeout,
                      set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConnectionError(
            f"could not connect to a Dask scheduler at {where} within {timeout:g} s "
            f"({type(exc).__name__}: {exc}). Check that 'dask scheduler' runs there and "
            "that the port is reachable, or drop the address to start a local cluster."
        ) from exc


def _default_threads(workers: int) -> int:
    """Threads per local worker process: 1 up to the CPU count; beyond, as many threads as it
    takes for one process per CPU. Measured on 2 CPUs with 10 sleeping tasks at once: 10
    single-thread workers kept 0.62-0.65 s for 100 x 50 ms tasks, 2 workers x 5 threads
    0.57-0.59 s (Dask's scheduler balances fewer, larger workers better)."""
    cpus = os.cpu_count() or 1
    return 1 if workers <= cpus else math.ceil(workers / cpus)


def _start_local_cluster(*, n_workers: int, threads_per_worker: int, processes: bool,
                         memory_limit: float | str | None, resources: dict[str, float] | None,
                         start_method: StartMethod | None) -> LocalCluster:
    import dask
    from distributed import LocalCluster

    extra: dict[str, Any] = {}
    if resources:
        # Our workers offer what the tasks ask for, one task per thread; resources only
        # constrain placement on real clusters.
        extra["resources"] = {k: v * threads_per_worker for k, v in resources.items()}
    if processes:
        # In-process workers talk over inproc://, which takes no host.
        extra["memory_limit"] = memory_limit
        extra["host"] = "127.0.0.1"
    if processes and multiprocessing.current_process().daemon:
        # A worker of a process pool (processes, joblib, pathos) may not have children, so the
        # cluster's worker processes cannot start; Dask would blame a missing main guard.
        raise RuntimeError(
            "cannot start a Dask LocalCluster with worker processes inside a daemonic worker "
            f"process ({multiprocessing.current_process().name}): daemonic processes cannot "
            "have children. Inside a task, use the default backend (serial), "
            "'dask?processes=false' (worker threads), or connect to a running cluster with "
            "'dask://HOST:PORT'"
        )
    method = start_method or dask.config.get("distributed.worker.multiprocessing-method")
    if start_method is None and method == "spawn" and \
            "forkserver" in multiprocessing.get_all_start_methods():
        # Dask's default is spawn; a fork server that has imported distributed starts the
        # workers of every later cluster in this process in ~0.2 s instead of ~2 s.
        method = "forkserver"
    with dask.config.set({"distributed.worker.multiprocessing-method": method}):
        try:
            return _new_local_cluster(LocalCluster, n_workers, threads_per_worker, processes,
                                      extra)
        except RuntimeError as exc:
            main = sys.modules.get("__main__")
            if not processes or getattr(main, "__file__", None) is None:
                raise
            raise RuntimeError(f"could not start a Dask LocalCluster ({exc}). If this runs in "
                               f"a script: {_MAIN_GUARD}") from exc


def _new_local_cluster(cls: Any, n_workers: int, threads_per_worker: int, processes: bool,
                       extra: dict[str, Any]) -> LocalCluster:
    cluster: LocalCluster = cls(
        n_workers=n_workers, threads_per_worker=threads_per_worker, processes=processes,
        dashboard_address=None,
        scheduler_kwargs={
            # A task that kills its worker fails at once (KilledWorker) instead of being rerun
            # on the next worker; anyexec's own retries= decides whether to run it again.
            "allowed_failures": 0,
            # No dashboard; the scheduler's health endpoint takes any free local port instead
            # of 8787 (and a warning when a second cluster finds 8787 taken).
            "dashboard": False, "dashboard_address": "127.0.0.1:0",
        },
        **extra,
    )
    return cluster
