"""Context-local state shared by the selection logic and the worker-side runner."""

from __future__ import annotations

from contextvars import ContextVar

from anyexec._record import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

#: The innermost ``anyexec.use(...)`` block: (spec, options), or None outside any block.
#: Context-local, so each thread and each asyncio task sees its own.
CURRENT_USE: ContextVar[tuple[str, dict[str, Any]] | None] = ContextVar(
    "anyexec_current_use", default=None
)

#: True while a task runs on an anyexec worker; makes the default backend ``serial`` there.
IN_WORKER: ContextVar[bool] = ContextVar("anyexec_in_worker", default=False)


def in_worker() -> bool:
    """Whether the current code runs inside a task on an anyexec worker."""
    return IN_WORKER.get()
