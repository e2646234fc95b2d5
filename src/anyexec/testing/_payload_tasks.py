"""Worker-side functions for the big-payload tests (importable by reference on workers)."""

from __future__ import annotations

import os
from typing import Any


def byte_at(blob: bytes, index: int) -> int:
    return blob[index]


def exit_on_byte(blob: bytes, index: int, bad: int = 3) -> int:
    """``blob[index]``, but the worker dies at item ``bad`` (a crash with a big payload)."""
    if index == bad:
        os._exit(13)
    return blob[index]


def raise_on_byte(blob: bytes, index: int, bad: int = 3) -> int:
    if index == bad:
        raise ValueError(f"item {index} is bad")
    return blob[index]


def array_residency(array: Any, _item: Any = None) -> dict[str, Any]:
    """Touch every element, then say where the array's memory lives in this worker.

    ``RssShmem`` counts resident pages of shared memory, ``RssAnon`` private ones: a copy of
    the array would land in the second.
    """
    total = float(array.sum())
    status: dict[str, int] = {}
    with open("/proc/self/status") as lines:
        for line in lines:
            name, _, value = line.partition(":")
            if name in ("RssAnon", "RssShmem"):
                status[name] = int(value.split()[0]) * 1024
    return {"sum": total, "owns_data": bool(array.flags.owndata), "pid": os.getpid(),
            "writeable": bool(array.flags.writeable), **status}


def write_into(array: Any, _item: Any = None) -> float:
    """A task that writes to the array it was given (its own copy-on-write pages)."""
    array[0] = 12345.0
    return float(array[0])


def first_value(array: Any, _item: Any = None) -> float:
    return float(array[0])


class Model:
    """Something big a user binds to the function: a loaded model."""

    def __init__(self, size: int) -> None:
        self.weights = bytes(size)

    def predict(self, x: int) -> int:
        return self.weights[x] + x


def live_models(_item: Any = None) -> int:
    """How many ``Model`` objects this worker process still holds."""
    import gc

    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, Model))


def slow_byte_at(blob: bytes, index: int) -> int:
    """``blob[index]`` after 0.2 s: a map that is still running when Ctrl-C comes."""
    import time

    time.sleep(0.2)
    return blob[index]
