"""A call's outcome as bytes: run it in the worker, pickle what came of it, read it back.

For engines that must only ever see data: an exception reaching joblib aborts its whole
round, and a pool's result pipe must not choke on an object that does not pickle. The outcome
travels as ``(ok, value, pid)``: whether the call returned, its value or exception, and the
worker's PID (which worker ran it, for crash accounting).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from typing import Any

__all__ = ["pack_outcome", "unpack_outcome"]


def pack_outcome(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], *,
                 fallback: Callable[[Any], bytes] | None = None) -> bytes:
    """Run ``fn(*args, **kwargs)`` here (in the worker) and return its outcome pickled.

    Plain pickle first (fast); else ``fallback`` (default cloudpickle, for lambdas and
    closures; pathos passes dill); else the outcome is a ``SerializationError`` saying what
    could not be sent back.
    """
    try:
        outcome: tuple[bool, Any, int] = (True, fn(*args, **kwargs), os.getpid())
    except BaseException as exc:  # sent back to the caller as data
        outcome = (False, exc, os.getpid())
    try:
        return pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        pass
    try:
        if fallback is None:
            import cloudpickle

            return bytes(cloudpickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL))
        return bytes(fallback(outcome))
    except Exception as why:
        from anyexec._errors import SerializationError

        error = SerializationError(
            f"the outcome of the call ({type(outcome[1]).__name__}) could not be pickled to "
            f"send it back to the caller ({type(why).__name__}: {why})"
        )
        return pickle.dumps((False, error, os.getpid()))


def unpack_outcome(data: bytes, *,
                   loads: Callable[[bytes], Any] = pickle.loads) -> tuple[bool, Any, int | None]:
    """Read back what :func:`pack_outcome` sent: ``(ok, value or exception, worker pid)``.

    Bytes that cannot be read give ``(False, SerializationError, None)``, never an exception.
    """
    try:
        ok, value, pid = loads(data)
    except Exception as exc:
        from anyexec._errors import SerializationError

        return False, SerializationError(
            f"the outcome of a call could not be unpickled in the caller "
            f"({type(exc).__name__}: {exc})"), None
    return bool(ok), value, pid
