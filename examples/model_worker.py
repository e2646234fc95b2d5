"""The worker side of ``per_worker_state.py``: load a model once per worker, use it per item.

These functions live in an importable module on purpose. Functions defined in ``__main__`` (or
a notebook) are sent to the workers by value, and each one sent gets its own copy of the
module's globals: a global set by an initializer defined there would not be seen by a task
defined there. A module the workers import by name has one set of globals per worker.
"""

from __future__ import annotations

import os
import time

# One per worker process, set by the initializer before the worker's first task.
MODEL: dict[str, float] | None = None
LOADS = 0


def load_model(path: str, seconds: float) -> None:
    """The expensive set-up: read weights, open a connection, warm a cache..."""
    global MODEL, LOADS
    time.sleep(seconds)  # stands for reading a big file
    MODEL = {"path_length": float(len(path)), "bias": 0.5}
    LOADS += 1


def predict(x: float) -> tuple[float, int, int]:
    """Use the worker's model; also say which worker answered and how often it loaded."""
    if MODEL is None:
        raise RuntimeError("the initializer did not run in this worker")
    return x * MODEL["path_length"] + MODEL["bias"], os.getpid(), LOADS
