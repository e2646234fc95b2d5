"""The user-facing ``Executor``: one contract over every backend.

A subclass of ``concurrent.futures.Executor``, so it works with ``asyncio``'s
``run_in_executor`` and with any library that takes an executor. The backend only runs
callables; chunking, ordering, error reporting, progress and cancellation live here and in
``_map`` so that they behave the same on every engine.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import pickle
import sys
import threading
import types
import warnings
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from concurrent.futures import Future

from anyexec._errors import AnyexecWarning, ExecutorShutdownError, SerializationError
from anyexec._futures import ChainedFuture, fail, succeed
from anyexec._hooks import read_hooks
from anyexec._map import MapRequest, failure_exception, source_file, start_map, task_outcome
from anyexec._record import TYPE_CHECKING
from anyexec._wire import CALL, InProcessCallable, PickledCallable, dump_items
from anyexec._worker import run_chunk

if TYPE_CHECKING:
    from typing import Any, Literal, TypeVar

    from anyexec._hooks import BackendHooks
    from anyexec._protocol import Backend, MapIterator
    from anyexec._selection import Resolved

    T = TypeVar("T")

__all__ = ["Executor"]

log = logging.getLogger("anyexec")

# Every executor not yet shut down with wait=True, weakly: the exit hook finishes each of them.
_live: weakref.WeakSet[Executor] = weakref.WeakSet()
# Those with tasks in flight, strongly, as the stdlib's pools keep their threads: work submitted
# to an executor that the program dropped still finishes before the interpreter exits, while an
# idle executor the program dropped is collected and releases its workers.
_busy: set[Executor] = set()
_live_lock = threading.Lock()
_exiting = False
_hook_registered = False
_hooked_after: set[str] = set()
# The process that registered the hook. A forked child inherits the hook and the parent's
# executors, and multiprocessing runs threading's exit hooks when a worker ends: a worker must
# not try to shut down its parent's pools.
_hook_pid = 0


def _forget_parent_executors() -> None:
    """In a forked child: the parent's executors are the parent's to finish, not ours."""
    global _live_lock
    _live.clear()
    _busy.clear()
    _hooked_after.clear()
    _live_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_parent_executors)


def _register_exit_hook(backend: str) -> None:
    """Run :func:`_finish_at_exit` when the interpreter starts to exit (once per process).

    ``threading._register_atexit`` is what ``concurrent.futures`` itself uses: its hooks run
    before ``atexit`` handlers (so before Ray's and Dask's own exit handlers stop those engines)
    while daemon threads (our dispatchers) still run.
    """
    global _hook_registered, _hook_pid
    if _hook_registered and _hook_pid == os.getpid() and backend in _hooked_after:
        return
    # Hooks run newest first. Registered again after each kind of backend first starts (its
    # engine may have just registered its own hook: concurrent.futures' own, which stops every
    # thread pool, Dask's and loky's), so that ours runs before those engines refuse new work.
    _hooked_after.add(backend)
    _hook_registered, _hook_pid = True, os.getpid()
    register = getattr(threading, "_register_atexit", None)
    if register is None:  # pragma: no cover - every CPython we support has it
        import atexit

        atexit.register(_finish_at_exit)
        return
    with contextlib.suppress(RuntimeError):  # the interpreter is already exiting
        register(_finish_at_exit)


def _finish_at_exit() -> None:
    """Let every executor finish the work it was given, as the stdlib pools do at exit."""
    global _exiting
    if os.getpid() != _hook_pid:
        return
    with _live_lock:
        _exiting = True
        executors = list(_live)
    for ex in reversed(executors):
        try:
            ex._finish()
        except Exception:  # one engine's failure must not keep the others' work from ending
            log.exception("anyexec: backend %r failed to finish its work at exit", ex.backend)


class _LinkedFuture(ChainedFuture):
    """The future ``submit`` returns: mirrors the backend's future, decoding our outcome."""

    def __init__(self, ex: Executor, fn: Callable[..., Any]) -> None:
        super().__init__()
        self._ex = ex
        # Only the function's file is kept (for the traceback), never the function itself:
        # a finished future must not keep a model bound to the function alive.
        self._source = source_file(fn)

    def link(self, inner: Future[Any]) -> None:
        self.inner = inner
        inner.add_done_callback(self._relay)

    def _relay(self, inner: Future[Any]) -> None:
        if inner.cancelled():
            super().cancel()
            return
        try:
            outcome = task_outcome(self._ex, inner, "a submitted call")
        except BaseException as error:
            self._settle(exc=error)
            return
        if outcome.failures:
            failure = outcome.failures[0]
            where = f"the call {failure.item_repr}" if failure.item_repr else "the call"
            self._settle(exc=failure_exception(self._ex, failure, where, self._source))
        else:
            self._settle(value=outcome.values[0])

    def _settle(self, value: Any = None, exc: BaseException | None = None) -> None:
        # Unless the user cancelled it in the meantime.
        if exc is not None:
            fail(self, exc)
        else:
            succeed(self, value)


