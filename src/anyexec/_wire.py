"""The wire format: what the core sends to a worker and what comes back.

Every task is one call, ``backend.submit(run_chunk, payload, items, mode, stop_on_error,
task_timeout)`` (``anyexec._worker.run_chunk``); a backend only moves these arguments to a
worker and the return value back. ``submit`` sends a chunk of one call the same way.

Going out:

- ``payload``, the user's function:

  - on backends that pickle (``Backend.pickles``), a :class:`PickledCallable`: the function
    pickled once per function in the caller (plain pickle, by reference, for an importable
    module-level function; cloudpickle, by value, for anything else), a ``token`` so that each
    worker process unpickles it once, the caller's ``sys.path``, the executor's worker set-up,
    and, for a big function, a shared-memory segment (``shared``) or the pickle's out-of-band
    ``buffers`` for an engine's object store instead of the bytes; the backend's ``share`` hook
    may replace the whole payload with its store's reference, which arrives as the payload;
  - on the others, an :class:`InProcessCallable` (the function and its set-up), or the
    function itself when there is no set-up.

- ``items``: the chunk's calls, a list with one entry per call, applied according to ``mode``:
  ``SINGLE`` ``fn(item)``, ``STAR`` ``fn(*item)``, ``CALL`` ``fn(*args, **kwargs)`` with
  ``item == (args, kwargs)``. On backends that pickle, the list is pickled in the caller
  (:func:`dump_items`, plain pickle else cloudpickle) and travels as ``bytes``; otherwise it is
  the list itself. Bytes tell the worker that the chunk crossed a process boundary.
- ``stop_on_error``: stop at the first failing call (the map will raise it) instead of running
  the rest of the chunk.
- ``task_timeout``: seconds allowed per call, or None.

Coming back, a :class:`ChunkOutcome`; pickled by the worker (:func:`dump_outcome`) when the
items came as bytes, the record itself otherwise:

- ``values``: one per call that ran, in order; a failed call's place holds None. With
  ``stop_on_error`` the list ends at the first failure.
- ``failures``: one :class:`Failure` per failed call, by position: the exception (a
  ``SerializationError`` standing in for one that would not pickle), the worker's formatted
  traceback (empty where it tells nothing), and a short repr of the call's arguments. A result
  that cannot be pickled becomes its call's failure. A failure at position ``WHOLE_CHUNK`` (-1)
  means the items did not unpickle on the worker: ``values`` is then empty and the caller names
  the items from its own copy.
- ``elapsed``: seconds the calls took, unpacking excluded (the automatic chunk sizes use it).
- ``logs``: log records the chunk emitted (``forward_logs=True``), or None.

The caller decodes it with :func:`load_outcome`. Anything the backend's future raises instead is
the engine losing the task (a dead worker, a lost node), not part of this format: ``_map`` turns
it into a ``WorkerCrashedError``.

Beneath this, a backend whose engine must only ever see data (joblib, whose round aborts on any
exception; pathos) wraps each call it hands over with :func:`pack_outcome` (public in
``anyexec.backends.support``): the worker runs the call and returns ``(ok, value or exception,
worker pid)`` pickled, and the backend reads it back with :func:`unpack_outcome`.

Records pickle by reference to this module, so the caller and its workers need the same
anyexec. Every worker imports this module: standard library only at module level, cloudpickle
when first needed.
"""

from __future__ import annotations

import os
import pickle
import reprlib
from collections.abc import Callable

from anyexec._record import TYPE_CHECKING, Record

if TYPE_CHECKING:
    from typing import Any

    from anyexec._shm import SharedPayload
    from anyexec._worker_setup import WorkerSetup

__all__ = [
    "CALL",
    "SINGLE",
    "STAR",
    "WHOLE_CHUNK",
    "ChunkOutcome",
    "Failure",
    "InProcessCallable",
    "PickledCallable",
    "describe",
    "dump_items",
    "dump_outcome",
    "dumps_or_none",
    "load_items",
    "load_outcome",
    "pack_outcome",
    "portable_exception",
    "short_repr",
    "unpack_outcome",
]

# How the items of a chunk are applied: fn(item), fn(*item), or fn(*args, **kwargs).
SINGLE, STAR, CALL = 0, 1, 2
#: ``Failure.position`` of an error that concerns every item of the chunk.
WHOLE_CHUNK = -1

_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60
#: A repr short enough for an error message (60 characters per string or object).
short_repr = _short.repr


class PickledCallable(Record):
    """The user's function, cloudpickled once in the caller.

    ``token`` identifies it so that each worker process unpickles it once, not once per chunk.
    ``sys_path`` carries the caller's import path, so that a function from a module found
    through a path added at run time (pytest's rootdir, a notebook's folder) imports on workers
    that share the file system.
    """

    token: str
    #: The pickle; a ``PickleBuffer`` for a big payload sent to an engine's object store.
    data: bytes | pickle.PickleBuffer
    sys_path: tuple[str, ...]
    #: True when ``data`` came from cloudpickle (then the worker imports it to load it).
    cloudpickled: bool = True
    #: The executor's per-worker set-up (initializer, thread limits), or None.
    setup: WorkerSetup | None = None
    #: A big function is not in ``data`` but in this shared-memory segment (see ``_shm``).
    shared: SharedPayload | None = None
    #: Out-of-band buffers of ``data`` (pickle protocol 5), for engines with an object store.
    buffers: tuple[pickle.PickleBuffer, ...] = ()


