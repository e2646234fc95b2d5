"""This process's own child process trees, found through /proc (Linux)."""

from __future__ import annotations

import contextlib
import os
import signal


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # The command name may contain spaces and parentheses: split after the last ')'.
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def children(pid: int) -> set[int]:
    """The direct children of ``pid`` (empty where /proc does not exist)."""
    if not os.path.isdir("/proc"):
        return set()
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _parent_of(int(entry)) == pid:
            found.add(int(entry))
    return found


def kill_trees(roots: set[int]) -> None:
    """SIGKILL each root and all its descendants, deepest first."""
    for root in roots:
        kill_trees(children(root))
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(root, signal.SIGKILL)
