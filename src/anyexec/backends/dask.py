# Much of distributed's public API has no annotations; calling it is not an error here.
# mypy: disable-error-code="no-untyped-call"
"""``dask``: tasks on a Dask cluster (``dask.distributed``), local or remote.

Without an address the executor starts its own ``LocalCluster`` (worker processes on
127.0.0.1, no dashboard) and closes it on shutdown. With an address (``dask://HOST:PORT``) it
connects a ``Client`` to a running scheduler and never closes that cluster.

Tasks do not go to Dask as soon as they are submitted: this adapter keeps them in a local queue
and sends a bounded number to the scheduler at a time. On a cluster it connected to, that bound
is ``max_workers``: it makes ``max_workers`` mean "tasks running at once" on a cluster of any
size, and there it is the cluster's current thread count (capped by the value given), so that
workers joining later get work. On the local cluster it started with exactly ``max_workers``
threads, Dask itself never runs more than that, so it sends twice as many: each thread finds
its next task waiting on its worker instead of idling for a round trip through this process.
Either way cancelling a queued task is exact: it never reached Dask, so it cannot start.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import math
import multiprocessing
import os
import pickle
import shutil
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from anyexec._errors import WorkerCrashedError
from anyexec._worker import run_chunk
from anyexec.backends._pids import kill

if TYPE_CHECKING:
    from distributed import Client, LocalCluster

__all__ = ["DaskBackend"]

# In the same order as the processes backend's: typing caches "Literal[...] | None" by equality,
# which ignores order, so whichever backend's options were read first decided the order of the
# choices in the other's error message.
StartMethod = Literal["fork", "spawn", "forkserver"]

log = logging.getLogger("anyexec")

# Options that only shape the LocalCluster this backend starts, with their defaults.
_LOCAL_DEFAULTS: dict[str, Any] = {"threads_per_worker": None, "processes": True,
                                   "memory_limit": "auto", "start_method": None}


# Payloads smaller than this travel inside each task instead of being scattered.
_SCATTER_ABOVE = 64 * 1024

_MAIN_GUARD = (
    "the Dask backend's local cluster starts worker processes that import your main module "
    "(Dask starts them with forkserver or spawn); code that creates an executor at the top "
    "level of a script must sit under  if __name__ == '__main__':"
)


# On a local cluster whose threads number exactly max_workers, this many tasks per slot are in
# Dask at once: the one running and the next, already on its worker.
_AHEAD = 2
# Suffix of the marker file a task leaves when it has finished (see _run_marked).
_DONE = ".done"
_MAX_RESENDS = 3
# Seconds between two looks at a connected cluster's size (the client's own view of it is
# refreshed every 2 s).
_RESIZE_EVERY = 1.0


class DaskTaskLostError(WorkerCrashedError):
    """Dask could not run a task: it was dropped, or the function failed to load on a worker.

    Its message says what happened, so the core adds no guessed causes.
    """


class DaskSchedulerLostError(DaskTaskLostError):
    """The client lost its connection to the Dask scheduler: the task's outcome is unknown."""

    item_specific = False  # no item caused it: rerunning items one by one would not help


@dataclass
class _Job:
    """A submitted call: queued here until a slot is free, then sent to Dask."""

    future: Future[Any]
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    remote: Any = field(default=None)  # the distributed.Future once sent
    marker: str | None = field(default=None)  # file the task creates when it starts
    resent: int = 0  # times sent again after dying with a worker another task killed
    # Times it died while running beside other tasks in one worker process (which of them
    # killed it is unknown, so each runs once more; one that dies again is the culprit).
    suspected: int = 0


