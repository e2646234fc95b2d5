"""The interface a backend implements: two required methods, a few optional hooks.

Any ``concurrent.futures.Executor`` satisfies the required part as it is. The optional hooks
let the shared core do better on engines that can; the core reads each with ``getattr`` and a
default, so a plugin adds only what it needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Future

__all__ = ["CAPABILITIES", "Backend", "BackendFactory"]

#: Behaviours a backend may declare in its ``capabilities`` attribute; the conformance kit
#: checks the declared ones and states that the others are not promised.
CAPABILITIES = frozenset({
    # A task that already started stops when its future is cancelled (not only queued ones).
    "cancel_running",
    # After a worker dies, the same executor starts fresh workers and keeps working.
    "recovers_from_worker_death",
    # The task runs in another process, so a crash there cannot take the caller down.
    "isolated",
    # Workers outlive a task: later maps and submits on the same executor run in the same
    # processes (module-level caches and imports stay warm) until a worker dies.
    "reuses_workers",
    # Tasks run in the main thread of a worker process, where map(task_timeout=...) can
    # interrupt an over-long call; elsewhere the call runs to its end and is then failed.
    "interrupts_tasks",
})


@runtime_checkable
class Backend(Protocol):
    """What a backend object must provide.

    Optional attributes the core uses when present:

    - ``max_workers: int``: how many tasks run at once (sizes the in-flight window).
    - ``pickles: bool`` (default ``True``): tasks cross a process boundary, so the core
      cloudpickles the function and its arguments once, in the caller, where errors are clear.
      Backends running in the caller's process (threads) set ``False``.
    - ``task_overhead: float`` (seconds, default 0.0002): the engine's cost of one task; the
      automatic chunking aims for chunks that take about a hundred times that.
    - ``share(obj) -> ref``: put a large object the tasks of one ``map`` all need into the
      engine's store once; ``ref`` passed as a top-level ``submit`` argument must arrive in the
      task as ``obj`` (``ray.put``, Dask's ``scatter``).
    - ``capabilities: frozenset[str]``: names from ``anyexec.CAPABILITIES``.
    - ``runs_in_caller: bool`` (default ``False``): ``submit`` runs the task before returning,
      in the caller's thread; the core then runs one chunk at a time, only when the consumer
      asks for more, so ``map`` returns at once and nothing runs ahead.
    - ``terminate() -> None``: stop every worker at once (used on Ctrl-C).
    """

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Schedule ``fn(*args, **kwargs)``; return a ``concurrent.futures.Future``."""
        ...

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Release the backend's resources (and only those it created)."""
        ...


class BackendFactory(Protocol):
    """What an ``anyexec.backends`` entry point resolves to: a callable taking keyword options.

    Its keyword parameters are the backend's options; their annotations (or defaults) give the
    types that spec-string values are converted to. Optional attributes describe availability
    without importing the engine: ``requires`` (module names that must be importable),
    ``engine`` (the distribution whose version ``anyexec backends`` shows), ``install_hint``,
    and ``aliases`` (other names accepted for it).
    """

    def __call__(self, **options: Any) -> Backend: ...
