"""support.kill_trees stops a process tree without giving any of its processes a chance to react.

MPICH's ``mpiexec`` SIGKILLs every process of a job (the caller too, in a singleton job) when
one of them dies; Ctrl-C must kill the spawned trees without setting that off.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from anyexec.backends.support import children, kill_trees

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc (Linux)")

# A parent that reacts to its child's death by writing a file, the way mpiexec reacts to a
# worker's death by killing the job.
PARENT = textwrap.dedent("""
    import signal, subprocess, sys, time
    from pathlib import Path
    flag = Path(sys.argv[1])
    signal.signal(signal.SIGCHLD, lambda *_: flag.write_text("reacted"))
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print(child.pid, flush=True)
    while True:
        time.sleep(0.001)
""")


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_kill_trees_kills_every_process_before_any_can_react(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flag = tmp_path / "flag"
    sent: list[tuple[int, int]] = []
    real_kill = os.kill

    def recording_kill(pid: int, signum: int) -> None:
        sent.append((pid, signum))
        real_kill(pid, signum)

    monkeypatch.setattr(os, "kill", recording_kill)
    for _ in range(3):
        sent.clear()
        parent = subprocess.Popen([sys.executable, "-c", PARENT, str(flag)],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert parent.stdout is not None
            grandchild = int(parent.stdout.readline())
            assert children(parent.pid) == {grandchild}
            kill_trees({parent.pid})
            assert parent.wait(timeout=10) == -signal.SIGKILL
            # Both were stopped before either was killed: a reaction needs a running process.
            signals = [signum for _, signum in sent]
            assert sorted(pid for pid, _ in sent[:2]) == sorted([parent.pid, grandchild])
            assert signals == [signal.SIGSTOP] * 2 + [signal.SIGKILL] * 2, sent
            deadline = time.monotonic() + 10
            while not _gone(grandchild) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert _gone(grandchild), "the grandchild survived kill_trees"
            assert not flag.exists(), "the parent saw its child die before it was killed"
        finally:
            if parent.poll() is None:
                parent.kill()
                parent.wait(timeout=10)
            parent.stdout.close()  # type: ignore[union-attr]
