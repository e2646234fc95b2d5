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


def _tree(root: int) -> list[int]:
    """``root`` and its descendants, parents before children."""
    found = [root]
    for child in children(root):
        found.extend(_tree(child))
    return found


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)


def kill_trees(roots: set[int]) -> None:
    """SIGKILL each root and all its descendants, with none of them able to react.

    Every process of the trees is stopped first, then killed. Killing them one by one lets the
    survivors react: MPICH's ``mpiexec`` answers the death of a worker by SIGKILLing every
    process of the job, and in a singleton job that includes the caller, which then dies
    before it can report the interrupt. A stopped process can neither react nor fork, so a
    second walk after the stop finds any child started in between.
    """
    stopped: list[int] = []
    for _ in range(2):
        for root in roots:
            for pid in _tree(root):
                if pid not in stopped:
                    _signal(pid, signal.SIGSTOP)
                    stopped.append(pid)
    for pid in stopped:
        _signal(pid, signal.SIGKILL)
