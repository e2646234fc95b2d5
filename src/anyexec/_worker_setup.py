"""Per-worker set-up: the user's initializer and the BLAS/OpenMP thread limits.

These are executor options (``get_executor(spec, initializer=..., initargs=...,
inner_threads=...)``), not backend options: the core applies them the same way on every
backend and plugin, so no backend has to know about them.

How it works::

    caller (Executor)                         worker (run_chunk)
    ------------------                        ------------------
    WorkerSetup(token, initializer            first chunk carrying this token in this process
      pickled once, inner_threads)  --rides-> (this thread on non-pickling backends):
    in the function payload                     1. set the thread variables (+ threadpoolctl)
                                                2. run initializer(*initargs)
                                              later chunks: nothing, or the same failure again

A raising initializer is remembered: every later chunk of that executor in that worker fails
at once with the same :class:`WorkerInitializerError`, so nothing loops or hangs. A replacement
worker (a fresh process) starts with no memory and runs the initializer again.

This module is imported on workers: standard library only at module level.
"""

from __future__ import annotations

import os
import pickle
import threading
import traceback
from collections.abc import Callable, Mapping

from anyexec._record import TYPE_CHECKING, Record

if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "SETUP_OPTIONS",
    "THREAD_VARIABLES",
    "SetupFailure",
    "WorkerSetup",
    "build_setup",
    "check_setup_options",
    "prepare_worker",
    "spec_setup_options",
    "split_executor_options",
]

#: Executor-level options, accepted by every backend; split off before the backend's own.
SETUP_OPTIONS = ("forward_logs", "initializer", "initargs", "inner_threads")

#: The variables that the common native thread pools read (the same list as joblib's).
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMBA_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


class WorkerSetup(Record):
    """What every worker of one executor does before its first task.

    ``initializer`` is ``(initializer, initargs)`` pickled once in the caller when the backend
    crosses processes, the tuple itself otherwise; None when there is no initializer.
    """

    token: str
    initializer: bytes | tuple[Callable[..., Any], tuple[Any, ...]] | None
    initializer_name: str
    inner_threads: int | None
    #: ``forward_logs=True``: the caller's root logging level when the executor was created
    #: (records below it are not collected); None when logs are not forwarded.
    forward_logs: int | None = None
    #: The caller's PID: a chunk running there (threads, serial) needs no forwarding.
    caller_pid: int = 0


class SetupFailure(Record):
    """The initializer raised in this worker: what every call of the executor gets there."""

    message: str
    #: The initializer's own exception (its traceback is the worker's traceback).
    cause: BaseException
    traceback: str

    def error(self, crossing: bool) -> BaseException:
        """A fresh :class:`WorkerInitializerError` for one failed call.

        Fresh each time: the core adds a note per call, and one object raised many times would
        pile up notes and tracebacks. Across processes the cause goes as the traceback's text
        (the exception itself may not pickle); in the caller's process it is the exception.
        """
        from anyexec._errors import WorkerInitializerError

        error = WorkerInitializerError(self.message)
        if not crossing:
            error.__cause__ = self.cause
        return error


