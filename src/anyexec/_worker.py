"""What runs on the workers: unpack the user's function, run a chunk of calls, report back.

What travels to and from here (the arguments of ``run_chunk`` and its outcome) is described in
``anyexec._wire``; this module only runs it.

This module is imported in every worker process of every engine, so it imports only the
standard library at module level; cloudpickle is imported when a payload is first unpacked.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable

from anyexec._context import CURRENT_USE, IN_WORKER
from anyexec._record import TYPE_CHECKING
from anyexec._wire import (
    SINGLE,
    STAR,
    WHOLE_CHUNK,
    ChunkOutcome,
    Failure,
    InProcessCallable,
    PickledCallable,
    describe,
    dump_outcome,
    load_items,
    portable_exception,
)

if TYPE_CHECKING:
    from typing import Any

__all__ = ["run_chunk"]

# A payload this large (pickle plus buffers, bytes) is "big": see _FunctionCache.
_BIG = 1 << 20


def _is_big(payload: PickledCallable) -> bool:
    return payload.shared is not None or bool(payload.buffers) \
        or memoryview(payload.data).nbytes >= _BIG


class _FunctionCache:
    """A small per-process LRU of unpickled functions, keyed by payload token.

    At most one of them is big (a model or a table bound to the function): a worker that gets
    a new big function forgets the previous one, so it does not keep the objects of earlier
    maps alive (sixteen 100 MB tables would be 1.6 GB per worker). A chunk still running the
    old one keeps its own reference; a later chunk of it loads it again.
    """

    def __init__(self, size: int = 16) -> None:
        self._size = size
        self._items: OrderedDict[str, Callable[..., Any]] = OrderedDict()
        self._big: str | None = None
        self._lock = threading.Lock()

    def resolve(
        self, payload: PickledCallable | InProcessCallable | Callable[..., Any]
    ) -> Callable[..., Any]:
        if isinstance(payload, InProcessCallable):
            return payload.fn
        if not isinstance(payload, PickledCallable):
            return payload
        with self._lock:
            cached = self._items.get(payload.token)
            if cached is not None:
                self._items.move_to_end(payload.token)
                return cached
        for entry in payload.sys_path:
            if entry not in sys.path:
                sys.path.append(entry)
        fn: Callable[..., Any]
        if payload.shared is not None:
            from anyexec._shm import load_shared

            fn = load_shared(payload.shared)
        else:
            if payload.cloudpickled:
                import cloudpickle  # noqa: F401  (registers reducers cloudpickle output may need)

            fn = pickle.loads(payload.data, buffers=payload.buffers)
        with self._lock:
            if _is_big(payload):
                if self._big is not None:
                    self._items.pop(self._big, None)
                self._big = payload.token
            self._items[payload.token] = fn
            while len(self._items) > self._size:
                token, _fn = self._items.popitem(last=False)
                if token == self._big:
                    self._big = None
        return fn


_functions = _FunctionCache()


def _trim_own_frames(exc: BaseException) -> None:
    """Drop this module's frames from the traceback: the user wants their own code's frames."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    if tb is not None:
        exc.__traceback__ = tb


def _call_all(fn: Callable[..., Any], items: list[Any], mode: int, start: int,
              out: list[Any]) -> None:
    """Append fn applied to items[start:] to ``out``; stop at the first exception."""
    append = out.append
    # Three tight loops instead of one generic one: this is the hot path for tiny tasks.
    if mode == SINGLE:
        for item in items[start:] if start else items:
            append(fn(item))
    elif mode == STAR:
        for item in items[start:] if start else items:
            append(fn(*item))
    else:
        for args, kwargs in items[start:] if start else items:
            append(fn(*args, **kwargs))


