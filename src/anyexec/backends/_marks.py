"""Marker files that say which worker process runs which call, for engines that do not say.

A pool that loses a worker often reports only "a worker died" (joblib, pp). To fail only the
call whose worker died, each call creates the file ``<tag>.<pid>`` in a folder while it runs
and removes it when it returns; after a crash the caller reads which calls were running where.
The folder is in ``/dev/shm`` where it exists (no disk writes) and is removed with the backend.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterator

__all__ = ["WorkerMarks", "running"]


@contextlib.contextmanager
def running(path: str, tag: object) -> Iterator[None]:
    """In the worker: mark call ``tag`` as running in this process while the block runs."""
    mark = os.path.join(path, f"{tag}.{os.getpid()}")
    with contextlib.suppress(OSError):
        os.close(os.open(mark, os.O_CREAT | os.O_WRONLY, 0o600))
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(mark)


class WorkerMarks:
    """The caller's side: a folder of marks, read after a crash, removed with the backend."""

    def __init__(self, engine: str) -> None:
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
        #: The folder, to pass to the workers (a plain string pickles anywhere).
        self.path = tempfile.mkdtemp(prefix=f"anyexec-{engine}-", dir=shm)
        # Also removed at interpreter exit if the backend was never shut down.
        self._remove = weakref.finalize(self, shutil.rmtree, self.path, True)

    def _marks(self) -> Iterator[tuple[str, int]]:
        with contextlib.suppress(OSError):
            for name in os.listdir(self.path):
                tag, _, pid = name.rpartition(".")
                with contextlib.suppress(ValueError):
                    yield tag, int(pid)

    def pid_of(self, tag: object, *, forget: bool = False) -> int | None:
        """The worker running call ``tag`` now (or when it died), if it started; ``forget``
        removes its mark, so a later crash does not count the call again."""
        for found, pid in self._marks():
            if found == str(tag):
                if forget:
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(self.path, f"{found}.{pid}"))
                return pid
        return None

    def pids(self) -> set[int]:
        """The workers running a marked call now."""
        return {pid for _tag, pid in self._marks()}

    def remove(self) -> None:
        """Remove the folder (idempotent)."""
        self._remove()
