# Much of distributed's public API has no annotations; calling it is not an error here.
# mypy: disable-error-code="no-untyped-call"
"""What a finished Dask task gives our future: its value, its error, or why Dask lost it."""

from __future__ import annotations

import pickle
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from anyexec._errors import WorkerCrashedError
from anyexec.backends.support import fail, succeed

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["DaskSchedulerLostError", "DaskTaskLostError", "cancel_reason", "gather", "settle"]


class DaskTaskLostError(WorkerCrashedError):
    """Dask could not run a task: it was dropped, or the function failed to load on a worker.

    Its message says what happened, so the core adds no guessed causes.
    """


class DaskSchedulerLostError(DaskTaskLostError):
    """The client lost its connection to the Dask scheduler: the task's outcome is unknown."""

    item_specific = False  # no item caused it: rerunning items one by one would not help


def gather(client: Client, remotes: list[Any]) -> dict[Any, Any]:
    """The results of the finished ones, fetched together, by key; {} if that fails."""
    finished = [r for r in remotes if r.status == "finished"]
    if not finished:
        return {}
    try:
        # One round trip for the batch; on failure (say a result lost with its worker
        # since) each is fetched alone in settle and fails, or waits for Dask to redo it.
        return dict(zip([r.key for r in finished], client.gather(finished), strict=True))
    except Exception:
        return {}


def settle(future: Future[Any], remote: Any, values: dict[Any, Any], lost_input: bool,
           outcome: bool = False) -> None:
    """Copy a finished ``distributed.Future``'s outcome into ours (``values``: gathered).

    ``lost_input``: a scattered argument of the task is gone. ``outcome``: the task is
    anyexec's chunk runner, whose result is a pickled outcome.
    """
    try:
        status = remote.status
        if status == "finished":
            value = values[remote.key] if remote.key in values else remote.result()
            succeed(future, _without_tracebacks(value) if outcome else value)
        elif status == "error":
            fail(future, _explained(remote.exception()))
        else:
            fail(future, _dropped(remote.key, status, lost_input))
    except BaseException as exc:
        fail(future, exc)


def cancel_reason(remote: Any) -> str | None:
    """Why Dask cancelled ``remote`` (distributed's FutureCancelledError.reason), if it did."""
    if getattr(remote, "status", None) != "cancelled":
        return None
    reason = getattr(getattr(getattr(remote, "_state", None), "exception", None), "reason", None)
    return reason if isinstance(reason, str) else None


def _explained(exc: BaseException) -> BaseException:
    """A task's error, with the fix when it is the function failing to load on the worker."""
    if not isinstance(exc, ImportError):
        return exc
    # The runner catches the function's own exceptions, so an ImportError here comes from
    # loading the function: its module is missing on that worker.
    lost = DaskTaskLostError(
        f"the function could not be loaded on a Dask worker ({type(exc).__name__}: {exc}). "
        "Workers must be able to import the module your function lives in: install your "
        "package on them, or send a single module with client.upload_file(path); a local "
        "cluster sees your sys.path."
    )
    lost.__cause__ = exc
    return lost


def _dropped(key: Any, status: str, lost_input: bool) -> DaskTaskLostError:
    if lost_input:
        return DaskTaskLostError(
            f"Dask dropped task {key!r} (status {status!r}): every worker holding its input "
            "(the function, sent once per map) died. A task that kills its worker does this: "
            "Dask reruns it on other workers up to distributed.scheduler.allowed-failures "
            "times (default 3)"
        )
    return DaskTaskLostError(
        f"Dask dropped task {key!r} (status {status!r}) before it finished: the executor was "
        "terminated or shut down, the client lost its scheduler, or another client cancelled it"
    )


def _without_tracebacks(raw: Any) -> Any:
    """A chunk's pickled outcome, decoded without its exceptions' traceback objects.

    ``import distributed`` makes every exception pickle its traceback (tblib), so the
    exceptions of failed calls arrived with one and the core, which shows the worker's
    traceback as a ``RemoteTraceback`` cause only for exceptions without one, showed none.
    Dropping them gives the same exception shape as on the processes backend.
    """
    # Cheap test first: an outcome without failures never names the Failure class.
    if not isinstance(raw, bytes) or b"Failure" not in raw:
        return raw
    try:
        outcome = pickle.loads(raw)
    except Exception:
        return raw  # the core reports what is wrong with it
    for failure in getattr(outcome, "failures", ()):
        failure.exception.__traceback__ = None
    return outcome
