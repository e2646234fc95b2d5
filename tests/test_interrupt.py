"""Ctrl-C during a map: the interrupt propagates quickly and no child process survives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

import anyexec
from anyexec.testing import tasks

SCRIPT = Path(__file__).parent / "scripts" / "long_map.py"

# (backend, how long each task sleeps). Threads cannot be stopped from outside, so there a
# running task ends on its own: its tasks are short, and the bound below covers them.
CASES = [("processes", 30.0), ("serial", 30.0), ("threads", 2.0), ("joblib", 30.0),
         ("pathos", 30.0), ("dask", 30.0), ("ray", 30.0), ("loky", 30.0), ("mpi", 30.0)]


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _command(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())[:200]
    except psutil.Error:
        return "?"


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize(("backend", "seconds"), CASES, ids=[c[0] for c in CASES])
def test_ctrl_c_during_map_exits_quickly_and_leaves_no_children(backend: str,
                                                                seconds: float) -> None:
    info = anyexec.available_backends().get(backend)
    if info is None or not info.available:
        pytest.skip(f"backend {backend!r} is not available here")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # stderr goes to a file, not a pipe: a surviving child would hold a pipe open and turn
    # the check below into a hang instead of a failure naming the survivor.
    err = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen([sys.executable, str(SCRIPT), backend, str(seconds)],
                            stdout=subprocess.PIPE, stderr=err, text=True, env=env,
                            start_new_session=True)
    seen: dict[int, psutil.Process] = {}
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        err.seek(0)
        assert line.strip() == "started", err.read()
        time.sleep(1.5)  # let the workers pick up tasks
        for child in _descendants(proc.pid):
            seen[child.pid] = child
        proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            for child in _descendants(proc.pid):
                seen.setdefault(child.pid, child)
            time.sleep(0.1)
        assert proc.poll() is not None, f"{backend}: still running 20 s after Ctrl-C"
        err.seek(0)
        stderr = err.read()
        assert "KeyboardInterrupt" in stderr, stderr[-2000:]
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in seen.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
        survivors = [(p.pid, _command(p)) for p in seen.values() if _alive(p)]
        assert not survivors, f"{backend}: child processes survived Ctrl-C: {survivors}"
    finally:
        # Clean up by our own handles, whatever happened above.
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for child in seen.values():
            if _alive(child):
                child.kill()
        err.close()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.parametrize("backend", ["joblib", "pathos"])
def test_ctrl_c_in_a_with_block_stops_running_calls_instead_of_waiting(
    backend: str, tmp_path: Path
) -> None:
    # In the caller's own process: a KeyboardInterrupt raised inside the with block makes the
    # executor kill the workers running calls, so leaving the block does not wait for them.
    pytest.importorskip(backend)
    ex = anyexec.get_executor(backend, max_workers=2)
    assert os.getpid() not in set(ex.map(tasks.pid, range(4), chunksize=1))
    slow = ex.submit(tasks.record_and_sleep, 0, folder=str(tmp_path), seconds=120)
    while not (tmp_path / "0.started").exists():  # wait until a worker runs it
        time.sleep(0.01)
    with pytest.raises(KeyboardInterrupt), ex:
        raise KeyboardInterrupt
    with pytest.raises(anyexec.WorkerCrashedError):
        slow.result(timeout=60)
