"""``loky``: anyexec over loky's reusable process pool.

This is the whole plugin, written on the public toolkit ``anyexec.backends.support``: the base
class queues calls, cancels waiting ones, shuts down, and reruns the calls lost when a worker
died, each alone, so only the one that crashes alone fails. loky is imported when an executor
is created, never when anyexec lists its backends.
"""

from __future__ import annotations

from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Literal

from anyexec.backends.support import Call, PoolBackend, worker_count

__all__ = ["LokyBackend"]


class LokyBackend(PoolBackend):
    """loky's reusable pool of ``max_workers`` processes; the options are loky's own.

    loky keeps one pool per process and hands it to every caller with compatible options, so
    its workers stay warm between executors; ``shutdown`` settles only this executor's tasks,
    and idle workers exit after ``timeout`` seconds. When a worker dies, loky kills the others
    and fails every call in flight: each runs again alone, and only one that dies again fails.
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

        workers = worker_count(max_workers, origin="the loky backend", default=loky.cpu_count())
        super().__init__(max_workers=workers)
        self._options = {"max_workers": workers, "timeout": timeout, "env": env,
                         "reuse": reuse, "kill_workers": kill_workers, "context": context}
        self._pool = loky.get_reusable_executor(**self._options)

    def send(self, call: Call) -> Future[Any]:
        import loky

        fn, args, kwargs = call.fn, call.args, call.kwargs
        assert fn is not None  # a call is released only once it is settled
        try:
            future: Future[Any] = self._pool.submit(fn, *args, **kwargs)
        except (BrokenProcessPool, RuntimeError):
            # A worker died, or another user of the shared pool shut it down: get a fresh one.
            self._pool = loky.get_reusable_executor(**self._options)
            future = self._pool.submit(fn, *args, **kwargs)
        return future

    def terminate(self) -> None:
        """Kill the pool's workers now (Ctrl-C); the next submit starts a fresh pool."""
        self.stop_calls()
        self._pool.shutdown(wait=True, kill_workers=True)
