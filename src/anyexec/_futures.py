"""A future that stands for another one, for backends and the core alike."""

from __future__ import annotations

from concurrent.futures import Future

from anyexec._record import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

__all__ = ["ChainedFuture"]


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
