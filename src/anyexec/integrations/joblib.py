"""A joblib backend named ``"anyexec"``: joblib's ``Parallel`` (and scikit-learn) on any engine.

Importing this module registers the backend with joblib::

    import joblib
    import anyexec.integrations.joblib  # registers backend="anyexec"

    with joblib.parallel_config(backend="anyexec", spec="ray"):
        GridSearchCV(model, grid, n_jobs=-1).fit(X, y)

Options of ``parallel_config`` other than joblib's own are passed through:

- ``spec``: an anyexec spec (``"processes"``, ``"ray"``, ``"dask://host:8786"``, ``"mpi"``...);
  when neither ``spec`` nor ``executor`` is given, ``anyexec.get_executor()`` chooses (the
  ``anyexec.use`` block, ``ANYEXEC_BACKEND``, then ``processes``);
- any other keyword: an option of that backend (``max_workers=4``, ``num_cpus=1``...);
- ``executor``: an open :class:`anyexec.Executor` to use instead; it is left open.

An executor made from ``spec`` starts at the first ``Parallel`` call and is reused by the next
ones in the same ``parallel_config`` block (a ``GridSearchCV`` makes several); it is shut down
when the block's backend object is garbage-collected (joblib's objects hold reference cycles,
so at the next collection after the block), or at interpreter exit, whichever comes first.
Pass ``executor=`` to decide the lifetime yourself.

Batches of joblib tasks go through ``Executor.submit``, so the engine's workers, the worker's
traceback on errors, and cloudpickle for functions defined in ``__main__`` all behave as with
``map``. joblib's own auto-batching sizes the batches.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from typing import Any

import joblib
from joblib.parallel import AutoBatchingMixin, ParallelBackendBase

import anyexec

__all__ = ["NAME", "AnyexecJoblibBackend"]

#: The name to pass as ``parallel_config(backend=...)``.
NAME = "anyexec"


class AnyexecJoblibBackend(AutoBatchingMixin, ParallelBackendBase):  # type: ignore[misc]
    """joblib's ``ParallelBackendBase`` over an :class:`anyexec.Executor`."""

    supports_retrieve_callback = True
    # Like joblib's Dask backend: inside parallel_config(backend="anyexec"), n_jobs=None (the
    # scikit-learn default) means every worker of the executor, not one.
    default_n_jobs = -1

    def __init__(self, spec: str | None = None, *, executor: anyexec.Executor | None = None,
                 nesting_level: int | None = None, inner_max_num_threads: int | None = None,
                 **options: Any) -> None:
        super().__init__(nesting_level=nesting_level,
                         inner_max_num_threads=inner_max_num_threads)
        if executor is not None and (spec is not None or options):
            raise TypeError(
                "parallel_config(backend='anyexec') takes either executor= (an open "
                "anyexec.Executor) or spec=/backend options to create one, not both; got "
                f"executor={executor!r} with spec={spec!r} and options {sorted(options)}"
            )
        if executor is not None and not isinstance(executor, anyexec.Executor):
            raise TypeError(
                f"executor= must be an anyexec.Executor (from anyexec.get_executor), got "
                f"{type(executor).__name__}"
            )
        if spec is not None and not isinstance(spec, str):
            raise TypeError(f"spec= must be an anyexec spec string such as 'ray', got {spec!r}")
        self._spec = spec
        self._options = options
        self._executor = executor
        self._lock = threading.Lock()
        # The engine futures of batches not finished yet (for abort_everything).
        self._futures: set[Future[Any]] = set()

    # -- the executor --------------------------------------------------------------------

    @property
    def executor(self) -> anyexec.Executor:
        """The executor batches run on, created from ``spec`` at first use."""
        with self._lock:
            if self._executor is None:
                executor = anyexec.get_executor(self._spec, **self._options)
                # Shut down what we created when this backend object goes away (the
                # parallel_config block ended) or at exit, whichever comes first.
                weakref.finalize(self, executor.shutdown, wait=True)
                self._executor = executor
            return self._executor

    # -- joblib's backend interface ------------------------------------------------------

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        """How many batches run at once: joblib's ``n_jobs`` bounded by the executor's workers."""
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning; use -1 for every worker")
        if n_jobs == 1:
            return 1  # joblib then runs the calls here, in order: what n_jobs=1 asks for
        workers = self.executor.max_workers
        if n_jobs is None:
            jobs = workers
        elif n_jobs < 0:
            # joblib's convention: -1 is every worker, -2 all but one...
            jobs = max(1, workers + 1 + n_jobs)
        else:
            jobs = min(n_jobs, workers)
        # joblib runs a call whose n_jobs comes to 1 in this process, never asking the backend:
        # an executor with one worker (or a cluster whose workers are still joining) would
        # silently compute here instead of there. Two lets one batch wait in its queue.
        return max(2, jobs)

    def configure(self, n_jobs: int | None = 1, parallel: Any = None, prefer: Any = None,
                  require: Any = None, **backend_args: Any) -> int:
        """Called by ``Parallel`` at each call; returns the number of concurrent batches.

        A call with ``require="sharedmem"`` never reaches this backend: joblib itself runs it
        on its threading backend, since this one does not declare shared memory.
        """
        self.parallel = parallel
        return self.effective_n_jobs(n_jobs)

    def submit(self, func: Callable[[], Any],
               callback: Callable[[Future[Any]], Any] | None = None) -> Future[Any]:
        """Run one batch of joblib calls on the executor; joblib gets a future mirroring it."""
        inner = self.executor.submit(func)
        outer: Future[Any] = Future()
        if callback is not None:
            outer.add_done_callback(callback)
        futures = self._futures
        futures.add(inner)
        # The engine's future may outlive the call (a backend can keep its last one), so its
        # callbacks hold neither this backend nor joblib's Parallel (joblib's callback does):
        # only the set of pending futures and a weak reference to what joblib waits on.
        inner.add_done_callback(futures.discard)
        inner.add_done_callback(partial(_relay, weakref.ref(outer)))
        return outer

    def retrieve_result_callback(self, out: Future[Any]) -> Any:
        """The batch's results, or its first error (the original exception, with its note)."""
        return out.result()

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """A batch failed: cancel every batch not yet started (running ones finish)."""
        for future in list(self._futures):
            future.cancel()

    def terminate(self) -> None:
        """End of a ``Parallel`` call: keep the executor for the next call of this block."""
        self.reset_batch_stats()

    def __reduce__(self) -> tuple[Any, ...]:
        # joblib may pickle the active backend into tasks (nested calls); the executor cannot
        # travel, so a worker gets an unconfigured one that builds its own (serial by default
        # inside a worker, so nesting does not oversubscribe).
        return (AnyexecJoblibBackend, ())


def _relay(outer_ref: weakref.ref[Future[Any]], inner: Future[Any]) -> None:
    """Settle joblib's future like the engine's one (unless joblib dropped it already)."""
    outer = outer_ref()
    if outer is None:
        return
    if inner.cancelled():
        outer.cancel()
        outer.set_running_or_notify_cancel()
        return
    error = inner.exception()
    if error is not None:
        outer.set_exception(error)
    else:
        outer.set_result(inner.result())


joblib.register_parallel_backend(NAME, AnyexecJoblibBackend)
