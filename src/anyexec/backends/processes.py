"""``processes``: a ``concurrent.futures.ProcessPoolExecutor`` started once per executor.

The pool is reused by every ``map`` and ``submit`` on the executor. When a worker dies
(``os._exit``, a segfault, SIGKILL, the out-of-memory killer) the stdlib marks the pool broken
and fails its futures within moments; this backend then starts a fresh pool on the next call,
so one bad task does not cost the executor.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Literal

__all__ = ["ProcessesBackend"]

log = logging.getLogger("anyexec")

StartMethod = Literal["fork", "spawn", "forkserver"]


def _report_pid(queue: Any) -> None:
    """Worker initializer: tell the parent our PID, so it can stop us on Ctrl-C."""
    # Workers ignore SIGINT: a Ctrl-C at the terminal reaches the whole process group, and the
    # parent (not every worker at once) decides what to cancel and when to stop workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    queue.put(os.getpid())


class ProcessesBackend:
    """A process pool of ``max_workers`` processes (default: the CPU count).

    Options: ``start_method`` (``fork``, ``spawn`` or ``forkserver``; default: the platform's),
    ``max_tasks_per_child`` (replace a worker after that many tasks, to contain leaks; needs
    ``spawn`` or ``forkserver`` on Python < 3.14 with ``fork`` unsupported by the stdlib).
    """

    aliases = ("process", "multiprocessing", "processpool")
    pickles = True
    task_overhead = 2e-4
    capabilities = frozenset({"recovers_from_worker_death", "isolated"})

    def __init__(self, *, max_workers: int | None = None,
                 start_method: StartMethod | None = None,
                 max_tasks_per_child: int | None = None) -> None:
        self.max_workers = max_workers or os.cpu_count() or 1
        if start_method not in (None, "fork", "spawn", "forkserver"):
            raise ValueError(
                f"start_method must be 'fork', 'spawn', 'forkserver' or None, got {start_method!r}"
            )
        if max_tasks_per_child is not None and max_tasks_per_child < 1:
            raise ValueError(f"max_tasks_per_child must be >= 1 or None, got {max_tasks_per_child}")
        self._context = multiprocessing.get_context(start_method)
        self._max_tasks_per_child = max_tasks_per_child
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._pids: Any = None
        self._known_pids: set[int] = set()

    def _new_pool(self) -> ProcessPoolExecutor:
        self._pids = self._context.SimpleQueue()
        extra: dict[str, Any] = {}
        if self._max_tasks_per_child is not None:
            extra["max_tasks_per_child"] = self._max_tasks_per_child
        return ProcessPoolExecutor(self.max_workers, mp_context=self._context,
                                   initializer=_report_pid, initargs=(self._pids,), **extra)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._lock:
            if self._pool is None:
                self._pool = self._new_pool()
            try:
                return self._pool.submit(fn, *args, **kwargs)
            except BrokenProcessPool as exc:
                log.debug("anyexec: replacing a broken process pool (%s)", exc)
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
                self._known_pids.clear()
                return self._pool.submit(fn, *args, **kwargs)

    def _worker_pids(self) -> set[int]:
        while self._pids is not None and not self._pids.empty():
            self._known_pids.add(self._pids.get())
        return self._known_pids

    def terminate(self) -> None:
        """Kill this pool's workers now (their own PIDs, reported at start)."""
        with self._lock:
            pool, self._pool = self._pool, None
            pids = set(self._worker_pids())
            self._known_pids.clear()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=cancel_futures)