def split_executor_options(
    keywords: Mapping[str, Any], spec_options: Mapping[str, str], *, origin: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """Split the executor-level options off those given to ``get_executor``, checked.

    Returns ``(executor options, backend keywords, backend spec-string options)``. Values
    from the spec string are converted; keywords override them. Raises ``TypeError`` or
    ``ValueError`` naming a bad one.
    """
    setup, rest = _split(keywords)
    from_spec, spec_rest = _split(spec_options)
    setup = {**spec_setup_options(from_spec, origin=origin), **setup}
    check_setup_options(setup)
    return setup, rest, spec_rest


def _split(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    setup: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for key, value in options.items():
        (setup if key in SETUP_OPTIONS else rest)[key] = value
    return setup, rest


def spec_setup_options(options: Mapping[str, str], *, origin: str) -> dict[str, Any]:
    """Convert the executor options written in a spec string (``?inner_threads=2``)."""
    setup: dict[str, Any] = {}
    for key, text in options.items():
        if key == "forward_logs":
            lowered = text.strip().lower()
            if lowered not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise ValueError(
                    f"option forward_logs={text!r} (from {origin}) is invalid: give true or "
                    "false"
                )
            setup[key] = lowered in ("1", "true", "yes", "on")
        elif key == "inner_threads":
            if text.strip().lower() in ("none", "null", ""):
                setup[key] = None
                continue
            try:
                setup[key] = int(text)
            except ValueError:
                raise ValueError(
                    f"option inner_threads={text!r} (from {origin}) is invalid: give a whole "
                    "number of threads, e.g. inner_threads=1"
                ) from None
        else:
            raise ValueError(
                f"option {key!r} (from {origin}) cannot be given in a spec string: pass "
                f"{key}=... as a keyword argument of get_executor()"
            )
    return setup


def check_setup_options(setup: Mapping[str, Any]) -> None:
    """Raise ``TypeError``/``ValueError`` naming a bad executor option and what it accepts."""
    initializer = setup.get("initializer")
    if initializer is not None and not callable(initializer):
        raise TypeError(
            f"initializer must be a callable run once in each worker, or None; got "
            f"{type(initializer).__name__} {initializer!r}"
        )
    initargs = setup.get("initargs", ())
    if not isinstance(initargs, tuple):
        raise TypeError(
            f"initargs must be a tuple of positional arguments for the initializer, got "
            f"{type(initargs).__name__} {initargs!r}; write initargs=(value,) for one argument"
        )
    if initargs and initializer is None:
        raise TypeError("initargs given without an initializer: pass initializer=... too")
    forward = setup.get("forward_logs", False)
    if not isinstance(forward, bool):
        raise TypeError(f"forward_logs must be True or False, got {forward!r}")
    threads = setup.get("inner_threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise ValueError(
            f"inner_threads must be a positive int (threads each worker's BLAS/OpenMP pools "
            f"may use) or None for the default, got {threads!r}"
        )


def _name_of(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if qualname is None:
        return repr(fn)
    return f"{module}.{qualname}" if module else str(qualname)


def _lowest_log_level() -> int:
    """The lowest level any of the caller's loggers lets through now (root or one set
    explicitly): workers collect records from that level up, the caller's loggers filter."""
    import logging

    root = logging.getLogger()
    levels = [root.getEffectiveLevel()]
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET:
            levels.append(logger.level)
    return max(logging.DEBUG, min(levels))


def default_inner_threads(max_workers: int) -> int:
    """joblib's rule: the caller's CPUs shared out between the workers, at least one each."""
    return max(1, (os.cpu_count() or 1) // max(1, max_workers))


def build_setup(setup: Mapping[str, Any], *, pickles: bool, isolated: bool,
                max_workers: int, backend: str) -> WorkerSetup | None:
    """The executor's :class:`WorkerSetup`, or None when workers need none.

    ``inner_threads`` defaults to :func:`default_inner_threads` on backends whose tasks run in
    worker processes (``isolated``: they pickle tasks, or declare the capability). Elsewhere
    (threads, serial) tasks run in the caller's own process, whose thread pools are the
    caller's business: an explicit value is refused.
    """
    check_setup_options(setup)
    initializer = setup.get("initializer")
    threads = setup.get("inner_threads")
    if threads is not None and not isolated:
        raise ValueError(
            f"inner_threads={threads} limits the BLAS/OpenMP threads of worker processes, but "
            f"backend {backend!r} runs tasks inside this process. Limit this process's own "
            "pools instead (threadpoolctl.threadpool_limits, or OMP_NUM_THREADS before "
            "NumPy is imported), or use a process backend."
        )
    if threads is None and isolated:
        threads = default_inner_threads(max_workers)
    forward = _lowest_log_level() if setup.get("forward_logs", False) else None
    if initializer is None and threads is None and forward is None:
        return None
    packed: bytes | tuple[Callable[..., Any], tuple[Any, ...]] | None = None
    name = ""
    if initializer is not None:
        name = _name_of(initializer)
        pair = (initializer, tuple(setup.get("initargs", ())))
        if pickles:
            from anyexec._errors import SerializationError
            from anyexec._wire import dumps_or_none

            data = dumps_or_none(pair)
            if data is None:
                raise SerializationError(
                    f"the initializer {name} or its initargs cannot be pickled to send them to "
                    f"the workers of backend {backend!r}. Pass plain data in initargs and "
                    "create locks, connections or open files inside the initializer."
                )
            packed = data
        else:
            packed = pair
    return WorkerSetup(os.urandom(16).hex(), packed, name, threads, forward, os.getpid())


# -- worker side ------------------------------------------------------------------------------

# Per process: executor token -> None (done) or the failure. Guarded by _lock, which is held
# while the initializer runs so a second thread of the same worker waits for it.
_process_done: dict[str, SetupFailure | None] = {}
_lock = threading.RLock()
# Per thread, for backends whose tasks run in the caller's process (threads, serial).
_thread_done = threading.local()


def prepare_worker(setup: WorkerSetup, crossing: bool) -> SetupFailure | None:
    """Apply ``setup`` once in this worker (process, or thread when not ``crossing``).

    Returns the initializer's failure, now and on every later call, or None.
    """
    if crossing:
        done = _process_done
        if setup.token in done:  # read without the lock: the hot path of every chunk
            return done[setup.token]
        with _lock:
            if setup.token not in done:
                done[setup.token] = _apply(setup, crossing)
            return done[setup.token]
    local: dict[str, SetupFailure | None] | None = getattr(_thread_done, "done", None)
    if local is None:
        local = _thread_done.done = {}
    if setup.token not in local:
        local[setup.token] = _apply(setup, crossing)
    return local[setup.token]


def _apply(setup: WorkerSetup, crossing: bool) -> SetupFailure | None:
    # Thread limits first: the initializer (or unpickling it) may load the native libraries.
    if setup.inner_threads is not None:
        limit_threads(setup.inner_threads)
    if setup.initializer is None:
        return None
    try:
        if isinstance(setup.initializer, bytes):
            import cloudpickle  # noqa: F401  (reducers the pickled initializer may need)

            initializer, initargs = pickle.loads(setup.initializer)
        else:
            initializer, initargs = setup.initializer
        initializer(*initargs)
    except BaseException as exc:  # reported on every call of the executor, not swallowed
        if isinstance(exc, (KeyboardInterrupt, SystemExit)) and not crossing:
            raise
        text = "".join(traceback.format_exception(exc))
        where = f"worker process {os.getpid()}" if crossing else \
            f"thread {threading.current_thread().name!r}"
        return SetupFailure(
            f"the initializer {setup.initializer_name} raised {type(exc).__name__}: {exc} -- in "
            f"{where}, so no call of this executor can run there (the initializer's "
            "traceback is the cause above). Fix the initializer and create a new executor.",
            exc, text)
    return None


def limit_threads(count: int) -> None:
    """Limit the native thread pools of this process to ``count`` threads.

    The variables are read by the libraries when they load; threadpoolctl, when installed,
    also limits libraries that are already loaded (a worker forked from a caller that imported
    NumPy).
    """
    value = str(count)
    for name in THREAD_VARIABLES:
        os.environ[name] = value
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=count)
