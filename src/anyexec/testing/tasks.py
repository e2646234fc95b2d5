"""Task functions used by the conformance kit.

They live in the installed package, not in a test file, so that workers of any engine (a Ray
or Dask worker started elsewhere) can import them by reference.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import anyexec


def square(x: int) -> int:
    return x * x


def add(x: int, y: int) -> int:
    return x + y


def sleep_then_return(x: Any, seconds: float) -> Any:
    time.sleep(seconds)
    return x


def reverse_sleep(x: int) -> int:
    """Later items finish first, so completion order differs from input order."""
    time.sleep(0.02 * (5 - x % 5))
    return x


def fail_on(x: int, bad: int = 3) -> int:
    if x == bad:
        raise ValueError(f"item {x} is bad")
    return x


def record_and_sleep(x: int, folder: str, seconds: float) -> int:
    """Leave a marker file per started item, then sleep."""
    Path(folder, f"{x}.started").touch()
    time.sleep(seconds)
    return x


def fail_first_time(x: int, folder: str) -> int:
    """Raise on the first attempt for each item, succeed on the second."""
    marker = Path(folder, f"{x}.tried")
    if not marker.exists():
        marker.touch()
        raise RuntimeError(f"transient failure on {x}")
    return x


def exit_worker(x: int, bad: int = 3) -> int:
    if x == bad:
        os._exit(13)
    return x


def kill_worker(x: int, bad: int = 3) -> int:
    if x == bad:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def slow_first_time(x: int, folder: str, seconds: float) -> int:
    """Sleep ``seconds`` on the first attempt for each item, return at once on the next."""
    marker = Path(folder, f"{x}.slow")
    if not marker.exists():
        marker.touch()
        time.sleep(seconds)
    return x


def nested_default_backend() -> str:
    with anyexec.get_executor() as inner:
        return inner.backend


def return_lock_on(x: int, bad: int = 3) -> Any:
    return threading.Lock() if x == bad else x


class UnpicklableError(Exception):
    """An exception carrying an object that cannot be pickled."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


def raise_unpicklable(x: int, bad: int = 3) -> int:
    if x == bad:
        raise UnpicklableError(f"cannot send {x}")
    return x


class BadReduceError(Exception):
    """Pickles fine but fails to unpickle: __init__ needs two arguments, args has one."""

    def __init__(self, a: str, b: str) -> None:
        super().__init__(a)

    def __reduce__(self) -> tuple[type[BadReduceError], tuple[object, ...]]:
        # Exception's own reduction, written out: importing distributed installs tblib's
        # exception pickling for every class that exists then, which rebuilds a class that
        # uses the inherited __reduce__ without calling __init__, so it would unpickle.
        return type(self), self.args


def raise_bad_reduce(x: int, bad: int = 3) -> int:
    if x == bad:
        raise BadReduceError("one", "two")
    return x


def pid(x: Any = None) -> int:
    return os.getpid()


def write_after(path: str, seconds: float) -> str:
    """Sleep, then write ``path``: shows whether a call submitted before exit really ran."""
    time.sleep(seconds)
    Path(path).write_text("done")
    return path


def exit_worker_after(x: int, seconds: float, bad: int = 3) -> int:
    """Like :func:`exit_worker`, but each item takes ``seconds``: neighbours are running."""
    if x == bad:
        os._exit(13)
    time.sleep(seconds)
    return x


def _refuse_to_unpickle() -> None:
    raise RuntimeError("this object refuses to be unpickled")


class UnpicklesBadly:
    """Pickles fine in the caller, fails to unpickle on the worker."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _refuse_to_unpickle, ()

    def __repr__(self) -> str:
        return "UnpicklesBadly()"


class Holder:
    """An object with a method, to check that the executor lets it go after the call."""

    def __init__(self, size: int = 0) -> None:
        self.data = b"x" * size

    def size(self) -> int:
        return len(self.data)
