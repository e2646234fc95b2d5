"""Processes by PID, for backends that track their own workers: liveness, children, killing."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterable

__all__ = ["alive", "children", "kill", "kill_trees"]


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


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # The command name may contain spaces and parentheses: split after the last ')'.
            return int(stat.read().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def children(pid: int | None = None) -> set[int]:
    """The direct children of ``pid`` (default: this process); empty where /proc does not
    exist (macOS)."""
    pid = os.getpid() if pid is None else pid
    found: set[int] = set()
    with contextlib.suppress(OSError):
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


def kill_trees(roots: Iterable[int]) -> None:
    """SIGKILL each root and all its descendants, with none of them able to react.

    Every process of the trees is stopped first, then killed. Killing them one by one lets the
    survivors react: MPICH's ``mpiexec`` answers the death of a worker by SIGKILLing every
    process of the job, and in a singleton job that includes the caller, which then dies
    before it can report the interrupt. A stopped process can neither react nor fork, so a
    second walk after the stop finds any child started in between.
    """
    roots = list(roots)
    stopped: list[int] = []
    for _ in range(2):
        for root in roots:
            for pid in _tree(root):
                if pid not in stopped:
                    _signal(pid, signal.SIGSTOP)
                    stopped.append(pid)
    for pid in stopped:
        _signal(pid, signal.SIGKILL)
