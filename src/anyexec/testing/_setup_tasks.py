"""Worker-side functions for the per-worker set-up checks of the conformance kit.

Importable by reference on every worker (no pytest here), so the checks run the same on
engines that do not share the caller's ``__main__``.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from anyexec._worker_setup import THREAD_VARIABLES

# How many times the initializer ran in this process, per key (each check uses a fresh key:
# workers that outlive an executor, as loky's, keep the counts of earlier checks).
RUNS: dict[str, int] = {}
_lock = threading.Lock()


def remember(key: str) -> None:
    """An initializer: count one run for ``key`` in this process."""
    with _lock:
        RUNS[key] = RUNS.get(key, 0) + 1


def runs_seen(key: str, _item: Any = None) -> tuple[int, int]:
    """A task: (this worker's PID, how many times the initializer ran here for ``key``)."""
    return os.getpid(), RUNS.get(key, 0)


def refuse_to_start(reason: str) -> None:
    """An initializer that fails, as one loading a missing model would."""
    raise LookupError(f"cannot load the model: {reason}")


def thread_variables(_item: Any = None) -> dict[str, str | None]:
    """A task: the BLAS/OpenMP thread variables as this worker sees them."""
    return {name: os.environ.get(name) for name in THREAD_VARIABLES}


def log_and_return(x: int) -> int:
    """A task that logs at INFO and WARNING (with an exception) through its own logger."""
    import logging

    log = logging.getLogger("anyexec.kit.forwarded")
    log.info("item %d on %d", x, os.getpid())
    if x == 2:
        try:
            raise KeyError("missing")
        except KeyError:
            log.warning("item %d had a problem", x, exc_info=True)
    return x


def openblas_threads(_item: Any = None) -> int | None:
    """The thread count of the OpenBLAS loaded in this worker (NumPy's), or None if none is."""
    import ctypes

    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    for path in sorted(paths):
        lib = ctypes.CDLL(path)
        for name in ("openblas_get_num_threads", "openblas_get_num_threads64_",
                     "scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads"):
            getter = getattr(lib, name, None)
            if getter is not None:
                return int(getter())
    return None
