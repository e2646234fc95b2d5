"""anyexec-mpi: work submitted before the interpreter exits runs to its end (issue 13 item 1).

Each case runs a fresh interpreter, as users do: the script submits three 0.5 s calls on two
workers (one waits in the queue), each writing a file when it finishes, and then ends in one
of three ways (the third registers an exit hook before the executor, as anyexec's core does).
Every run must end by itself, exit 0, print no traceback, and all three files must exist.
mpi4py already behaves so; these guard it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import sys, threading, time
import anyexec

def sleep_then_write(path):
    time.sleep(0.5)
    with open(path, "w") as out:
        out.write("done")

if __name__ == "__main__":
    spec, folder, ending = sys.argv[1:4]
    if ending == "hook":
        # What the core's exit hook does: shutdown(wait=True) from threading's exit hooks,
        # registered before the engine registers its own.
        executors = []
        threading._register_atexit(lambda: executors[0]._backend.shutdown(wait=True))
    ex = anyexec.get_executor(spec)
    if ending == "hook":
        executors.append(ex)
    for name in ("a", "b", "c"):
        ex.submit(sleep_then_write, f"{folder}/{name}")
    if ending == "shutdown-nowait-then-wait":
        ex.shutdown(wait=False)
        ex._backend.shutdown(wait=True)
        assert sorted(__import__("os").listdir(folder)) == ["a", "b", "c"]
    # "end": nothing; the script just ends.
"""


def run_script(tmp_path: Path, spec: str, ending: str) -> None:
    script = tmp_path / "submit_and_end.py"
    script.write_text(SCRIPT)
    folder = tmp_path / ending
    folder.mkdir()
    proc = subprocess.Popen([sys.executable, str(script), spec, str(folder), ending],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _out, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the script's own session: it and its workers
        proc.communicate()
        pytest.fail(f"{spec}: the script did not end within 90 s ({ending})")
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    assert sorted(p.name for p in folder.iterdir()) == ["a", "b", "c"], err


@pytest.mark.parametrize("ending", ["shutdown-nowait-then-wait", "end", "hook"])
def test_submitted_calls_finish_before_the_interpreter_exits(tmp_path: Path, ending: str) -> None:
    run_script(tmp_path, "mpi?max_workers=2", ending)
