"""A base class for backends over an engine whose ``submit`` returns a future.

What every such backend needs and none should write again: the calls wait in a queue until
the engine has room (an optional in-flight window), a call still waiting can be cancelled,
``shutdown`` refuses new calls and waits for (or cancels) the ones submitted, and when a pool
breaks, the calls it lost run again, each alone, so that only the one that crashes alone fails
(:class:`~anyexec.backends._triage.RerunAlone`). A subclass implements :meth:`send`; most also
override :meth:`lost` and :meth:`terminate`.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, Future
from functools import partial
from typing import Any

from anyexec._futures import fail, succeed
from anyexec.backends._calls import SHUTDOWN_MESSAGE, Call
from anyexec.backends._crash import crash_error
from anyexec.backends._triage import RerunAlone

__all__ = ["PoolBackend"]

#: How often ``shutdown(wait=True)`` looks again for calls cancelled while they waited.
_IDLE_POLL_SECONDS = 0.1


class PoolBackend:
    """Base for a backend whose engine returns a ``concurrent.futures.Future`` per call.

    ``max_workers`` is how many calls run at once. ``window`` bounds how many calls are handed
    to the engine at once (None: each call is handed over when submitted, and the engine
    queues it); a call not handed over can always be cancelled.

    Subclasses implement :meth:`send`, and override :meth:`lost` to recognise the engine's
    "the pool broke" error; their ``terminate`` calls :meth:`stop_calls` and then stops the
    engine's workers; their ``shutdown`` calls this ``shutdown`` first, then releases the engine.
    """

    def __init__(self, *, max_workers: int, window: int | None = None) -> None:
        self.max_workers = max_workers
        self._window = window
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._running: set[Call] = set()  # handed to the engine, not yet settled
        self._held: deque[Call] = deque()  # waiting for room, or for suspects to be rerun
        self._triage: RerunAlone[Call] = RerunAlone()
        self._closed = False
        self._stopped = False

    # -- what a subclass provides --

    def send(self, call: Call) -> Future[Any]:
        """Hand ``call`` to the engine (run ``call.fn(*call.args, **call.kwargs)``); return the
        engine's future. Called from the submitting thread, or from a helper thread when a call
        is sent again after a crash; it may raise (the call then fails with that error)."""
        raise NotImplementedError

    def lost(self, exc: BaseException) -> bool:
        """Whether the engine's error ``exc`` means the pool broke under the call (a worker
        died), rather than the call itself failing. Default: ``BrokenExecutor``, what the
        stdlib pools and loky raise."""
        return isinstance(exc, BrokenExecutor)

    def lost_error(self, exc: BaseException) -> BaseException:
        """The error a call gets when it was lost again while it ran alone (the culprit)."""
        return crash_error(detail=exc, rerun_alone=True)

    # -- the backend interface --

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Queue ``fn(*args, **kwargs)``; hand it to the engine now if there is room."""
        call = Call(fn, args, kwargs)
        with self._lock:
            if self._closed:
                raise RuntimeError(SHUTDOWN_MESSAGE)
            if self._triage.blocking or self._held or not self._room():
                self._held.append(call)
                return call
            self._running.add(call)
        try:
            self._hand_over(call)
        except BaseException:
            with self._lock:
                self._running.discard(call)
                self._idle.notify_all()
            raise
        return call

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new calls; cancel the waiting ones (``cancel_futures``); wait for the rest."""
        with self._lock:
            self._closed = True
            waiting = [*self._held, *self._triage.drain()] if cancel_futures else []
            if cancel_futures:
                self._held.clear()
            running = list(self._running) if cancel_futures else []
        for call in (*waiting, *running):
            call.cancel()  # a running call stays: its engine future can no longer be cancelled
        if wait:
            with self._idle:
                while self._pending():
                    self._idle.wait(_IDLE_POLL_SECONDS)

    def stop_calls(self) -> None:
        """Start nothing more and fail the calls still waiting (for ``terminate``, on Ctrl-C).

        Calls already handed over fail with the engine's error once it stops its workers."""
        with self._lock:
            self._closed = self._stopped = True
            waiting = [*self._held, *self._triage.drain()]
            self._held.clear()
        for call in waiting:
            fail(call, RuntimeError("the executor was terminated before this call ran"))

    # -- the machinery --

    def _room(self) -> bool:
        return self._window is None or len(self._running) < self._window

    def _pending(self) -> bool:
        """Whether a submitted call is still unsettled (lock held)."""
        return (bool(self._running) or self._triage.blocking
                or any(not call.cancelled() for call in self._held))

    def _hand_over(self, call: Call) -> None:
        if call.cancelled():
            self._finished(call, None)
            return
        inner = self.send(call)
        call.inner = inner
        inner.add_done_callback(partial(self._finished, call))

    def _finished(self, call: Call, done: Future[Any] | None) -> None:
        """The engine settled ``call`` (``done``), or it was cancelled before it was sent."""
        exc = None if done is None or done.cancelled() else done.exception()
        lost = exc is not None and self.lost(exc)
        with self._lock:
            self._running.discard(call)
            if lost and not self._stopped:
                culprit = self._triage.lost(call)
            else:
                culprit = lost
                self._triage.returned(call)
            start = self._next_to_send()
            self._idle.notify_all()
        if lost and not culprit:
            call.inner = None  # waiting again: cancel() may still stop it
        elif done is None or done.cancelled():
            call.cancel()
            call.release()
        else:
            if exc is None:
                succeed(call, done.result())
            else:
                fail(call, self.lost_error(exc) if lost else exc)
            call.release()
        if not start:
            return
        if lost:
            # Not from this callback: it may run in the engine's thread while that tears the
            # broken pool down, and a fresh pool may have to wait for that thread.
            threading.Thread(target=self._send_all, args=(start,), daemon=True).start()
        else:
            self._send_all(start)

    def _next_to_send(self) -> list[Call]:
        """The calls to hand over now (lock held): a suspect alone, or waiting calls."""
        if self._stopped:
            return []
        while (alone := self._triage.next_alone(busy=bool(self._running))) is not None:
            if not alone.cancelled():
                self._running.add(alone)
                return [alone]
            self._triage.returned(alone)
        if self._triage.blocking:
            return []
        start = []
        while self._held and self._room():
            call = self._held.popleft()
            if not call.cancelled():
                self._running.add(call)
                start.append(call)
        return start

    def _send_all(self, calls: list[Call]) -> None:
        while calls:
            call = calls.pop(0)
            try:
                self._hand_over(call)
            except BaseException as exc:  # no caller to raise to: the call fails with it
                with self._lock:
                    self._running.discard(call)
                    self._triage.returned(call)
                    calls += self._next_to_send()
                    self._idle.notify_all()
                fail(call, exc)
                call.release()