class _Alarm:
    """Per-call time limit for ``task_timeout``.

    In the main thread of a worker process a SIGALRM timer interrupts the call where it is.
    Anywhere else (a thread pool, the caller's own process) a call cannot be interrupted, so an
    over-long call is failed once it returns; the caller was warned when it asked.
    """

    def __init__(self, seconds: float, crossing: bool) -> None:
        self.seconds = seconds
        self.armed = (crossing and hasattr(signal, "setitimer")
                      and threading.current_thread() is threading.main_thread())
        self._previous: Any = None

    def _fire(self, signum: int, frame: Any) -> None:
        from anyexec._errors import TaskTimeoutError

        raise TaskTimeoutError(
            f"the task ran longer than task_timeout={self.seconds} s and was interrupted"
        )

    def __enter__(self) -> _Alarm:
        if self.armed:
            self._previous = signal.signal(signal.SIGALRM, self._fire)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._previous)

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        seconds = self.seconds
        if self.armed:
            def limited(*args: Any, **kwargs: Any) -> Any:
                signal.setitimer(signal.ITIMER_REAL, seconds)
                try:
                    return fn(*args, **kwargs)
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            return limited

        def measured(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            result = fn(*args, **kwargs)
            took = time.perf_counter() - began
            if took > seconds:
                from anyexec._errors import TaskTimeoutError

                raise TaskTimeoutError(
                    f"the task took {took:.3g} s, over task_timeout={seconds} s; this backend "
                    "cannot interrupt a running task, so it ran to its end and its result was "
                    "discarded"
                )
            return result
        return measured


def run_chunk(payload: PickledCallable | InProcessCallable | Callable[..., Any],
              items: bytes | list[Any],
              mode: int, stop_on_error: bool,
              task_timeout: float | None = None) -> bytes | ChunkOutcome:
    """Run one chunk on a worker. Called through the backend's ``submit``.

    When ``items`` arrive as bytes the chunk crossed a process boundary: the outcome goes back
    pickled by us, so that a result that cannot be pickled is reported with its item instead
    of surfacing as an engine-specific error.
    """
    crossing = isinstance(items, bytes)
    alarm = _Alarm(task_timeout, crossing) if task_timeout is not None else None
    token = IN_WORKER.set(True)
    # A use() block of the caller must not leak into tasks run in its thread (serial): inside a
    # task the default is serial, and only a use() entered by the task itself counts.
    use_token = CURRENT_USE.set(None)
    collector: Any = None
    try:
        setup = payload.setup if isinstance(payload, (PickledCallable, InProcessCallable)) \
            else None
        failed = None
        if setup is not None:
            if setup.forward_logs is not None and os.getpid() != setup.caller_pid:
                from anyexec._worker_logs import Collector

                collector = Collector(setup.forward_logs).__enter__()
            # Before the items and the function are unpickled: that may load the libraries
            # whose threads are being limited (NumPy reads OMP_NUM_THREADS when it loads).
            from anyexec._worker_setup import prepare_worker

            failed = prepare_worker(setup, crossing)
        try:
            calls = load_items(items)
        except Exception as why:
            # Not a crash of the worker: the arguments pickled in the caller but do not
            # unpickle here (a class missing on the worker, a broken __reduce__/__setstate__).
            return _unloadable_arguments(why)
        if failed is not None:
            return _failed_setup(failed, calls, mode, crossing,
                                 collector.records if collector is not None else None)
        try:
            fn = _functions.resolve(payload)
        except Exception as why:
            # The worker cannot load the function (a module missing there): every item of
            # the chunk fails with an error that says so, not as if the worker had crashed.
            return _unloadable(why, calls, mode, crossing)
        if alarm is not None:
            fn = alarm.wrap(fn)
        # Timed after unpacking: the chunker wants the cost of the calls alone.
        started = time.perf_counter()
        values: list[Any] = []
        failures: list[Failure] = []
        position = 0
        while position < len(calls):
            try:
                if alarm is None:
                    _call_all(fn, calls, mode, position, values)
                else:
                    with alarm:
                        _call_all(fn, calls, mode, position, values)
                break
            except BaseException as exc:  # reported to the caller, not swallowed
                position = len(values)
                if isinstance(exc, (KeyboardInterrupt, SystemExit)) and not crossing:
                    raise
                _trim_own_frames(exc)
                failures.append(Failure(
                    position=position,
                    exception=portable_exception(exc, crossing),
                    traceback="".join(traceback.format_exception(exc)),
                    item_repr=describe(calls[position], mode),
                ))
                values.append(None)
                position += 1
                if stop_on_error:
                    break
        outcome = ChunkOutcome(values, failures, time.perf_counter() - started,
                               collector.records or None if collector is not None else None)
    finally:
        if collector is not None:
            collector.__exit__()
        CURRENT_USE.reset(use_token)
        IN_WORKER.reset(token)
    if not crossing:
        return outcome
    return dump_outcome(outcome, calls, mode)


def _failed_setup(failed: Any, calls: list[Any], mode: int, crossing: bool,
                  logs: list[Any] | None) -> bytes | ChunkOutcome:
    """Every call of the chunk fails with the initializer's error (see ``_worker_setup``)."""
    failures = [Failure(position, failed.error(crossing), failed.traceback if crossing else "",
                        describe(call, mode))
                for position, call in enumerate(calls)]
    outcome = ChunkOutcome([None] * len(calls), failures, 0.0, logs or None)
    return dump_outcome(outcome, calls, mode) if crossing else outcome


def _unloadable(why: Exception, calls: list[Any], mode: int,
                crossing: bool) -> bytes | ChunkOutcome:
    from anyexec._errors import SerializationError

    failures = []
    for position, call in enumerate(calls):
        error = SerializationError(
            f"the worker could not load the function ({type(why).__name__}: {why}). A module "
            "it needs is not importable there: install the package on the workers, or ship the "
            "code to them (see docs/backends.md)"
        )
        failures.append(Failure(position, error, "", describe(call, mode)))
    outcome = ChunkOutcome([None] * len(calls), failures)
    return dump_outcome(outcome, calls, mode) if crossing else outcome


def _unloadable_arguments(why: Exception) -> bytes:
    """The chunk's arguments cannot be unpickled here: report it for the whole chunk."""
    from anyexec._errors import SerializationError

    error = SerializationError(
        f"the arguments arrived on the worker but could not be unpickled there "
        f"({type(why).__name__}: {why}). Their class or a module they need is probably not "
        "importable on the worker, or their __reduce__/__setstate__ fails: pass plain data, "
        "or install the module on the workers"
    )
    # The items themselves are unknown here: position -1 stands for the whole chunk, and the
    # caller names the items from its own copy.
    return dump_outcome(ChunkOutcome([], [Failure(WHOLE_CHUNK, error, "", "")]), [], SINGLE)
