"""``threads``: a ``concurrent.futures.ThreadPoolExecutor``.

Good for I/O-bound work (HTTP calls, file and database access) and for code that releases the
GIL (NumPy, image codecs). Nothing is pickled, so any object can be passed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from anyexec._record import TYPE_CHECKING
from anyexec.backends._checks import worker_count

if TYPE_CHECKING:
    from typing import Any

__all__ = ["ThreadsBackend"]


class ThreadsBackend:
    """A thread pool of ``max_workers`` threads (default: ``min(32, CPUs + 4)``, as the stdlib).

    A thread cannot be stopped from outside, so a task that already started always runs to its
    end; cancelling only prevents tasks that have not started.
    """

    aliases = ("thread", "threading", "threadpool")
    pickles = False
    task_overhead = 5e-5
    capabilities: frozenset[str] = frozenset()

    def __init__(self, *, max_workers: int | None = None, thread_name_prefix: str = "anyexec"):
        self.max_workers = worker_count(max_workers, origin="the threads backend",
                                        default=min(32, (os.cpu_count() or 1) + 4))
        self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix=thread_name_prefix)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)
