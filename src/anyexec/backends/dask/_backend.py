"""``DaskBackend``: the options, the cluster, the dispatcher and the crash accounting put
together, the collector thread that delivers outcomes, and shutdown."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from anyexec._worker import run_chunk
from anyexec.backends.dask._cluster import (
    Cluster,
    capabilities,
    close_cluster,
    open_cluster,
    warn_missing_resources,
    worker_pids,
)
from anyexec.backends.dask._dispatch import Dispatcher, Job, Shared, Window
from anyexec.backends.dask._options import Options, StartMethod
from anyexec.backends.dask._outcome import gather, settle
from anyexec.backends.dask._recovery import Recovery, lost_with_scheduler, scheduler_lost
from anyexec.backends.support import fail, kill

__all__ = ["DaskBackend"]

# On a local cluster whose threads number exactly max_workers, this many tasks per slot are in
# Dask at once: the one running and the next, already on its worker.
_AHEAD = 2


class DaskBackend:
    """Runs tasks on a Dask cluster: one it starts (default) or one it connects to.

    Options:

    - ``max_workers``: tasks running at once (default: the CPU count for a local cluster, the
      cluster's thread count for a remote one). A local cluster gets enough worker processes
      of ``threads_per_worker`` threads for that many tasks.
    - ``threads_per_worker``: default one thread per worker process while ``max_workers`` is
      at most the CPU count (CPU-bound work, no GIL sharing); beyond it, one worker process
      per CPU with the threads spread over them (I/O-bound work).
    - ``address``: a scheduler to connect to (``HOST:PORT``, ``tcp://HOST:PORT``,
      ``tls://...``); also given as ``dask://HOST:PORT``. ``scheduler_file``: the same, read
      from a file written by ``dask scheduler --scheduler-file``. ``client``: an existing
      ``distributed.Client`` to use (left open).
    - ``processes``, ``memory_limit``, ``start_method`` (how worker
      processes start; default ``forkserver`` where available): shape the local cluster.
    - ``resources``: what each task needs on a worker (``{"GPU": 1}``), Dask's resources.
    - ``retries``: Dask's own retries of a task that failed outside your function.
    - ``priority``: Dask priority of this executor's tasks (higher runs first).
    - ``connect_timeout``: seconds to wait for the scheduler.
    """

    requires = ("dask", "distributed")
    engine = "dask"
    install_hint = "pip install 'anyexec[dask]'"
    pickles = True
    # Measured: 1-3 ms of Dask per task, plus the round trip before the next task starts
    # (tasks wait here, not on the worker): 5-10 ms in all on a busy machine. The core then
    # aims for chunks of ~0.5 s.
    task_overhead = 5e-3
    #: The ``share`` hook: scatter a large function payload to the cluster once (see
    #: :meth:`_scatter_once`). None on the local process cluster this backend started, whose
    #: workers run on this machine: the core then puts the payload in shared memory, which
    #: every worker maps without a copy (``python -m benchmarks.big --backends dask``: 1.3-1.9x
    #: the raw copy with scatter, see docs/benchmarks.md).
    share: Callable[[Any], Any] | None = None

    def __init__(self, *, max_workers: int | None = None, address: str | None = None,
                 scheduler_file: str | None = None, client: Any = None,
                 threads_per_worker: int | None = None, processes: bool = True,
                 memory_limit: float | str | None = "auto",
                 start_method: StartMethod | None = None,
                 resources: dict[str, float] | None = None, retries: int = 0,
                 priority: int = 0, connect_timeout: float = 30.0) -> None:
        options = Options(
            max_workers=max_workers, address=address, scheduler_file=scheduler_file,
            client=client, threads_per_worker=threads_per_worker, processes=processes,
            memory_limit=memory_limit, start_method=start_method, resources=resources,
            retries=retries, priority=priority, connect_timeout=connect_timeout)
        self._where: Cluster = open_cluster(options)
        try:
            self._window, self.capabilities, recovery = self._survey(options)
        except BaseException:
            close_cluster(self._where)
            raise
        self._recovery = recovery
        self._jobs = Dispatcher(self._where.client, self._window, recovery,
                                resources=options.resources, retries=options.retries,
                                priority=options.priority)
        if self._where.local is None or not options.processes:
            # Workers elsewhere (or threads in this process): the cluster's own store.
            self.share = self._scatter_once
        self._closing = threading.Lock()  # held while one shutdown closes the client
        self._closed_down = False  # client and cluster closed
        self._start_threads()
        warn_missing_resources(self._where, options.resources)

    def _survey(self, options: Options) -> tuple[Window, frozenset[str], Recovery]:
        """The window, the capabilities and the crash accounting the cluster allows."""
        local = self._where.local is not None
        # Dask's own slots enforce max_workers only on the cluster we started with exactly
        # that many threads (threads_per_worker=2 and max_workers=3 leave a thread spare).
        exact_slots = local and self._where.threads == options.workers
        window = Window(self._where.client, local=local, workers=options.workers,
                        cap=options.max_workers, ahead=_AHEAD if exact_slots else 1)
        # A task waiting on a worker behind the one that kills it dies with it (Dask fails
        # every task assigned to a dead worker); markers tell it from the culprit.
        found = capabilities(self._where, options.processes)
        recovery = Recovery.for_cluster(self._where, exact_slots=exact_slots,
                                        processes=options.processes)
        return window, found, recovery

    def _start_threads(self) -> None:
        threading.Thread(target=self._collect, name="anyexec-dask-results", daemon=True).start()
        if self._where.local is None:
            threading.Thread(target=self._jobs.follow_cluster_size, name="anyexec-dask-resize",
                             daemon=True).start()

    # What the tests and the core read.

    @property
    def max_workers(self) -> int:
        """Tasks running at once: fixed on our local cluster, and the value given; otherwise,
        on a cluster we connected to, its current thread count, so that workers joining later
        get work and the window shrinks with the cluster."""
        return self._window.max_workers

    @property
    def _in_flight(self) -> int:
        return self._window.in_flight

    @property
    def _client(self) -> Any:
        return self._where.client

    @property
    def _cluster(self) -> Any:
        return self._where.local

    @property
    def _sent(self) -> dict[Any, Job]:
        return self._jobs.sent

    # -- the backend contract ------------------------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Queue ``fn(*args, **kwargs)``; it goes to Dask when one of the slots is free."""
        return self._jobs.put(fn, args, kwargs)

    def _scatter_once(self, obj: Any) -> Any:
        """Scatter a large ``obj`` to the cluster once; pass the result to ``submit``.

        A small one (most functions) is returned as it is and travels inside each task: that
        costs nothing worth saving, and a task holding its own copy cannot lose it when the
        workers holding the scattered copies die.
        """
        return self._jobs.share(obj)

    def terminate(self) -> None:
        """Drop queued tasks, cancel sent ones, and kill our local cluster's worker processes.

        Workers of a cluster we connected to are not ours to kill: their running tasks finish.
        """
        queued, suspects, sent = self._jobs.halt()
        self._fail(suspects)
        for job in queued:
            job.future.cancel()
        kill(worker_pids(self._where))
        if sent:
            with contextlib.suppress(Exception):
                self._client.cancel(sent)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Finish (or cancel) outstanding tasks, then close our client and our cluster.

        Callable again: ``shutdown(wait=True)`` after ``shutdown(wait=False)`` waits for
        every call submitted before (the interpreter's exit does this), and returns once the
        client and the cluster are closed.
        """
        first = self._jobs.close()
        if cancel_futures:
            queued, suspects, sent = self._jobs.halt()
            for job in queued:
                job.future.cancel()
            self._fail(suspects)
            if sent and not wait:
                with contextlib.suppress(Exception):
                    self._client.cancel(sent)
        if wait:
            self._drain_and_close()
        elif first:
            # Not a daemon: the interpreter waits for it at exit, so the cluster closes cleanly.
            threading.Thread(target=self._drain_and_close, name="anyexec-dask-shutdown").start()

    def __repr__(self) -> str:
        where = "local cluster" if self._window.local else "remote cluster"
        return f"<DaskBackend {where} max_workers={self.max_workers}>"

    # -- the collector: outcomes of finished tasks ---------------------------------------

    def _collect(self) -> None:
        """Our thread: deliver each finished task's outcome and refill its slot.

        Not Dask's threads: the futures' callbacks (the caller's code) must never run on the
        client's event loop.
        """
        while (jobs := self._jobs.finished()) is not None:
            self._refill()
            values = gather(self._client, [job.remote for job in jobs])
            for job in jobs:
                self._deliver(job, values)
            if jobs:
                self._refill()

    def _refill(self) -> None:
        with contextlib.suppress(Exception):
            self._jobs.fill()

    def _deliver(self, job: Job, values: dict[Any, Any]) -> None:
        """Settle a finished ``job`` (``values``: the gathered results), unless Dask computes
        it again or it died with a worker another task killed."""
        if job.remote.status in ("lost", "pending"):
            # Its result died with its worker before we fetched it; Dask computes it
            # again (the slot was refilled meanwhile: a brief max_workers + 1).
            self._jobs.track(job)
            return
        if self._recovery.died_innocent(job, self._jobs.halted) and self._jobs.resend(job):
            # A bystander of another task's crash: it never ran (running it now keeps it
            # exactly-once), or it finished and only its result was lost (Dask recomputes
            # lost results too). The crash is reported only for the task that was running
            # when its worker died.
            return
        self._settle(job, values)

    def _settle(self, job: Job, values: dict[Any, Any]) -> None:
        with self._jobs.lock:
            self._recovery.settled(job)
        self._recovery.forget(job)
        if lost_with_scheduler(job.remote, values, self._client):
            fail(job.future, scheduler_lost(self._client))
            return
        lost_input = any(isinstance(a, Shared) and a.lost() for a in job.args)
        settle(job.future, job.remote, values, lost_input, job.fn is run_chunk)

    def _fail(self, suspects: list[Job]) -> None:
        """Halted: tasks waiting to run once more get the crash they died of, not a rerun."""
        for job in suspects:
            settle(job.future, job.remote, {}, False)

    # -- closing -------------------------------------------------------------------------

    def _drain_and_close(self) -> None:
        while outstanding := self._jobs.outstanding():
            for future in outstanding:
                # Not concurrent.futures.wait: it never returns for a future cancelled in
                # our queue, which nobody marks as notified once we stop dispatching.
                with contextlib.suppress(BaseException):
                    future.exception()
        # A second caller (the exit hook after shutdown(wait=False)) waits here until the
        # first one has closed everything.
        with self._closing:
            self._close_resources()

    def _close_resources(self) -> None:
        self._jobs.stop()
        with self._jobs.lock:
            if self._closed_down:
                return
            self._closed_down = True
        self._recovery.remove()
        close_cluster(self._where)
