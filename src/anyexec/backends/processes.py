"""``processes``: a ``concurrent.futures.ProcessPoolExecutor`` started once per executor.

The pool is reused by every ``map`` and ``submit`` on the executor. When a worker dies
(``os._exit``, a segfault, SIGKILL, the out-of-memory killer) the stdlib marks the whole pool
broken and fails every pending future alike. This backend knows better: each task reports which
worker started it, so only the tasks whose worker is gone fail; the others are resubmitted to a
fresh pool, and the executor keeps working.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from anyexec._futures import ChainedFuture
from anyexec._record import TYPE_CHECKING
from anyexec.backends._pids import alive, kill

if TYPE_CHECKING:
    # Only for annotations: importing typing at run time would slow the first result.
    from typing import Any, Literal

__all__ = ["ProcessesBackend"]

log = logging.getLogger("anyexec")

# In each worker: the queue on which it reports (pid, token) when it starts a task.
_reports: Any = None


_STARTED_WORKER = -1  # the token a worker reports once, when it starts


def _init_worker(reports: Any) -> None:
    """Worker initializer: keep the report queue, say we exist, leave Ctrl-C to the parent."""
    global _reports
    _reports = reports
    reports.put((os.getpid(), _STARTED_WORKER))
    # A Ctrl-C at the terminal reaches the whole process group; the parent decides what to
    # cancel and stops the workers itself, so workers must not die half-way on their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _tracked(token: int, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    _reports.put((os.getpid(), token))
    return fn(*args, **kwargs)


class ProcessesBackend:
    """A process pool of ``max_workers`` processes (default: the CPU count).

    Options: ``start_method`` (``fork``, ``spawn`` or ``forkserver``; default: the platform's),
    ``max_tasks_per_child`` (replace a worker after that many tasks, to contain leaks).
    """

    aliases = ("process", "multiprocessing", "processpool")
    pickles = True
    task_overhead = 2e-4

    def __init__(self, *, max_workers: int | None = None,
                 start_method: Literal["fork", "spawn", "forkserver"] | None = None,
                 max_tasks_per_child: int | None = None) -> None:
        self.max_workers = max_workers or os.cpu_count() or 1
        capabilities = {"recovers_from_worker_death", "isolated", "interrupts_tasks"}
        if max_tasks_per_child is None:  # otherwise workers are replaced on purpose
            capabilities.add("reuses_workers")
        self.capabilities = frozenset(capabilities)
        if start_method not in (None, "fork", "spawn", "forkserver"):
            raise ValueError(
                f"start_method must be 'fork', 'spawn', 'forkserver' or None, got {start_method!r}"
            )
        if max_tasks_per_child is not None and max_tasks_per_child < 1:
            raise ValueError(f"max_tasks_per_child must be >= 1 or None, got {max_tasks_per_child}")
        self._context = multiprocessing.get_context(start_method)
        self._max_tasks_per_child = max_tasks_per_child
        self._lock = threading.RLock()
        self._pool: _Pool | None = None
        self._tokens = itertools.count()
        # Set by terminate() and shutdown(): crashed tasks are then failed, never resubmitted.
        self._stopped = False

    def _new_pool(self) -> _Pool:
        extra: dict[str, Any] = {}
        if self._max_tasks_per_child is not None:
            extra["max_tasks_per_child"] = self._max_tasks_per_child
        reports = self._context.SimpleQueue()
        executor = ProcessPoolExecutor(self.max_workers, mp_context=self._context,
                                       initializer=_init_worker, initargs=(reports,), **extra)
        return _Pool(executor, reports)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        outer = ChainedFuture()
        self._send(outer, fn, args, kwargs)
        return outer

    def _send(self, outer: ChainedFuture, fn: Callable[..., Any], args: Any, kwargs: Any) -> None:
        with self._lock:
            if self._pool is None:
                # After a Ctrl-C the caller may go on using the executor: start afresh.
                self._stopped = False
                self._pool = self._new_pool()
            token = next(self._tokens)
            try:
                inner = self._pool.executor.submit(_tracked, token, fn, args, kwargs)
            except BrokenProcessPool as exc:
                log.debug("anyexec: replacing a broken process pool (%s)", exc)
                self._pool.close(wait=False)
                self._pool = self._new_pool()
                inner = self._pool.executor.submit(_tracked, token, fn, args, kwargs)
            pool = self._pool
        outer.inner = inner
        inner.add_done_callback(
            lambda done: self._settle(outer, done, pool, token, fn, args, kwargs)
        )

    def _settle(self, outer: ChainedFuture, inner: Future[Any], pool: _Pool,
                token: int, fn: Callable[..., Any], args: Any, kwargs: Any) -> None:
        # Every task writes one report when it starts: read them as tasks finish, or the pipe
        # fills after a few thousand tasks and the workers block writing to it.
        pool.drain()
        try:
            self._finish(outer, inner, pool, token, fn, args, kwargs)
        finally:
            pool.forget(token)

    def _finish(self, outer: ChainedFuture, inner: Future[Any], pool: _Pool,
                token: int, fn: Callable[..., Any], args: Any, kwargs: Any) -> None:
        if inner.cancelled():
            outer.cancel()
            return
        exc = inner.exception()
        if isinstance(exc, BrokenProcessPool):
            pid = pool.worker_of(token)
            if not self._stopped and (pid is None or alive(pid)):
                # An innocent victim of another task's crash: run it again on a fresh pool.
                log.debug("anyexec: resubmitting task %d after a worker crash", token)
                self._send(outer, fn, args, kwargs)
                return
            exc = BrokenProcessPool(
                f"worker process {pid}, which was running this task, died abruptly "
                "(killed by a signal, os._exit(), a segmentation fault, or the out-of-memory "
                "killer)"
            )
        with contextlib.suppress(InvalidStateError):
            if exc is not None:
                outer.set_exception(exc)
            else:
                outer.set_result(inner.result())

    def terminate(self) -> None:
        """Kill this pool's workers now (by the PIDs they reported), then release the pool."""
        with self._lock:
            self._stopped = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.kill_workers()
            pool.close(wait=True)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._stopped = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close(wait=wait, cancel_futures=cancel_futures)


class _Pool:
    """One ProcessPoolExecutor with the queue on which its workers report what they start."""

    def __init__(self, executor: ProcessPoolExecutor, reports: Any) -> None:
        self.executor = executor
        self._reports = reports
        self._lock = threading.Lock()
        self._started: dict[int, int] = {}  # token -> pid of the worker that started it
        self._pids: set[int] = set()  # the workers, as they reported themselves
        self._closed = False

    def drain(self) -> None:
        with self._lock:
            while not self._closed and not self._reports.empty():
                pid, token = self._reports.get()
                if token == _STARTED_WORKER:
                    self._pids.add(pid)
                else:
                    self._started[token] = pid

    def worker_of(self, token: int) -> int | None:
        self.drain()
        return self._started.get(token)

    def forget(self, token: int) -> None:
        """The task settled: drop its report, so the table lasts as long as its tasks."""
        with self._lock:
            self._started.pop(token, None)

    def kill_workers(self) -> None:
        self.drain()
        kill(self._pids)

    def close(self, *, wait: bool, cancel_futures: bool = True) -> None:
        self.executor.shutdown(wait=wait, cancel_futures=cancel_futures)
        # Read what the workers reported before closing the pipe: callbacks of crashed tasks
        # may still ask which worker ran them.
        self.drain()
        with self._lock:
            self._closed = True
            self._reports.close()
