"""The exceptions anyexec raises itself.

Errors about choosing a backend are raised by ``get_executor``, never at the first task, so a
misconfigured ``ANYEXEC_BACKEND`` fails at start-up rather than an hour into a run.
"""

from __future__ import annotations

__all__ = [
    "AnyexecError",
    "AnyexecWarning",
    "BackendUnavailableError",
    "ExecutorShutdownError",
    "RemoteTraceback",
    "SerializationError",
    "TaskTimeoutError",
    "UnknownBackendError",
    "WorkerCrashedError",
    "WorkerInitializerError",
]


class AnyexecError(Exception):
    """Base class of every error that anyexec raises on its own behalf."""


class UnknownBackendError(AnyexecError, LookupError):
    """No backend has the requested name.

    The message suggests the closest known name and lists the installed backends.
    """

    def __str__(self) -> str:
        # LookupError's str() of a single argument is its repr; we want the plain message.
        return str(self.args[0]) if self.args else ""


class BackendUnavailableError(AnyexecError, ImportError):
    """The backend is known but cannot run here (its engine is missing or failed to import).

    The message names the pip extra or the plugin's import error.
    """


class WorkerCrashedError(AnyexecError, RuntimeError):
    """A worker died (``os._exit``, a segfault, a signal, the out-of-memory killer) while it
    ran a task, or the engine lost the task. The message names the items and likely causes.

    A backend that knows what happened (the scheduler was lost, workers failed to start, a
    nested pool was refused) raises this class, or a subclass, from the task's future with a
    message that says so; the core then adds the items but no guessed causes.
    """

    #: Whether one of the task's own items may have caused it. When True (an unexplained
    #: death), the core reruns each item of a crashed chunk alone, once, to find the culprit;
    #: a backend sets it False on an error no item caused (the scheduler was lost, workers
    #: could not start), which then fails the chunk as it is.
    item_specific: bool = True


class ExecutorShutdownError(AnyexecError, RuntimeError):
    """Work was asked of an executor that was already shut down.

    Raised by ``submit`` and ``map`` after ``shutdown()`` (or once the interpreter has begun
    to exit), and by a ``map`` iterator that still had input to send when its executor was
    shut down: consume the results before leaving the ``with`` block.
    """


class WorkerInitializerError(AnyexecError, RuntimeError):
    """The executor's ``initializer`` raised in a worker, so no call can run there.

    Every call of the executor that reaches that worker fails with it, at once; the message
    names the initializer and the worker, and ``__cause__`` carries the worker's traceback.
    """


class TaskTimeoutError(AnyexecError, TimeoutError):
    """One item ran longer than ``map(..., task_timeout=...)``; only that item fails."""


class AnyexecWarning(UserWarning):
    """anyexec could not honour an option fully; the message says what happens instead."""


class SerializationError(AnyexecError, TypeError):
    """A function, an argument, a result or an exception could not be sent between processes.

    The message says which object failed and why; the pickling error is the ``__cause__``.
    """


class RemoteTraceback(Exception):
    """Carries the traceback text of an exception raised in another process.

    anyexec sets it as the ``__cause__`` of the re-raised exception, as
    ``concurrent.futures.ProcessPoolExecutor`` does, so the real traceback is printed.
    """

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb
