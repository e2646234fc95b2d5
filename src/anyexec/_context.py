"""Context-local state shared by the selection logic and the worker-side runner."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

#: The innermost ``anyexec.use(...)`` block: (spec, options), or None outside any block.
#: Context-local, so each thread and each asyncio task sees its own.
CURRENT_USE: ContextVar[tuple[str, dict[str, Any]] | None] = ContextVar(
    "anyexec_current_use", default=None
)
