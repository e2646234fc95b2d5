"""``forward_logs=True``: ``logging`` records emitted in a task reach the caller's handlers.

In a worker process, a handler on the root logger collects the records that the thread
running a chunk emits while it runs (at or above the caller's root level, read when the
executor was created); they travel back with the chunk's outcome, already formatted into plain
picklable records, and the caller hands each one to its own logger of the same name, whose
level and handlers decide, as the stdlib's socket-logging recipe does. Each record keeps the
worker's ``process``/``processName``/``thread`` and gains ``anyexec_worker``
("pid 1234 on host").

Backends that run tasks in the caller's process (threads, serial) need nothing: records
already reach the caller's handlers.

Imported on workers: standard library only.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from anyexec._record import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

__all__ = ["Collector", "replay"]


class Collector(logging.Handler):
    """Collects this thread's records while one chunk runs (a context manager)."""

    def __init__(self, level: int) -> None:
        super().__init__(level)
        self._thread = threading.get_ident()
        self.records: list[logging.LogRecord] = []
        self._previous_level: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self._thread:
            return  # another chunk running beside this one in the same worker (Dask threads)
        self.records.append(_portable(record))

    def __enter__(self) -> Collector:
        root = logging.getLogger()
        if root.level > self.level or root.level == logging.NOTSET:
            # The worker's root level (WARNING by default) would drop INFO records before any
            # handler saw them; the caller's level decides instead.
            self._previous_level = root.level
            root.setLevel(self.level)
        root.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        root = logging.getLogger()
        root.removeHandler(self)
        if self._previous_level is not None:
            root.setLevel(self._previous_level)


_WORKER = ""


def _worker_name() -> str:
    global _WORKER
    if not _WORKER:
        _WORKER = f"pid {os.getpid()} on {socket.gethostname()}"
    return _WORKER


def _portable(record: logging.LogRecord) -> logging.LogRecord:
    """A copy that pickles: message formatted, exception as text, no arbitrary args."""
    copy = logging.makeLogRecord(record.__dict__)
    copy.msg = record.getMessage()
    copy.args = None
    if record.exc_info:
        copy.exc_text = logging.Formatter().formatException(record.exc_info)
    copy.exc_info = None
    copy.anyexec_worker = _worker_name()
    # Extra attributes the user attached may not pickle: keep those that do as text.
    for key, value in list(copy.__dict__.items()):
        if not isinstance(value, (str, int, float, bool, type(None), tuple)):
            copy.__dict__[key] = repr(value)
    return copy


def replay(records: list[Any]) -> None:
    """In the caller: hand each forwarded record to the caller's logger of the same name."""
    for record in records:
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)
