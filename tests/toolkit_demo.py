"""The smallest real backend on the public toolkit alone, registered at run time.

Used by tests/test_support.py, which runs the conformance kit on it; the kit's fresh
interpreters run this file first to register it.
"""

from __future__ import annotations

from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import anyexec
from anyexec.backends import support


class StdlibPool(support.PoolBackend):
    """The smallest real backend on the toolkit: the stdlib process pool, at most
    ``2 x max_workers`` calls inside it, so the rest stay cancellable."""

    capabilities = frozenset({"isolated", "recovers_from_worker_death", "interrupts_tasks"})

    def __init__(self, *, max_workers: int | None = None) -> None:
        workers = support.worker_count(max_workers, origin="the toolkit demo backend")
        super().__init__(max_workers=workers, window=2 * workers)
        self._pool = ProcessPoolExecutor(workers)

    def send(self, call: support.Call) -> Future[Any]:
        assert call.fn is not None
        try:
            return self._pool.submit(call.fn, *call.args, **call.kwargs)
        except RuntimeError:  # the pool broke (a worker died): start a fresh one
            self._pool = ProcessPoolExecutor(self.max_workers)
            return self._pool.submit(call.fn, *call.args, **call.kwargs)

    def terminate(self) -> None:
        self.stop_calls()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        super().shutdown(wait, cancel_futures=cancel_futures)
        self._pool.shutdown(wait=wait)


anyexec.register_backend("toolkit-demo", StdlibPool, replace=True)
