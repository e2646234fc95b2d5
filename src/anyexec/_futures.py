"""Futures for backends and the core alike: one that stands for another, and settling helpers."""

from __future__ import annotations

import contextlib
from concurrent.futures import Future, InvalidStateError

from anyexec._record import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

__all__ = ["ChainedFuture", "fail", "settle_from", "succeed"]


# "Any" as a string: the base is evaluated at run time, where typing is not imported.
class ChainedFuture(Future["Any"]):
    """A ``concurrent.futures.Future`` whose ``cancel()`` also cancels ``inner``.

    The owner sets ``inner`` (and may replace it, for example when a task is resubmitted) and
    settles this future from ``inner``'s done-callback. Cancelling succeeds only if ``inner``
    could still be cancelled, so a task that already started is reported as not cancelled.
    """

    inner: Future[Any] | None = None

    def running(self) -> bool:
        inner = self.inner
        if self.done() or inner is None:
            return super().running()
        return inner.running()

    def cancel(self) -> bool:
        inner = self.inner
        if inner is not None and not inner.cancel():
            return False
        return super().cancel()


def succeed(future: Future[Any], value: Any) -> bool:
    """Set ``future``'s result unless it is already settled or cancelled; say whether it was set.

    A caller may cancel a future at any moment, so an engine's callback can find it cancelled:
    that is not an error, the result is simply not wanted any more.
    """
    with contextlib.suppress(InvalidStateError):
        future.set_result(value)
        return True
    return False


def fail(future: Future[Any], exc: BaseException) -> bool:
    """Set ``future``'s exception unless it is already settled or cancelled (:func:`succeed`)."""
    with contextlib.suppress(InvalidStateError):
        future.set_exception(exc)
        return True
    return False


def settle_from(future: Future[Any], done: Future[Any]) -> bool:
    """Give ``future`` the outcome of the finished future ``done`` (cancelled: cancel it)."""
    if done.cancelled():
        return future.cancel()
    exc = done.exception()
    return fail(future, exc) if exc is not None else succeed(future, done.result())
