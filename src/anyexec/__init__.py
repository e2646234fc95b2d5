"""anyexec: run a function over many items on any execution engine.

>>> from anyexec import get_executor
>>> with get_executor("threads", max_workers=4) as ex:
...     list(ex.map(lambda x: x * x, range(5)))
[0, 1, 4, 9, 16]

The same code runs on ``serial``, ``threads``, ``processes``, ``joblib``, ``pathos``, ``ray``,
``dask`` or a plugin's backend: pass its name, or set ``ANYEXEC_BACKEND``.
"""

from __future__ import annotations

from anyexec._context import in_worker
from anyexec._errors import (
    AnyexecError,
    AnyexecWarning,
    BackendUnavailableError,
    ExecutorShutdownError,
    RemoteTraceback,
    SerializationError,
    TaskTimeoutError,
    UnknownBackendError,
    WorkerCrashedError,
    WorkerInitializerError,
)
from anyexec._record import TYPE_CHECKING
from anyexec._registry import (
    BackendConflictWarning,
    BackendInfo,
    available_backends,
    register_backend,
)
from anyexec._selection import get_executor, use

if TYPE_CHECKING:
    from typing import Any

    from anyexec._executor import Executor
    from anyexec._protocol import CAPABILITIES, Backend, BackendFactory, MapIterator

__version__ = "0.1.0"

# Show public classes as anyexec.X in tracebacks and reprs, not as their private modules.
for _name in ("AnyexecError", "AnyexecWarning", "TaskTimeoutError", "BackendUnavailableError",
              "ExecutorShutdownError", "RemoteTraceback", "SerializationError",
              "UnknownBackendError", "WorkerCrashedError", "WorkerInitializerError",
              "BackendInfo",
              "BackendConflictWarning"):
    globals()[_name].__module__ = "anyexec"
del _name


# Loaded on first use: Executor brings concurrent.futures and the map machinery, the
# protocols (and MapIterator) bring typing; together they would triple the cost of `import anyexec`.
_LAZY = {"Executor": "anyexec._executor", "Backend": "anyexec._protocol",
         "BackendFactory": "anyexec._protocol", "CAPABILITIES": "anyexec._protocol",
         "MapIterator": "anyexec._protocol"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'anyexec' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    if name == "Executor":
        value.__module__ = "anyexec"
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

__all__ = [
    "CAPABILITIES",
    "AnyexecError",
    "AnyexecWarning",
    "Backend",
    "BackendConflictWarning",
    "BackendFactory",
    "BackendInfo",
    "BackendUnavailableError",
    "Executor",
    "ExecutorShutdownError",
    "MapIterator",
    "RemoteTraceback",
    "SerializationError",
    "TaskTimeoutError",
    "UnknownBackendError",
    "WorkerCrashedError",
    "WorkerInitializerError",
    "__version__",
    "available_backends",
    "get_executor",
    "in_worker",
    "register_backend",
    "use",
]
