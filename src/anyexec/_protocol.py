"""The interface a backend implements: two required methods, a few optional hooks.

Any ``concurrent.futures.Executor`` satisfies the required part as it is. The optional hooks
let the shared core do better on engines that can; a plugin adds only what it needs. The core
reads them once, when the executor is created (``anyexec._hooks``): a hook of the wrong type is
an error there, and an attribute named like a misspelled hook (``task_overheads``) is warned
about. Also the type ``map`` returns, ``MapIterator``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from anyexec._hooks import CAPABILITIES

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Future

__all__ = ["CAPABILITIES", "Backend", "BackendFactory", "MapIterator"]

T_co = TypeVar("T_co", covariant=True)


@runtime_checkable
class Backend(Protocol):
    """What a backend object must provide.

    Optional attributes the core uses when present (read once, when the executor is created,
    except ``max_workers``, which is read each time it is needed):

    - ``max_workers: int``: how many tasks run at once (sizes the in-flight window); may be a
      property that follows a cluster's size.
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
    - ``engine: str``: the distribution whose version ``anyexec check`` shows (usually the
      factory's class attribute, see ``BackendFactory``).

    A hook of the wrong type makes ``get_executor`` raise ``TypeError`` naming the hook; a
    public attribute whose name is close to a hook's it lacks (``task_overheads``) gets an
    ``anyexec.AnyexecWarning``.
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


@runtime_checkable
class MapIterator(Iterator[T_co], Protocol[T_co]):
    """What :meth:`anyexec.Executor.map` returns: an iterator over the results, with ``close``.

    Closing it (or dropping it, or breaking out of a ``for`` loop over it) cancels every task
    not yet started; after ``close`` it yields nothing more, like a closed generator.
    """

    def close(self) -> None:
        """Stop the map: cancel every task not yet started."""
        ...
