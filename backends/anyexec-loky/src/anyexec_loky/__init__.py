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
from concurrent.futures import Future, InvalidStateError
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Literal

__all__ = ["LokyBackend"]


class _Relay(Future[Any]):
    """The future ``submit`` returns; it follows loky's and survives one resubmission."""

    inner: Future[Any] | None = None

    def running(self) -> bool:
        inner = self.inner
        return inner.running() if inner is not None and not self.done() else super().running()

    def cancel(self) -> bool:
        inner = self.inner
        if inner is not None and not inner.cancel():
            return False  # already running: loky cannot stop it
        return super().cancel()


class LokyBackend:
    """loky's reusable pool of ``max_workers`` processes; the options are loky's own.

    loky keeps one pool per thread and hands it to every caller with compatible options, so
    its workers stay warm between executors; ``shutdown`` settles only this executor's tasks
    and idle workers exit after ``timeout`` seconds.
    """

    engine = "loky"
    requires = ("loky",)
    install_hint = "pip install anyexec-loky"
    capabilities = frozenset({"isolated", "recovers_from_worker_death", "interrupts_tasks",
                              "reuses_workers"})
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
        self._stopped = False  # terminate() was called: lost tasks must not be rerun

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        relay = _Relay()
        self._mine.add(relay)
        self._start(relay, fn, args, kwargs, lost_once=False)
        return relay

    def _start(self, relay: _Relay, fn: Callable[..., Any], args: Any, kwargs: Any,
               lost_once: bool) -> None:
        import loky

        with self._lock:
            try:
                inner: Future[Any] = self._pool.submit(fn, *args, **kwargs)
            except (BrokenProcessPool, RuntimeError):
                # A worker died (TerminatedWorkerError) or another user of the shared pool shut
                # it down: loky hands out a fresh pool.
                self._pool = loky.get_reusable_executor(**self._options)
                inner = self._pool.submit(fn, *args, **kwargs)
        relay.inner = inner

        def settle(done: Future[Any]) -> None:
            if done.cancelled():
                relay.cancel()
                return
            exc = done.exception()
            if isinstance(exc, BrokenProcessPool) and not lost_once and not self._stopped:
                # A dying worker makes loky fail every task in flight, not only its own. Run
                # each once more on a fresh pool: only the task that kills its worker fails.
                self._start(relay, fn, args, kwargs, lost_once=True)
                return
            if isinstance(exc, BrokenProcessPool):
                exc = BrokenProcessPool(
                    "the worker running this task died, and again when the task was rerun on "
                    f"a fresh pool. loky: {' '.join(str(exc).split())}"
                )
            try:
                if exc is not None:
                    relay.set_exception(exc)
                else:
                    relay.set_result(done.result())
            except InvalidStateError:
                pass  # cancelled meanwhile

        inner.add_done_callback(settle)

    def terminate(self) -> None:
        """Kill the pool's workers now (Ctrl-C); the next submit starts a fresh pool."""
        self._stopped = True
        self._pool.shutdown(wait=True, kill_workers=True)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        mine = list(self._mine)
        if cancel_futures:
            for future in mine:
                future.cancel()
        if wait:
            # A cancelled relay is settled for us, but wait() would count it only once an
            # executor marked it notified, which no executor does for a future it never saw.
            concurrent.futures.wait([f for f in mine if not f.cancelled()])
