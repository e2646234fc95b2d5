"""Submitted calls and the queue they wait in before a backend hands them to its engine."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from anyexec._futures import ChainedFuture

__all__ = ["SHUTDOWN_MESSAGE", "Call", "CallQueue"]

#: What ``submit`` raises after shutdown: the stdlib executors' words, which users search for.
SHUTDOWN_MESSAGE = "cannot schedule new futures after shutdown"


class Call(ChainedFuture):
    """One submitted call, and the future ``submit`` returned for it.

    ``inner`` is the engine's future for the current run of the call, once it was handed over
    (set it, and replace it when the call runs again); cancelling the call then cancels the
    engine's future, and fails if the call already started there.
    """

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> None:
        super().__init__()
        self.fn: Callable[..., Any] | None = fn
        self.args: tuple[Any, ...] = args
        self.kwargs: dict[str, Any] = kwargs

    def release(self) -> None:
        """Forget the function and arguments: a settled call must not keep the user's data
        (a model bound to the function, a large argument) alive while its future is held."""
        self.fn, self.args, self.kwargs = None, (), {}

    def invoke(self) -> Any:
        """Run the call here (for engines that run Python callables in this process)."""
        if self.fn is None:
            raise RuntimeError("this call was released: it has run already")
        return self.fn(*self.args, **self.kwargs)


class CallQueue:
    """Calls submitted and not yet handed to the engine: thread-safe, closable, cancellable.

    ``condition`` guards the queue; it is reentrant, so an owner may hold it around several
    operations and keep its own state under the same lock, and a dispatcher thread may wait on
    it for calls. A call taken with :meth:`take` is marked running
    (``set_running_or_notify_cancel``), so from then on it can no longer be cancelled;
    cancelled calls are skipped.
    """

    def __init__(self) -> None:
        self.condition = threading.Condition(threading.RLock())
        self._calls: deque[Call] = deque()
        self.closed = False

    def put(self, fn: Callable[..., Any], args: tuple[Any, ...],
            kwargs: dict[str, Any]) -> Call:
        """Queue a call; ``RuntimeError`` after :meth:`close`, as ``concurrent.futures`` does."""
        call = Call(fn, args, kwargs)
        with self.condition:
            if self.closed:
                raise RuntimeError(SHUTDOWN_MESSAGE)
            self._calls.append(call)
            self.condition.notify()
        return call

    def take(self, *, wait: bool = False, mark_running: bool = True) -> Call | None:
        """The next call that was not cancelled, marked running; None when there is none.

        With ``wait``, block until a call arrives or the queue is closed (then None). With
        ``mark_running=False`` the call stays cancellable: the owner marks it running when it
        really starts (a thread pool that starts it later).
        """
        with self.condition:
            while True:
                while self._calls:
                    call = self._calls.popleft()
                    if not mark_running and not call.cancelled():
                        return call
                    if mark_running and call.set_running_or_notify_cancel():
                        return call
                if not wait or self.closed:
                    return None
                self.condition.wait()

    def put_back(self, calls: Iterable[Call]) -> None:
        """Queue calls again, ahead of the others (already running calls lost by the engine)."""
        with self.condition:
            self._calls.extendleft(reversed(list(calls)))
            self.condition.notify_all()

    def close(self, *, cancel_queued: bool = False) -> list[Call]:
        """Refuse new calls; with ``cancel_queued``, cancel the queued ones and return them."""
        with self.condition:
            self.closed = True
            queued = list(self._calls) if cancel_queued else []
            if cancel_queued:
                self._calls.clear()
            self.condition.notify_all()
        for call in queued:
            call.cancel()
        return queued

    def fail_queued(self, exc: BaseException) -> None:
        """Fail every queued call with ``exc`` (the engine cannot run them)."""
        with self.condition:
            queued = list(self._calls)
            self._calls.clear()
        for call in queued:
            if call.set_running_or_notify_cancel():
                call.set_exception(exc)

    def __len__(self) -> int:
        with self.condition:
            return len(self._calls)

    def __bool__(self) -> bool:
        return len(self) > 0
