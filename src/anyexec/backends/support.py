"""The adapter toolkit: the pieces every backend needs, public, for built-ins and plugins alike.

A backend only has to run callables (``submit`` returning a ``concurrent.futures.Future``, and
``shutdown``); anyexec's core adds chunking, ordering, errors, retries, progress and
cancellation. What is left to a backend is talking to its engine, and around that the same few
chores, which live here once:

- :class:`PoolBackend`: the base for an engine whose ``submit`` returns a future: the queue of
  calls waiting for room, the in-flight window, cancel-while-queued, ``shutdown`` semantics,
  and rerunning the calls a broken pool lost, each alone, so only the culprit fails.
- :class:`Call`, :class:`CallQueue`: one submitted call (its future), and a closable,
  thread-safe queue of them, for backends that feed their engine from their own threads.
- :func:`succeed`, :func:`fail`, :func:`settle_from`: settle a future unless it was cancelled;
  :class:`ChainedFuture`: a future whose ``cancel()`` cancels the engine's future.
- :class:`RerunAlone`: the crash triage on its own, for backends with their own dispatch.
- :func:`pack_outcome`, :func:`unpack_outcome`: a call's outcome as bytes, for engines that
  must only see data.
- :class:`WorkerMarks`, :func:`running`: which worker process runs which call.
- :func:`alive`, :func:`kill`, :func:`children`, :func:`kill_trees`: process liveness, SIGKILL
  by PID, this process's children, and killing whole process trees at once.
- :func:`crash_error`, :data:`LIKELY_CAUSES`: one wording for a worker that died.
- :func:`worker_count`, :func:`check_choice`, :func:`check_int`, :func:`check_amount`,
  :func:`check_amounts`: option checks whose errors say what is accepted.

Importing this module imports neither an engine nor anything heavy; ``import anyexec`` does not
import it.
"""

from __future__ import annotations

from anyexec._futures import ChainedFuture, fail, settle_from, succeed
from anyexec._wire import pack_outcome, unpack_outcome
from anyexec.backends._calls import SHUTDOWN_MESSAGE, Call, CallQueue
from anyexec.backends._checks import (
    check_amount,
    check_amounts,
    check_choice,
    check_int,
    worker_count,
)
from anyexec.backends._crash import LIKELY_CAUSES, crash_error
from anyexec.backends._marks import WorkerMarks, running
from anyexec.backends._pids import alive, children, kill, kill_trees
from anyexec.backends._pool_backend import PoolBackend
from anyexec.backends._triage import RerunAlone

__all__ = [
    "LIKELY_CAUSES",
    "SHUTDOWN_MESSAGE",
    "Call",
    "CallQueue",
    "ChainedFuture",
    "PoolBackend",
    "RerunAlone",
    "WorkerMarks",
    "alive",
    "check_amount",
    "check_amounts",
    "check_choice",
    "check_int",
    "children",
    "crash_error",
    "fail",
    "kill",
    "kill_trees",
    "pack_outcome",
    "running",
    "settle_from",
    "succeed",
    "unpack_outcome",
    "worker_count",
]
