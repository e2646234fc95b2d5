"""One wording for "the worker running this call died", for every backend."""

from __future__ import annotations

from anyexec._errors import WorkerCrashedError

__all__ = ["LIKELY_CAUSES", "crash_error"]

#: Why a worker process usually dies without a Python exception.
LIKELY_CAUSES = (
    "the task called os._exit() or crashed the interpreter (a segmentation fault in a C "
    "extension), or the worker was killed by a signal or by the out-of-memory killer "
    "(see 'dmesg')"
)


def crash_error(*, pid: int | None = None, detail: object = None, rerun_alone: bool = False,
                item_specific: bool = True,
                cls: type[WorkerCrashedError] = WorkerCrashedError) -> WorkerCrashedError:
    """The error for a call whose worker process died while running it.

    ``pid`` names the worker when the backend knows it; ``detail`` is the engine's own report
    (its message is put on one line); ``rerun_alone`` says the call also killed its worker when
    it ran again alone, so it is the culprit, not a bystander; ``item_specific=False`` says no
    item of the call caused it, so the core does not rerun the call's items one by one to find
    one. ``cls`` may be a backend's own subclass of ``WorkerCrashedError``.
    """
    who = f"worker process {pid}" if pid is not None else "the worker process"
    text = f"{who}, which was running this task, died abruptly"
    if rerun_alone:
        text += ", also when the task was run again alone on a fresh worker"
    text += f". Likely causes: {LIKELY_CAUSES}"
    if detail is not None:
        engine = " ".join(str(detail).split())
        name = type(detail).__name__ if isinstance(detail, BaseException) else ""
        text += f". The engine said: {name + ': ' if name else ''}{engine}"
    error = cls(text.rstrip(".") + ".")
    error.item_specific = item_specific
    return error
