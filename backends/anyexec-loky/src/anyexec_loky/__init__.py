"""``loky``: anyexec over loky's reusable process pool.

This is the whole plugin. A backend only has to run callables; anyexec's core adds chunking,
ordering, error reporting, retries, progress and cancellation. loky is imported when an
executor is created, never when anyexec lists its backends.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Literal

__all__ = ["LokyBackend"]


class _Call(Future[Any]):
    """The future ``submit`` returns: one call, followed across its runs on loky."""

    def __init__(self, fn: Callable[..., Any], args: Any, kwargs: Any) -> None:
        super().__init__()
        self.fn: Any = fn
        self.args: Any = args
        self.kwargs: Any = kwargs
        self.inner: Future[Any] | None = None  # loky's future of the current run

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

    When a worker dies, loky kills the others and fails every call in flight. Those calls are
    suspects: each runs again alone on a fresh pool (calls submitted meanwhile wait), and only
    one whose worker dies again then fails. The others keep their results.
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
        self._mine: weakref.WeakSet[_Call] = weakref.WeakSet()
        self._running: set[_Call] = set()  # handed to loky, not settled
        self._suspects: deque[_Call] = deque()  # lost in a crash: each runs again alone
        self._alone: _Call | None = None  # the suspect running with nothing beside it
        self._held: deque[_Call] = deque()  # submitted while suspects wait or run
        self._stopped = False  # terminate() was called: lost calls are not run again

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        call = _Call(fn, args, kwargs)
        self._mine.add(call)
        with self._lock:
            hold = bool(self._suspects) or self._alone is not None
            if hold:
                self._held.append(call)
            else:
                self._running.add(call)
        if not hold:
            self._send(call)
        return call

    def _send(self, call: _Call) -> None:
        import loky

        try:
            inner: Future[Any] = self._pool.submit(call.fn, *call.args, **call.kwargs)
        except (BrokenProcessPool, RuntimeError):
            # A worker died (TerminatedWorkerError) or another user of the shared pool shut
            # it down: loky hands out a fresh pool.
            self._pool = loky.get_reusable_executor(**self._options)
            inner = self._pool.submit(call.fn, *call.args, **call.kwargs)
        call.inner = inner
        inner.add_done_callback(lambda done: self._settle(call, done))

    def _settle(self, call: _Call, done: Future[Any]) -> None:
        exc = None if done.cancelled() else done.exception()
        lost = isinstance(exc, BrokenProcessPool)
        with self._lock:
            self._running.discard(call)
            culprit = call is self._alone or self._stopped
            if call is self._alone:
                self._alone = None
            if lost and not culprit:
                call.inner = None  # not running now: cancel() may still stop it
                self._suspects.append(call)
            start = self._next_to_send()
        if not lost or culprit:
            call.fn = call.args = call.kwargs = None  # settled: hold none of the user's data
        if done.cancelled():
            call.cancel()
        elif not lost or culprit:
            with contextlib.suppress(InvalidStateError):  # cancelled meanwhile
                if exc is None:
                    call.set_result(done.result())
                elif lost:
                    call.set_exception(BrokenProcessPool(
                        "the worker running this task died, also when the task was run again "
                        f"alone on a fresh pool. loky: {' '.join(str(exc).split())}"))
                else:
                    call.set_exception(exc)
        if start:
            # Not from this callback: it may run in loky's manager thread while it tears the
            # broken pool down, and getting a fresh pool joins that thread.
            threading.Thread(target=self._send_all, args=(start,), daemon=True).start()

    def _send_all(self, calls: list[_Call]) -> None:
        while calls:
            call = calls.pop(0)
            try:
                self._send(call)
            except BaseException as exc:  # no caller to raise to: settle the call with it
                with self._lock:
                    self._running.discard(call)
                    if call is self._alone:
                        self._alone = None
                    calls += self._next_to_send()
                with contextlib.suppress(InvalidStateError):
                    call.set_exception(exc)

    def _next_to_send(self) -> list[_Call]:
        """The calls to hand to loky now (lock held): a suspect alone, or the held ones."""
        if self._alone is not None or self._running:
            return []
        while self._suspects:
            suspect = self._suspects.popleft()
            if not suspect.cancelled():
                self._alone = suspect
                self._running.add(suspect)
                return [suspect]
        start = [call for call in self._held if not call.cancelled()]
        self._held.clear()
        self._running.update(start)
        return start

    def terminate(self) -> None:
        """Kill the pool's workers now (Ctrl-C); the next submit starts a fresh pool."""
        with self._lock:
            self._stopped = True
            waiting = [*self._suspects, *self._held]
            self._suspects.clear()
            self._held.clear()
        for call in waiting:
            with contextlib.suppress(InvalidStateError):
                call.set_exception(RuntimeError("the executor was terminated before this ran"))
        self._pool.shutdown(wait=True, kill_workers=True)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        mine = list(self._mine)
        if cancel_futures:
            for future in mine:
                future.cancel()
        if wait:
            # A cancelled call is settled for us, but wait() would count it only once an
            # executor marked it notified, which no executor does for a future it never saw.
            concurrent.futures.wait([f for f in mine if not f.cancelled()])