class Executor(concurrent.futures.Executor):
    """Runs callables on one backend with the same semantics everywhere.

    Create it with :func:`anyexec.get_executor`. Use it as a context manager, or call
    :meth:`shutdown` when done. Read-only attributes: ``backend`` (the resolved backend name),
    ``max_workers`` (how many tasks run at once), ``capabilities`` and ``pickles``. Members
    whose docstring starts with "Internal" serve anyexec's own map machinery and may change.
    """

    backend: str

    def __init__(self, backend: Backend, *, name: str, max_workers: int | None = None,
                 setup: dict[str, Any] | None = None) -> None:
        for method in ("submit", "shutdown"):
            if not callable(getattr(backend, method, None)):
                raise TypeError(
                    f"backend {name!r} produced {type(backend).__qualname__}, which has no "
                    f"{method}() method. A backend must provide submit(fn, /, *args, **kwargs)"
                    " -> concurrent.futures.Future and shutdown(wait=True, *, "
                    "cancel_futures=False); any concurrent.futures.Executor qualifies."
                )
        # Every optional hook, read and checked once: the core reads none of them elsewhere.
        self._hooks = hooks = read_hooks(backend, name=name)
        self._backend = backend
        self.backend = name
        self._default_workers = max_workers or os.cpu_count() or 1
        self._lock = threading.Lock()
        self._shut = False
        # The last function sent and its payload: a weak reference, so that the executor never
        # keeps the user's function (and what it carries) alive; see _payload_for.
        self._last_payload: tuple[weakref.ref[Any], PickledCallable] | None = None
        from anyexec._worker_setup import build_setup

        # Tasks run in worker processes when they are pickled for them or the backend says so.
        self._setup = build_setup(setup or {}, pickles=hooks.pickles,
                                  isolated=hooks.pickles or "isolated" in hooks.capabilities,
                                  max_workers=self.max_workers, backend=name)
        from anyexec._shm import available

        # Big payloads go to the engine's own store (share) without a copy per task, or else
        # through shared memory.
        self._store = hooks.pickles and hooks.share is not None
        self._shm = hooks.pickles and not self._store and available()
        # Segments written by this executor: removed by shutdown(wait=True), when no task can
        # need them any more, even if a reference cycle in an engine's futures still holds one.
        self._segments: weakref.WeakSet[Any] = weakref.WeakSet()
        self._in_flight = 0
        with _live_lock:
            _live.add(self)
        _register_exit_hook(name)

    @property
    def max_workers(self) -> int:
        """How many tasks run at once: the backend's current figure (a cluster may grow)."""
        return self._hooks.max_workers() or self._default_workers

    @property
    def _max_workers(self) -> int:
        """``max_workers`` under the name Dask reads to size its window (``dask.compute(...,
        scheduler=executor)`` falls back to the CPU count without it), as the stdlib pools
        spell it."""
        return self.max_workers

    @property
    def capabilities(self) -> frozenset[str]:
        """What this backend promises beyond the common contract (see ``anyexec.CAPABILITIES``)."""
        return self._hooks.capabilities

    @property
    def pickles(self) -> bool:
        """Whether tasks cross a process boundary: the function, the arguments and the results
        are pickled (by the executor, in the caller, so that errors name the item). False on
        backends that run tasks in the caller's process (``threads``, ``serial``)."""
        return self._hooks.pickles

    @classmethod
    def _create(cls, resolved: Resolved) -> Executor:
        if _exiting:
            # Never start an engine the program is leaving (Ray's auto-init at exit joined
            # another cluster on the machine and hung).
            raise ExecutorShutdownError(
                f"cannot start backend {resolved.name!r}: the interpreter is exiting"
            )
        backend = resolved.factory(**resolved.options)
        try:
            return cls(backend, name=resolved.name,
                       max_workers=resolved.options.get("max_workers"), setup=resolved.setup)
        except BaseException:
            backend.shutdown(wait=False, cancel_futures=True)  # an initializer that won't pickle
            raise

    # -- for the map machinery (_map, _amap; internal, not part of the public API) ---------

    @property
    def hooks(self) -> BackendHooks:
        """Internal: the backend's optional hooks, checked when the executor was created."""
        return self._hooks

    @property
    def closed(self) -> bool:
        """Internal: ``shutdown`` was called (or the interpreter is exiting)."""
        return self._shut

    def submit_chunk(self, payload: Any, items: bytes | list[Any], mode: int,
                     stop_on_error: bool, task_timeout: float | None = None) -> Future[Any]:
        """Internal: hand one chunk to the backend (the wire format is ``anyexec._wire``'s)
        and count it in flight until it is done."""
        return self._track(self._backend.submit(run_chunk, payload, items, mode, stop_on_error,
                                                task_timeout))

    def payload_for(
        self, fn: Callable[..., Any]
    ) -> PickledCallable | InProcessCallable | Callable[..., Any]:
        """What the tasks carry for ``fn``: pickled once per function, in the caller.

        The last payload is reused while it is the same function object, which the executor
        watches through a weak reference only: once the user drops the function, the payload
        is dropped too (with its shared-memory segment once the tasks holding it are done).
        """
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {type(fn).__name__} {fn!r}")
        if not self._hooks.pickles:
            return fn if self._setup is None else InProcessCallable(fn, self._setup)
        last = self._last_payload
        if last is not None and last[0]() is fn:
            return last[1]
        payload = self._pickle_payload(fn)
        try:
            self._last_payload = (weakref.ref(fn, self._forget_callback()), payload)
        except TypeError:
            self._last_payload = None  # not weak-referenceable (a builtin): not worth caching
        return payload

    def _forget_callback(self) -> Callable[[weakref.ref[Any]], None]:
        this = weakref.ref(self)

        def forget(ref: weakref.ref[Any]) -> None:
            ex = this()
            if ex is not None:
                last = ex._last_payload
                if last is not None and last[0] is ref:
                    ex._last_payload = None
        return forget

    def _pickle_payload(self, fn: Callable[..., Any]) -> PickledCallable:
        token, path, setup = os.urandom(16).hex(), tuple(sys.path), self._setup
        data = _pickle_by_reference(fn)
        if data is not None:
            return PickledCallable(token, data, path, False, setup)
        try:
            if self._shm:
                from anyexec._shm import dump_to_shared

                dumped = dump_to_shared(fn)
                if not isinstance(dumped, bytes):
                    self._segments.add(dumped)
                    return PickledCallable(token, b"", path, True, setup, dumped)
                return PickledCallable(token, dumped, path, True, setup)
            if self._store:
                from anyexec._shm import dump_for_store

                stored = dump_for_store(fn)
                if not isinstance(stored, bytes):
                    return PickledCallable(token, stored[0], path, True, setup, None, stored[1])
                return PickledCallable(token, stored, path, True, setup)
            import cloudpickle

            data = cloudpickle.dumps(fn, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as why:
            raise SerializationError(
                f"the function {fn!r} cannot be pickled to send it to backend "
                f"{self.backend!r} ({type(why).__name__}: {why}). It probably captures an "
                "object that cannot cross processes (a lock, a socket, an open file, a client "
                "connection): create that object inside the function, or use backend "
                "'threads'."
            ) from why
        return PickledCallable(token, bytes(data), path, True, setup)

    def _check_open(self) -> None:
        if _exiting:
            raise ExecutorShutdownError(
                f"cannot schedule new futures after interpreter shutdown (executor on backend "
                f"{self.backend!r}): the program is exiting"
            )
        if self._shut:
            raise ExecutorShutdownError(
                f"cannot schedule new futures after shutdown (executor on backend "
                f"{self.backend!r}); create a new one with anyexec.get_executor()"
            )

    def _track(self, future: Future[Any]) -> Future[Any]:
        """Count ``future`` as in flight until it is done (see ``_busy``); return it."""
        with _live_lock:
            self._in_flight += 1
            if self._in_flight == 1:
                _busy.add(self)
        future.add_done_callback(self._settled)
        return future

    def _settled(self, _future: Future[Any]) -> None:
        with _live_lock:
            self._in_flight -= 1
            if not self._in_flight:
                _busy.discard(self)

    def _finish(self) -> None:
        """At interpreter exit: refuse new work, wait for what was submitted, release."""
        with self._lock:
            self._shut = True
            self._last_payload = None
        try:
            self._backend.shutdown(wait=True)
        finally:
            self._release_segments()
            with _live_lock:
                _live.discard(self)

    # -- the contract --------------------------------------------------------------------

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Schedule ``fn(*args, **kwargs)`` and return a ``concurrent.futures.Future``.

        Exceptions come back as the original type with the worker's traceback as
        ``__cause__`` (when it ran in another process) and a note naming the call.
        """
        with self._lock:
            self._check_open()
            payload = self.payload_for(fn)
            call = [(args, kwargs)]
            blob: Any = dump_items(call, 0) if self._hooks.pickles else call
            outer = _LinkedFuture(self, fn)
            outer.link(self.submit_chunk(payload, blob, CALL, True))
            return outer

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | None = None,
        buffersize: int | None = None,
        ordered: bool = True,
        progress: bool = False,
        retries: int = 0,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
        on_error: Literal["raise", "return"] = "raise",
        task_timeout: float | None = None,
    ) -> MapIterator[T]:
        """Apply ``fn`` to every item (or zipped items) and yield the results.

        Semantics on every backend:

        - results come in input order, or as they finish with ``ordered=False``;
        - input is pulled lazily with a bounded number of items in flight (``buffersize``
          items at most when given), so endless generators work and memory stays flat;
        - ``chunksize=None`` batches tiny tasks automatically and leaves slow ones alone;
        - the first failure is raised as the original exception with the worker's traceback
          and a note naming the item; work not yet started is cancelled;
        - ``retries=N`` runs an item whose task raised (an instance of ``retry_on``) or whose
          worker died again, up to N times, and only that item;
        - ``on_error="return"`` puts the exception in the item's place and carries on;
        - ``timeout`` bounds the whole map (seconds from this call), raising ``TimeoutError``;
        - ``task_timeout`` bounds each item: an item running longer fails alone with
          :class:`TaskTimeoutError` (retried if ``retries`` allows). Backends declaring the
          ``interrupts_tasks`` capability stop the task; the others warn, let it finish and
          discard its result;
        - closing (its ``close()``, see :class:`anyexec.MapIterator`) or dropping the iterator
          cancels what has not started;
        - ``progress=True`` shows a progress bar (tqdm when installed, else a stderr line).
        """
        req = _validate_map(fn, iterables, timeout=timeout, chunksize=chunksize,
                            buffersize=buffersize, ordered=ordered, progress=progress,
                            retries=retries, retry_on=retry_on, on_error=on_error,
                            task_timeout=task_timeout)
        self.admit(req, stacklevel=3)
        return start_map(self, req)

    def admit(self, req: MapRequest, *, stacklevel: int) -> None:
        """Internal: before a ``map`` or ``amap`` starts, refuse it once shut down, and warn
        when its ``task_timeout`` cannot interrupt a running task on this backend."""
        with self._lock:
            self._check_open()
        if req.task_timeout is not None and "interrupts_tasks" not in self.capabilities:
            warnings.warn(
                f"backend {self.backend!r} cannot interrupt a running task: an item over "
                f"task_timeout={req.task_timeout} fails with TaskTimeoutError once it returns, "
                "but keeps its worker busy until then (see docs/reliability.md)",
                AnyexecWarning,
                stacklevel=stacklevel,
            )

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Release the backend's resources; calling it again does nothing.

        Afterwards ``submit`` and ``map`` raise :class:`anyexec.ExecutorShutdownError` (a
        ``RuntimeError``). Resources the executor did not create (a cluster it connected to)
        are left running. As with the stdlib pools, work submitted and not cancelled finishes
        before the interpreter exits, even after ``shutdown(wait=False)`` or with no
        ``shutdown()`` at all.
        """
        with self._lock:
            if self._shut:
                return
            self._shut = True
            # Tasks still running hold their own reference to the payload.
            self._last_payload = None
        try:
            self._backend.shutdown(wait=wait, cancel_futures=cancel_futures)
        finally:
            if wait:
                self._release_segments()
                # Without wait, work may still be running: the exit hook waits for it.
                with _live_lock:
                    _live.discard(self)

    def _release_segments(self) -> None:
        for segment in list(self._segments):
            segment.unlink()

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        if exc_type is KeyboardInterrupt:
            # Do not wait for running tasks on Ctrl-C: stop the workers and go.
            self._hooks.interrupt()
            self.shutdown(wait=False, cancel_futures=True)
        else:
            self.shutdown(wait=True)

    def __repr__(self) -> str:
        state = "shut down" if self._shut else "open"
        return f"<anyexec.Executor backend={self.backend!r} max_workers={self.max_workers} {state}>"

    def amap(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any] | AsyncIterable[Any],
        timeout: float | None = None,
        chunksize: int | None = None,
        buffersize: int | None = None,
        ordered: bool = True,
        progress: bool = False,
        retries: int = 0,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
        on_error: Literal["raise", "return"] = "raise",
        task_timeout: float | None = None,
    ) -> AsyncIterator[T]:
        """:meth:`map` for ``async for``: same options, same semantics, never blocks the loop.

        Inputs may be sync or async iterables (mixed when zipping several). A thread pulls the
        input and waits for the workers; results reach the loop a chunk at a time. Cancelling
        the consuming task, ``aclose()``, or dropping the iterator cancels every task not yet
        started. Bad arguments raise here, as with :meth:`map`; the first result or error
        comes from the first ``__anext__``.
        """
        from anyexec._amap import amap

        return amap(self, fn, iterables, dict(
            timeout=timeout, chunksize=chunksize, buffersize=buffersize, ordered=ordered,
            progress=progress, retries=retries, retry_on=retry_on, on_error=on_error,
            task_timeout=task_timeout))