class InProcessCallable(Record):
    """The user's function with its executor's set-up, on backends that do not pickle."""

    fn: Callable[..., Any]
    setup: WorkerSetup


class Failure(Record):
    """An exception raised by one call, with what the caller needs to report it."""

    position: int
    exception: BaseException
    traceback: str
    item_repr: str


class ChunkOutcome(Record):
    """The results of one chunk, in order; failed positions hold ``None``."""

    values: list[Any]
    failures: list[Failure]
    elapsed: float = 0.0
    #: Log records the chunk emitted, for the caller's handlers (``forward_logs=True``).
    logs: list[Any] | None = None


def describe(item: Any, mode: int) -> str:
    """A short text of one call's arguments, for ``Failure.item_repr``."""
    if mode == SINGLE:
        return _short.repr(item)
    if mode == STAR:
        return _short.repr(tuple(item))
    args, kwargs = item
    shown = [_short.repr(a) for a in args] + [f"{k}={_short.repr(v)}" for k, v in kwargs.items()]
    return "(" + ", ".join(shown) + ")"


def dumps_or_none(obj: Any) -> bytes | None:
    """``obj`` pickled by plain pickle (fast, by reference) or else cloudpickle (lambdas,
    closures, ``__main__``); None if neither can. cloudpickle is imported only when needed."""
    try:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        pass
    import cloudpickle

    try:
        return bytes(cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:
        return None


# -- the caller's side -------------------------------------------------------------------


def dump_items(items: list[Any], start: int) -> bytes:
    """Pickle a chunk's call items in the caller, naming the item that cannot be sent."""
    data = dumps_or_none(items)
    if data is not None:
        return data
    import cloudpickle

    from anyexec._errors import SerializationError

    for offset, item in enumerate(items):
        try:
            cloudpickle.dumps(item)
        except Exception as why:
            raise SerializationError(
                f"item {start + offset} ({type(item).__name__}) cannot be pickled to send it "
                f"to a worker ({type(why).__name__}: {why}). Pass plain data, or create the "
                "object inside the task (locks, sockets, open files and generators cannot "
                "cross processes); backend 'threads' needs no pickling."
            ) from why
    raise SerializationError(f"items {start}..{start + len(items) - 1} cannot be pickled")


def load_outcome(raw: bytes | ChunkOutcome, where: str) -> ChunkOutcome:
    """A chunk's outcome as the worker returned it, unpickled if it crossed processes."""
    if not isinstance(raw, bytes):
        return raw
    try:
        outcome: ChunkOutcome = pickle.loads(raw)
    except Exception as exc:
        from anyexec._errors import SerializationError

        raise SerializationError(
            f"the results of {where} arrived but could not be unpickled in the caller "
            f"({type(exc).__name__}: {exc}); a result or exception class is probably not "
            "importable here, or its __reduce__ is broken."
        ) from exc
    return outcome


# -- the worker's side -------------------------------------------------------------------


def load_items(items: bytes | list[Any]) -> list[Any]:
    """A chunk's calls as the caller sent them, unpickled if they crossed processes."""
    if isinstance(items, bytes):
        calls: list[Any] = pickle.loads(items)
        return calls
    return items


def portable_exception(exc: BaseException, crossing: bool) -> BaseException:
    """Return ``exc``, or a stand-in when it cannot be sent back to the caller."""
    if not crossing:
        return exc
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception as why:
        from anyexec._errors import SerializationError

        return SerializationError(
            f"the task raised {type(exc).__name__}: {exc} -- but that exception could not be "
            f"sent back to the caller ({type(why).__name__}: {why}). Make the exception class "
            "picklable: its __init__ must accept the args it passes to Exception.__init__."
        )
    return exc


def dump_outcome(outcome: ChunkOutcome, calls: list[Any], mode: int) -> bytes:
    """Pickle a chunk's outcome on the worker; a result that will not pickle becomes its call's
    failure."""
    data = dumps_or_none(outcome)
    if data is not None:
        return data
    # Find the value that cannot be pickled and report it as that item's failure.
    import cloudpickle

    from anyexec._errors import SerializationError

    for position, value in enumerate(outcome.values):
        try:
            cloudpickle.dumps(value)
        except Exception as why:
            error = SerializationError(
                f"the result {_short.repr(value)} of type {type(value).__name__} could not be "
                f"pickled to send it back to the caller ({type(why).__name__}: {why}). Return "
                "plain data (numbers, strings, lists, dicts, arrays) instead of objects that "
                "hold locks, sockets, open files or generators."
            )
            outcome.values[position] = None
            outcome.failures.append(Failure(position, error, "", describe(calls[position], mode)))
            outcome.failures.sort(key=lambda f: f.position)
            return dump_outcome(outcome, calls, mode)
    raise RuntimeError("unreachable: outcome unpicklable but every value pickles")


# -- one call's outcome, for backends whose engine must only see data --------------------

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
    if fallback is None:
        data = dumps_or_none(outcome)
        if data is not None:
            return data
    try:
        try:
            return pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            if fallback is None:
                raise
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
