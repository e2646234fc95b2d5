"""anyexec: run a function over many items on any execution engine.

>>> from anyexec import get_executor
>>> with get_executor("threads", max_workers=4) as ex:
...     list(ex.map(lambda x: x * x, range(5)))
[0, 1, 4, 9, 16]

The same code runs on ``serial``, ``threads``, ``processes``, ``joblib``, ``pathos``, ``ray``,
``dask`` or a plugin's backend: pass its name, or set ``ANYEXEC_BACKEND``.
"""

from __future__ import annotations

from anyexec._errors import (
    AnyexecError,
    AnyexecWarning,
    BackendUnavailableError,
    RemoteTraceback,
    SerializationError,
    TaskTimeoutError,
    UnknownBackendError,
    WorkerCrashedError,
)
from anyexec._executor import Executor
from anyexec._protocol import CAPABILITIES, Backend, BackendFactory
from anyexec._registry import (
    BackendConflictWarning,
    BackendInfo,
    available_backends,
    register_backend,
)
from anyexec._selection import get_executor, use
from anyexec._worker import in_worker

__version__ = "0.1.0"

# Show public classes as anyexec.X in tracebacks and reprs, not as their private modules.
for _name in ("AnyexecError", "AnyexecWarning", "TaskTimeoutError", "BackendUnavailableError",
              "RemoteTraceback", "SerializationError", "UnknownBackendError",
              "WorkerCrashedError", "Executor", "BackendInfo", "BackendConflictWarning"):
    globals()[_name].__module__ = "anyexec"
del _name

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
    "RemoteTraceback",
    "SerializationError",
    "TaskTimeoutError",
    "UnknownBackendError",
    "WorkerCrashedError",
    "__version__",
    "available_backends",
    "get_executor",
    "in_worker",
    "register_backend",
    "use",
]
