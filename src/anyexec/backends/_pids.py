"""Process liveness by PID, for backends that track their own workers."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterable

__all__ = ["alive", "kill"]


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs; a zombie (dead, not yet reaped) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # The command name may contain spaces and parentheses: read after the last ')'.
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): kill(0) succeeded, so it runs


def kill(pids: Iterable[int]) -> None:
    """SIGKILL each of ``pids``; one already gone (or not ours to signal) is skipped."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