class _Shared:
    """What ``share`` returns: the scattered data, and the object to scatter again if lost.

    The core passes it as a top-level ``submit`` argument; ``submit`` swaps in the Dask future,
    which Dask replaces by the value on the worker. Dropping this object (the map ended)
    releases the data on the cluster.
    """

    __slots__ = ("obj", "ref")

    def __init__(self, obj: Any, ref: Any) -> None:
        self.obj = obj
        self.ref = ref


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

    def __init__(self, *, max_workers: int | None = None, address: str | None = None,
                 scheduler_file: str | None = None, client: Any = None,
                 threads_per_worker: int | None = None, processes: bool = True,
                 memory_limit: float | str | None = "auto",
                 start_method: StartMethod | None = None,
                 resources: dict[str, float] | None = None, retries: int = 0,
                 priority: int = 0, connect_timeout: float = 30.0) -> None:
        _check_int("max_workers", max_workers, minimum=1, optional=True)
        _check_int("threads_per_worker", threads_per_worker, minimum=1, optional=True)
        _check_int("retries", retries, minimum=0)
        _check_int("priority", priority, minimum=None)
        if start_method not in (None, "fork", "spawn", "forkserver"):
            raise ValueError(f"start_method must be 'fork', 'spawn', 'forkserver' or None, got "
                             f"{start_method!r}")
        if not isinstance(processes, bool):
            raise TypeError(f"processes must be True or False, got {processes!r}")
        self._resources = _check_resources(resources)
        if isinstance(connect_timeout, bool) or not isinstance(connect_timeout, (int, float)) \
                or connect_timeout <= 0:
            raise ValueError(f"connect_timeout must be a number of seconds > 0, got "
                             f"{connect_timeout!r}")
        targets = [n for n, v in (("address", address), ("scheduler_file", scheduler_file),
                                  ("client", client)) if v is not None]
        if len(targets) > 1:
            raise ValueError(f"give at most one of address, scheduler_file and client; got "
                             f"{' and '.join(targets)}")
        remote = bool(targets)
        if remote:
            given = {"threads_per_worker": threads_per_worker, "processes": processes,
                     "memory_limit": memory_limit, "start_method": start_method}
            local_only = [k for k, v in given.items() if v != _LOCAL_DEFAULTS[k]]
            if local_only:
                raise ValueError(
                    f"{', '.join(local_only)} only shape the local cluster anyexec starts; "
                    f"with {targets[0]}= the running cluster's workers decide. Drop "
                    f"{'it' if len(local_only) == 1 else 'them'}, or start the workers with "
                    "'dask worker --nthreads N --memory-limit M'."
                )
        self._retries = retries
        self._priority = priority
        self._lock = threading.RLock()
        self._queue: deque[_Job] = deque()
        self._sent: dict[Any, _Job] = {}  # Dask key -> job, for the jobs Dask holds
        # Tasks that died running beside others in one worker process, to run once more one
        # at a time (see _dispatch), and the one sent.
        self._suspects: deque[_Job] = deque()
        self._suspect_out: _Job | None = None
        self._closed = False
        self._owns_client = client is None
        self._cluster: LocalCluster | None = None
        self._client: Client
        # The thread of the Dask task this executor was created in, when it maps on the
        # cluster that runs that task (see _nested_client); it rejoins the worker's pool at
        # shutdown.
        self._seceded: int | None = None
        n_workers = 0
        if client is not None:
            self._client = _check_client(client)
        elif remote:
            nested = _nested_client(address, scheduler_file)
            if nested is not None:
                self._client, self._owns_client = nested, False
                self._seceded = threading.get_ident()
            else:
                self._client = _connect(address, scheduler_file, float(connect_timeout))
        else:
            if processes and getattr(multiprocessing.current_process(), "_inheriting", False):
                # We run inside a worker process that is importing the caller's main module.
                raise RuntimeError(_MAIN_GUARD)
            workers = max_workers or os.cpu_count() or 1
            if threads_per_worker is None:
                threads_per_worker = _default_threads(workers)
            n_workers = math.ceil(workers / threads_per_worker)
            self._cluster = _start_local_cluster(
                n_workers=n_workers, threads_per_worker=threads_per_worker,
                processes=processes, memory_limit=memory_limit, resources=self._resources,
                start_method=start_method)
            try:
                from distributed import Client

                self._client = Client(self._cluster, set_as_default=False,
                                      timeout=float(connect_timeout))
            except BaseException:
                self._cluster.close()
                raise
        # On a cluster we connected to, the user's max_workers is a cap on the cluster's
        # current thread count, which is read again as workers join and leave.
        self._cap = max_workers
        self._closing = threading.Lock()  # held while one shutdown closes the client
        self._markers: str | None = None
        try:
            self._fixed_workers, self.capabilities = self._describe(max_workers, processes)
            # Dask's own slots enforce max_workers only on the cluster we started with exactly
            # that many threads (threads_per_worker=2 and max_workers=3 leave a thread spare).
            exact_slots = self._cluster is not None and \
                n_workers * (threads_per_worker or 1) == self._fixed_workers
            self._ahead = _AHEAD if exact_slots else 1
            # A task waiting on a worker behind the one that kills it dies with it (Dask fails
            # every task assigned to a dead worker). Each task leaves a marker file when it
            # starts, so one that died without starting is sent again instead of reported as
            # a crash. On a cluster we connected to, only if its workers see our files.
            if (exact_slots and processes) or self._cluster is None:
                self._markers = tempfile.mkdtemp(prefix="anyexec-dask-")
                if self._cluster is None and not self._workers_see(self._markers):
                    shutil.rmtree(self._markers, ignore_errors=True)
                    self._markers = None
        except BaseException:
            self._close_resources()
            raise
        self._halted = False  # terminate() or shutdown(cancel_futures=True): send nothing again
        self._stopped = False
        self._closed_down = False  # client and cluster closed
        self._start_collector()
        self._check_resources_exist()

    @property
    def max_workers(self) -> int:
        """Tasks running at once: fixed on our local cluster, and the value given; otherwise,
        on a cluster we connected to, its current thread count, so that workers joining later
        get work and the window shrinks with the cluster."""
        if self._cluster is not None or self._cap:
            return self._fixed_workers
        return max(1, self._cluster_threads())

    @property
    def _in_flight(self) -> int:
        """How many of our tasks may be in Dask at once (see the module docstring). On a
        cluster we connected to, never more than its current threads: a max_workers given is
        a cap, reached as the cluster grows."""
        if self._cluster is not None:
            return self._fixed_workers * self._ahead
        threads = max(1, self._cluster_threads())
        return min(self._cap, threads) if self._cap else threads

    def _cluster_threads(self) -> int:
        # The client refreshes this summary every 2 s (distributed.client.scheduler-info-
        # interval) on its own: reading it costs no round trip, so the core may read
        # max_workers at every chunk. Private to distributed, hence the fallback.
        identity = getattr(self._client, "_scheduler_identity", None) or {}
        threads = identity.get("total_threads")
        if isinstance(threads, int):
            return threads
        workers = identity.get("workers") or {}
        return sum(int(w.get("nthreads", 1)) for w in workers.values())

    def _workers_see(self, folder: str) -> bool:
        """Whether every worker of the cluster we joined shares our file system (markers)."""
        try:
            seen = self._client.run(os.path.isdir, folder)
        except Exception:
            return False
        return bool(seen) and all(seen.values())

    # -- setup helpers -------------------------------------------------------------------

    def _describe(self, max_workers: int | None, processes: bool) -> tuple[int, frozenset[str]]:
        """The concurrency bound and the capabilities, from what the cluster really is."""
        if self._cluster is not None:
            if not processes:
                # Worker threads in this process: a crash there is a crash here.
                return max_workers or os.cpu_count() or 1, frozenset()
            # Our nannies restart a dead worker, and we set allowed-failures to 0 so that the
            # task that killed it fails at once instead of killing more workers.
            return (max_workers or os.cpu_count() or 1,
                    frozenset({"isolated", "recovers_from_worker_death", "reuses_workers"}))
        info = self._client.scheduler_info()
        workers = info.get("workers", {})
        capabilities = {"isolated"}
        if workers and all(w.get("nanny") for w in workers.values()):
            capabilities.add("recovers_from_worker_death")
        # Without max_workers, read live from the cluster (see the max_workers property).
        return max_workers or 1, frozenset(capabilities)

    def _check_resources_exist(self) -> None:
        if not self._resources or self._cluster is not None:
            return
        workers = self._client.scheduler_info().get("workers", {}).values()
        offered = {name for w in workers for name in (w.get("resources") or {})}
        missing = sorted(set(self._resources) - offered)
        if missing:
            # Not an error: workers offering them may join later (adaptive clusters).
            log.warning("anyexec: no worker of the Dask cluster offers the resource(s) %s yet; "
                        "tasks wait until one does (start workers with "
                        "'dask worker --resources \"%s=1\"')", ", ".join(missing), missing[0])

    # -- the backend contract ------------------------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Queue ``fn(*args, **kwargs)``; it goes to Dask when one of the slots is free."""
        future: Future[Any] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._queue.append(_Job(future, fn, args, kwargs))
        self._dispatch()
        return future

    def share(self, obj: Any) -> Any:
        """Scatter a large ``obj`` to the cluster once; pass the result to ``submit``.

        A small one (most functions) is returned as it is and travels inside each task: that
        costs nothing worth saving, and a task holding its own copy cannot lose it when the
        workers holding the scattered copies die.
        """
        if _pickled_size(obj) < _SCATTER_ABOVE:
            return obj
        return _Shared(obj, self._scatter(obj))

    def _scatter(self, obj: Any) -> Any:
        # In a list: scatter would otherwise split a list or dict into one future per element.
        # hash=False: two maps of equal payloads must not share (and release) one key.
        # broadcast: the workers running the map all need it anyway, and with a single copy
        # the death of the worker holding it makes Dask cancel every task waiting for it.
        return self._client.scatter([obj], hash=False, broadcast=True)[0]

    def _resolve(self, arg: Any) -> Any:
        if not isinstance(arg, _Shared):
            return arg
        if arg.ref.status != "finished":
            # Every worker holding it died: scatter it again from the copy we kept.
            with self._lock:
                if arg.ref.status != "finished":
                    arg.ref = self._scatter(arg.obj)
        return arg.ref

    def _dispatch(self) -> None:
        """Send queued jobs to Dask while fewer than the in-flight bound are there."""
        with self._lock:
            # Sending under the lock keeps Dask's arrival order equal to submission order.
            # On a cluster we only connected to, exactly max_workers tasks in Dask, none
            # waiting on a worker: that is what bounds the tasks running at once there.
            while len(self._sent) < self._in_flight:
                if self._suspects and self._suspect_out is None and not self._halted:
                    # One suspect at a time: two sent together could share a worker process
                    # again, and the innocent one would die a second time with the culprit.
                    self._suspect_out = self._suspects.popleft()
                    self._send(self._suspect_out)
                    continue
                if not self._queue:
                    break
                job = self._queue.popleft()
                if not job.future.set_running_or_notify_cancel():
                    continue  # cancelled while queued: it never reaches Dask
                self._send(job)
            self._wake.notify()

    def _send(self, job: _Job) -> None:
        """Hand ``job`` to Dask (under the lock); a failure to send fails its future."""
        # Keyword arguments ride in a partial: as keywords of client.submit, names such as
        # "priority" or "key" would be taken for Dask's own.
        fn = partial(job.fn, **job.kwargs) if job.kwargs else job.fn
        if self._markers is not None:
            job.marker = os.path.join(self._markers, f"{id(job)}-{os.urandom(6).hex()}")
            fn = partial(_run_marked, job.marker, fn)
        if self._client.status != "running":
            # Reconnecting after losing the scheduler (or closed): a task sent now would wait
            # for the reconnection (30 s by default) and then be dropped.
            self._settled(job)
            job.future.set_exception(self._scheduler_lost())
            return
        try:
            job.remote = self._client.submit(
                fn, *map(self._resolve, job.args), pure=False,
                resources=self._resources, retries=self._retries or None,
                priority=self._priority,
            )
        except BaseException as exc:
            self._settled(job)
            job.future.set_exception(exc)
            return
        self._sent[job.remote.key] = job
        self._completed.add(job.remote)

    def _settled(self, job: _Job) -> None:
        """``job`` gets its outcome now (under the lock): the next suspect may go."""
        if job is self._suspect_out:
            self._suspect_out = None

    def _died_innocent(self, job: _Job) -> bool:
        """Whether ``job`` died with a worker some other task killed, without being the cause.

        Dask fails every task assigned to a dead worker: one still waiting there (it never
        started), and one that had just finished (its result and the worker's report of it
        died with the worker, as the next task killed it). Neither crashed anything. A task
        that was running there is the culprit when it ran alone in that worker process; when
        others ran beside it, nobody can tell which one killed it, so each is sent once more
        and only one that dies again is reported.
        """
        if job.marker is None or job.remote.status != "error" or self._halted or \
                job.resent >= _MAX_RESENDS:
            # Capped: should the marker files fail (a full disk), a task that kills its worker
            # must not be taken for a bystander and sent again forever.
            return False
        from distributed import KilledWorker

        try:
            killed = isinstance(job.remote.exception(), KilledWorker)
        except Exception:
            return False
        if not killed:
            return False
        if not os.path.exists(job.marker) or os.path.exists(job.marker + _DONE):
            return True
        beside = _ran_beside_others(job.marker)
        # It died running: its marker stays (until shutdown), so that the tasks that ran
        # beside it, judged after it, see it too, whether this one is the culprit or not.
        job.marker = None
        if job.suspected or not beside:
            return False
        job.suspected += 1
        return True

    def _start_collector(self) -> None:
        from distributed import as_completed

        # Without results: a finished task frees its slot as soon as the scheduler says so,
        # and the next task is on its way while we fetch the results (in one gather).
        self._completed = as_completed(loop=self._client.loop)
        self._wake = threading.Condition(self._lock)
        self._resized_stop = threading.Event()
        self._collector = threading.Thread(target=self._collect, name="anyexec-dask-results",
                                           daemon=True)
        self._collector.start()
        if self._cluster is None:
            # Tasks are sent when others finish; a worker that joins while every task runs
            # for minutes would wait for that. This looks again every _RESIZE_EVERY seconds.
            threading.Thread(target=self._follow_cluster_size, name="anyexec-dask-resize",
                             daemon=True).start()

    def _follow_cluster_size(self) -> None:
        # Its own event, not self._wake: a notify() meant for the collector must not wake this.
        while not self._resized_stop.wait(_RESIZE_EVERY):
            with self._lock:
                if not self._queue or len(self._sent) >= self._in_flight:
                    continue
            with contextlib.suppress(Exception):
                self._dispatch()

    def _collect(self) -> None:
        """Our thread: deliver each finished task's outcome and refill its slot.

        Not Dask's threads: the futures' callbacks (the caller's code) must never run on the
        client's event loop.
        """
        while True:
            with self._lock:
                while not self._sent and not self._stopped:
                    self._wake.wait()
                if self._stopped and not self._sent:
                    return
            try:
                batch = self._completed.next_batch(block=True)
            except StopIteration:  # a cancelled future left it empty for a moment
                continue
            jobs = []
            with self._lock:
                for remote in batch:
                    job = self._sent.pop(remote.key, None)
                    if job is not None:
                        jobs.append(job)
            with contextlib.suppress(Exception):
                self._dispatch()
            values = self._gather([job.remote for job in jobs])
            for job in jobs:
                if job.remote.status in ("lost", "pending"):
                    # Its result died with its worker before we fetched it; Dask computes it
                    # again (the slot was refilled meanwhile: a brief max_workers + 1).
                    with self._lock:
                        self._sent[job.remote.key] = job
                        self._completed.add(job.remote)
                    continue
                if self._died_innocent(job):
                    # A bystander of another task's crash: it never ran (running it now keeps
                    # it exactly-once), or it finished and only its result was lost (Dask
                    # recomputes lost results too). The crash is reported only for the task
                    # that was running when its worker died.
                    with self._lock:
                        if not self._halted:
                            _forget_marker(job)
                            job.resent += 1
                            if job.marker is None and job.suspected and \
                                    job is not self._suspect_out:
                                self._suspects.append(job)  # sent by _dispatch, one by one
                            else:
                                self._send(job)
                            continue
                with self._lock:
                    self._settled(job)
                _forget_marker(job)
                lost_input = any(isinstance(a, _Shared) and a.ref.status != "finished"
                                 for a in job.args)
                if _cancel_reason(job.remote) == "scheduler-connection-lost" or (
                        job.remote.key not in values and self._client.status != "running"):
                    # Also a task that finished as the scheduler went: its result can no
                    # longer be fetched (that would wait out the client's reconnection).
                    job.future.set_exception(self._scheduler_lost())
                    continue
                _settle(job.future, job.remote, values, lost_input, job.fn is run_chunk)
            if jobs:
                with contextlib.suppress(Exception):
                    self._dispatch()

    def _scheduler_lost(self) -> DaskSchedulerLostError:
        where = getattr(self._client, "scheduler", None)
        address = getattr(where, "address", None) or "its address"
        return DaskSchedulerLostError(
            f"the Dask client lost its connection to the scheduler at {address} (the "
            "scheduler process stopped or the network between them failed), so the outcome "
            "of this task is unknown. The cluster's workers were not at fault. Restart the "
            "scheduler (or check the network), then create a new executor"
        )

    def _gather(self, remotes: list[Any]) -> dict[Any, Any]:
        """The results of the finished ones, fetched together; {} if that fails."""
        finished = [r for r in remotes if r.status == "finished"]
        if not finished:
            return {}
        try:
            # One round trip for the batch; on failure (say a result lost with its worker
            # since) each is fetched alone in _settle and fails, or waits for Dask to redo it.
            return dict(zip([r.key for r in finished], self._client.gather(finished),
                            strict=True))
        except Exception:
            return {}

    def terminate(self) -> None:
        """Drop queued tasks, cancel sent ones, and kill our local cluster's worker processes.

        Workers of a cluster we connected to are not ours to kill: their running tasks finish.
        """
        with self._lock:
            self._halted = True
            queued = list(self._queue)
            self._queue.clear()
            sent = [job.remote for job in self._sent.values()]
        self._fail_suspects()
        for job in queued:
            job.future.cancel()
        kill(self._worker_pids())
        if sent:
            with contextlib.suppress(Exception):
                self._client.cancel(sent)

    def _fail_suspects(self) -> None:
        """Halted: tasks waiting to run once more get the crash they died of, not a rerun."""
        with self._lock:
            suspects = list(self._suspects)
            self._suspects.clear()
        for job in suspects:
            _settle(job.future, job.remote, {}, False)

    def _worker_pids(self) -> list[int]:
        if self._cluster is None:
            return []
        pids = []
        for nanny in list(self._cluster.workers.values()):
            process = getattr(getattr(nanny, "process", None), "process", None)
            pid = getattr(process, "pid", None)
            if isinstance(pid, int):
                pids.append(pid)
        return pids

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Finish (or cancel) outstanding tasks, then close our client and our cluster.

        Callable again: ``shutdown(wait=True)`` after ``shutdown(wait=False)`` waits for
        every call submitted before (the interpreter's exit does this), and returns once the
        client and the cluster are closed.
        """
        with self._lock:
            first = not self._closed
            self._closed = True
            self._halted = self._halted or cancel_futures
            queued = list(self._queue) if cancel_futures else []
            sent = [job.remote for job in self._sent.values()] if cancel_futures else []
        for job in queued:
            job.future.cancel()
        if cancel_futures:
            self._fail_suspects()
        if sent and not wait:
            with contextlib.suppress(Exception):
                self._client.cancel(sent)
        if wait:
            self._drain_and_close()
        elif first:
            # Not a daemon: the interpreter waits for it at exit, so the cluster closes cleanly.
            threading.Thread(target=self._drain_and_close, name="anyexec-dask-shutdown").start()

    def _drain_and_close(self) -> None:
        while True:
            with self._lock:
                outstanding = [job.future for job in
                               (*self._queue, *self._suspects, *self._sent.values())
                               if not job.future.done()]
            if not outstanding:
                break
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
        with self._lock:
            self._stopped = True
            wake = getattr(self, "_wake", None)
            if wake is not None:
                wake.notify_all()
                self._resized_stop.set()
            if getattr(self, "_closed_down", False):
                return
            self._closed_down = True
        markers = getattr(self, "_markers", None)
        if markers is not None:
            shutil.rmtree(markers, ignore_errors=True)
        if self._seceded == threading.get_ident():
            # Back into the worker's pool of threads, which we left to wait (_nested_client).
            self._seceded = None
            from distributed import rejoin

            with contextlib.suppress(Exception):
                rejoin()
        if self._owns_client:
            with _quiet_lost_connection(self._client), contextlib.suppress(Exception):
                self._client.close()
        if self._cluster is not None:
            with contextlib.suppress(Exception):
                self._cluster.close()
            self._cluster = None

    def __repr__(self) -> str:
        where = "local cluster" if self._cluster is not None else "remote cluster"
        return f"<DaskBackend {where} max_workers={self.max_workers}>"


# -- helpers -------------------------------------------------------------------------------


def _run_marked(marker: str, fn: Callable[..., Any], /, *args: Any) -> Any:
    """On a worker: note that the task started (a file holding the worker's PID), and that
    it finished (an empty file)."""
    with contextlib.suppress(OSError), open(marker, "x") as started:
        started.write(str(os.getpid()))
    try:
        return fn(*args)
    finally:
        with contextlib.suppress(OSError):
            open(marker + _DONE, "x").close()


def _ran_beside_others(marker: str) -> bool:
    """Whether another task was running in the same worker process as ``marker``'s task."""
    folder, own = os.path.split(marker)
    with contextlib.suppress(OSError):
        pid = Path(marker).read_text()
        for name in os.listdir(folder):
            if name == own or name.endswith(_DONE) or os.path.exists(
                    os.path.join(folder, name + _DONE)):
                continue
            with contextlib.suppress(OSError):
                if pid and Path(folder, name).read_text() == pid:
                    return True
    return False


def _cancel_reason(remote: Any) -> str | None:
    """Why Dask cancelled ``remote`` (distributed's FutureCancelledError.reason), if it did."""
    if getattr(remote, "status", None) != "cancelled":
        return None
    reason = getattr(getattr(getattr(remote, "_state", None), "exception", None), "reason", None)
    return reason if isinstance(reason, str) else None


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


def _forget_marker(job: _Job) -> None:
    if job.marker is not None:
        for path in (job.marker, job.marker + _DONE):
            with contextlib.suppress(OSError):
                os.unlink(path)


def _settle(future: Future[Any], remote: Any, values: dict[Any, Any], lost_input: bool,
            outcome: bool = False) -> None:
    """Copy a finished ``distributed.Future``'s outcome into ours (``values``: gathered).

    ``outcome``: the task is anyexec's chunk runner, whose result is a pickled outcome.
    """
    try:
        status = remote.status
        if status == "finished":
            value = values[remote.key] if remote.key in values else remote.result()
            future.set_result(_without_tracebacks(value) if outcome else value)
        elif status == "error":
            exc = remote.exception()
            if isinstance(exc, ImportError):
                # The runner catches the function's own exceptions, so an ImportError here
                # comes from loading the function: its module is missing on that worker.
                lost = DaskTaskLostError(
                    f"the function could not be loaded on a Dask worker ({type(exc).__name__}: "
                    f"{exc}). Workers must be able to import the module your function lives "
                    "in: install your package on them, or send a single module with "
                    "client.upload_file(path); a local cluster sees your sys.path."
                )
                lost.__cause__ = exc
                exc = lost
            future.set_exception(exc)
        elif lost_input:
            future.set_exception(DaskTaskLostError(
                f"Dask dropped task {remote.key!r} (status {status!r}): every worker holding "
                "its input (the function, sent once per map) died. A task that kills its "
                "worker does this: Dask reruns it on other workers up to "
                "distributed.scheduler.allowed-failures times (default 3)"
            ))
        else:
            future.set_exception(DaskTaskLostError(
                f"Dask dropped task {remote.key!r} (status {status!r}) before it finished: "
                "the executor was terminated or shut down, the client lost its scheduler, or "
                "another client cancelled it"
            ))
    except concurrent.futures.InvalidStateError:
        pass
    except BaseException as exc:
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            future.set_exception(exc)


def _without_tracebacks(raw: Any) -> Any:
    """A chunk's pickled outcome, decoded without its exceptions' traceback objects.

    ``import distributed`` makes every exception pickle its traceback (tblib), so the
    exceptions of failed calls arrived with one and the core, which shows the worker's
    traceback as a ``RemoteTraceback`` cause only for exceptions without one, showed none.
    Dropping them gives the same exception shape as on the processes backend.
    """
    # Cheap test first: an outcome without failures never names the Failure class.
    if not isinstance(raw, bytes) or b"Failure" not in raw:
        return raw
    try:
        outcome = pickle.loads(raw)
    except Exception:
        return raw  # the core reports what is wrong with it
    for failure in getattr(outcome, "failures", ()):
        failure.exception.__traceback__ = None
    return outcome


def _pickled_size(obj: Any) -> int:
    data = getattr(obj, "data", None)  # anyexec's PickledCallable is pickled already
    if isinstance(data, bytes):
        return len(data)
    try:
        import cloudpickle

        return len(cloudpickle.dumps(obj))
    except Exception:
        return _SCATTER_ABOVE  # let scatter report what is wrong with it


def _check_int(name: str, value: Any, *, minimum: int | None, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        kind = "an int or None" if optional else "an int"
        raise TypeError(f"{name} must be {kind}, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_resources(resources: Any) -> dict[str, float] | None:
    if resources is None:
        return None
    if not isinstance(resources, dict) or not all(
        isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
        for k, v in resources.items()
    ):
        raise ValueError(f"resources must map resource names to amounts >= 0, for example "
                         f"{{\"GPU\": 1}}; got {resources!r}")
    return {k: float(v) for k, v in resources.items()}


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