def _pickle_by_reference(fn: Callable[..., Any]) -> bytes | None:
    """Plain pickle for a module-level function (sent by name), else None.

    Importing cloudpickle costs tens of milliseconds at the first task, and a function that
    lives in an importable module needs none of it. Functions from ``__main__``, lambdas,
    closures and anything else go through cloudpickle, which sends them by value.
    """
    if not isinstance(fn, (types.FunctionType, types.BuiltinFunctionType)):
        return None
    module = getattr(fn, "__module__", None)
    if module in (None, "__main__", "__mp_main__") or "<" in fn.__qualname__:
        return None
    if isinstance(fn, types.FunctionType) and fn.__closure__:
        return None
    try:
        return pickle.dumps(fn, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return None


def _validate_map(fn: Any, iterables: tuple[Any, ...], *, timeout: Any, chunksize: Any,
                  buffersize: Any, ordered: Any, progress: Any, retries: Any, retry_on: Any,
                  on_error: Any, task_timeout: Any) -> MapRequest:
    """Check every ``map`` argument, naming the bad one and what it accepts."""
    if not callable(fn):
        raise TypeError(f"map() fn must be callable, got {type(fn).__name__} {fn!r}")
    if not iterables:
        raise TypeError("map() needs at least one iterable of inputs after fn")
    for position, iterable in enumerate(iterables):
        if not hasattr(iterable, "__iter__") and not hasattr(iterable, "__getitem__"):
            raise TypeError(
                f"map() argument {position + 2} must be iterable, got {type(iterable).__name__}"
            )
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"map() timeout must be a number of seconds or None, got {timeout!r}")
        if timeout < 0:
            raise ValueError(f"map() timeout must be >= 0 seconds, got {timeout}")
    for name, value in (("chunksize", chunksize), ("buffersize", buffersize)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"map() {name} must be a positive int or None, got {value!r}")
        if value < 1:
            raise ValueError(f"map() {name} must be >= 1 or None (automatic), got {value}")
    for name, value in (("ordered", ordered), ("progress", progress)):
        if not isinstance(value, bool):
            raise TypeError(f"map() {name} must be True or False, got {value!r}")
    if isinstance(retries, bool) or not isinstance(retries, int):
        raise TypeError(f"map() retries must be an int >= 0, got {retries!r}")
    if retries < 0:
        raise ValueError(f"map() retries must be >= 0, got {retries}")
    kinds = retry_on if isinstance(retry_on, tuple) else (retry_on,)
    if not kinds or not all(isinstance(k, type) and issubclass(k, BaseException) for k in kinds):
        raise TypeError(
            f"map() retry_on must be an exception class or a tuple of them, got {retry_on!r}"
        )
    if on_error not in ("raise", "return"):
        raise ValueError(f"map() on_error must be 'raise' or 'return', got {on_error!r}")
    if task_timeout is not None:
        if isinstance(task_timeout, bool) or not isinstance(task_timeout, (int, float)):
            raise TypeError(
                f"map() task_timeout must be a number of seconds or None, got {task_timeout!r}"
            )
        if task_timeout <= 0:
            raise ValueError(f"map() task_timeout must be > 0 seconds, got {task_timeout}")
    return MapRequest(fn, tuple(iterables), None if timeout is None else float(timeout),
                      chunksize, buffersize, ordered, progress, retries, kinds, on_error,
                      None if task_timeout is None else float(task_timeout))


