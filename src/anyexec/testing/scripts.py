"""Run a script in a fresh interpreter, as a user runs theirs, and see how it ended.

A hang at interpreter exit, a stray traceback from a pool's thread or a worker left behind can
only be seen from outside the process that is exiting. :func:`run_script` starts the script with
a marker in its environment (inherited by every process it starts), waits for it with a bound,
and then looks for any process that still carries the marker: a worker left behind. Whatever
it finds, it stops by PID before returning, so a failing check never leaves processes behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["ScriptRun", "run_script", "stray_output"]

_MARKER = "ANYEXEC_SCRIPT_RUN"


@dataclass
class ScriptRun:
    """How one run of a script ended."""

    returncode: int | None  # None: it did not end within the bound (it was killed)
    stdout: str
    stderr: str
    seconds: float
    #: Processes started by the script still alive after it ended: "pid command" lines.
    leftovers: list[str] = field(default_factory=list)

    @property
    def hung(self) -> bool:
        return self.returncode is None

    def describe(self) -> str:
        """A summary for an assertion message."""
        state = "hung (killed)" if self.hung else f"exit {self.returncode}"
        return (f"{state} after {self.seconds:.1f} s; leftovers: {self.leftovers}\n"
                f"--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}")


def run_script(args: Sequence[str], *, timeout: float = 60.0,
               env: dict[str, str] | None = None, grace: float = 5.0) -> ScriptRun:
    """Run ``python *args`` in a fresh interpreter and report how it ended.

    ``timeout`` bounds the run; ``grace`` is how long processes the script started may take
    to go away after it ended before they count as left behind.
    """
    marker = uuid.uuid4().hex
    full_env = {**os.environ, **(env or {}), _MARKER: marker, "PYTHONUNBUFFERED": "1"}
    # Files, not pipes: a worker left behind would hold a pipe open and turn the read into a
    # hang instead of a finding.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        began = time.monotonic()
        proc = subprocess.Popen([sys.executable, *args], stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, env=full_env,
                                start_new_session=True)
        try:
            returncode: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            returncode = None
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        seconds = time.monotonic() - began
        leftovers = _wait_for_marked(marker, grace)
        out.seek(0)
        err.seek(0)
        return ScriptRun(returncode, out.read(), err.read(), seconds, leftovers)


def _marked(marker: str) -> dict[int, str]:
    """Live processes whose environment carries ``marker``: pid -> command line."""
    needle = f"{_MARKER}={marker}".encode()
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as environ:
                if needle not in environ.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/stat") as stat:
                if stat.read().rpartition(")")[2].split()[0] == "Z":
                    continue  # dead, waiting to be reaped
            with open(f"/proc/{entry}/cmdline", "rb") as cmd:
                found[int(entry)] = cmd.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
    return found


def _wait_for_marked(marker: str, grace: float) -> list[str]:
    """Wait up to ``grace`` s for the script's processes to end; kill and report the rest."""
    if not os.path.isdir("/proc"):  # pragma: no cover - Linux only
        return []
    deadline = time.monotonic() + grace
    while True:
        left = _marked(marker)
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    for pid in left:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return [f"{pid} {command[:200]}" for pid, command in sorted(left.items())]


#: Lines a quiet script must never print: tracebacks from a pool's own threads, invalid
#: future states, leaked resources, respawn loops.
_STRAY = ("Traceback (most recent call last)", "Exception in thread", "InvalidStateError",
          "leaked semaphore", "leaked shared_memory", "Exception ignored")


def stray_output(text: str) -> list[str]:
    """The lines of ``text`` that a script which handled its own errors must not print."""
    return [line for line in text.splitlines() if any(s in line for s in _STRAY)]
