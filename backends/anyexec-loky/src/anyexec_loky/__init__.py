"""``loky``: anyexec over loky's reusable process pool.

This is the whole plugin. A backend only has to run callables; anyexec's core adds chunking,
ordering, error reporting, retries, progress and cancellation. loky is imported when an
executor is created, never when anyexec lists its backends.
"""

from __future__ import annotations

import concurrent.futures
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Literal

__all__ = ["LokyBackend"]


class LokyBackend:
    """loky's reusable pool of ``max_workers`` processes; the options are loky's own.

    loky keeps one pool per process and hands it to every caller with compatible options, so
    its workers stay warm between executors; ``shutdown`` settles only this executor's tasks
    and idle workers exit after ``timeout`` seconds.
    """

    engine = "loky"
    requires = ("loky",)
    install_hint = "pip install anyexec-loky"
    capabilities = frozenset({"isolated", "recovers_from_worker_death", "interrupts_tasks"})
    task_overhead = 3e-4

    def __init__(self, *, max_workers: int | None = None, timeout: float = 300,
                 env: dict[str, str] | None = None, reuse: bool | Literal["auto"] = "auto",
                 kill_workers: bool = False,
                 context: Literal["loky", "loky_init_main", "spawn"] = "loky") -> None:
        import loky

        self.max_workers: int = max_workers or loky.cpu_count()
        self._options = {"max_workers": self.max_workers, "timeout": timeout, "env": env,
                         "reuse": reuse, "kill_workers": kill_workers, "context": context}
        self._pool = loky.get_reusable_executor(**self._options)
        self._lock = threading.Lock()
        self._mine: weakref.WeakSet[Future[Any]] = weakref.WeakSet()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        import loky

        with self._lock:
            try:
                future: Future[Any] = self._pool.submit(fn, *args, **kwargs)
            except (BrokenProcessPool, RuntimeError):
                # A worker died (TerminatedWorkerError) or another user of the shared pool shut
                # it down: loky hands out a fresh pool.
                self._pool = loky.get_reusable_executor(**self._options)
                future = self._pool.submit(fn, *args, **kwargs)
            self._mine.add(future)
            return future

    def terminate(self) -> None:
        """Kill the pool's workers now (Ctrl-C); the next submit starts a fresh pool."""
        self._pool.shutdown(wait=True, kill_workers=True)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        mine = list(self._mine)
        if cancel_futures:
            for future in mine:
                future.cancel()
        if wait:
            concurrent.futures.wait(mine)
