"""anyexec-loky: a worker crash fails only the call whose worker died (issue 14 items 1-3).

loky kills every worker when one dies, so the calls running beside the culprit die too; they
must be run again, never failed, and the error must name the item that crashed. Each run is a
fresh interpreter: 20 items of 20 ms, item 7 calls os._exit, on_error="return", chunksize=1
(the core splits crashed chunks into single items; this checks the backend's part). Before the
fix, the plugin reran the lost calls together once and failed them all when item 7 crashed
the fresh pool again: [7, 8, 9, 10, 11, 12] in 5 of 5 runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("loky")

RUNS = 20

SCRIPT = """
import os, sys, time
import anyexec

def work(x):
    time.sleep(0.02)
    if x == 7:
        os._exit(3)
    return x

if __name__ == "__main__":
    with anyexec.get_executor(sys.argv[1]) as ex:
        out = list(ex.map(work, range(20), chunksize=1, on_error="return"))
    failed = [i for i, v in enumerate(out) if isinstance(v, BaseException)]
    assert failed == [7], (failed, [str(out[i]) for i in failed])
    assert isinstance(out[7], anyexec.WorkerCrashedError), repr(out[7])
    assert "item 7 " in str(out[7]), str(out[7])
    assert [v for i, v in enumerate(out) if i != 7] == [i for i in range(20) if i != 7]
"""


def run_crash_script(tmp_path: Path, spec: str, runs: int = RUNS) -> None:
    script = tmp_path / "crash_one_item.py"
    script.write_text(SCRIPT)
    for run in range(runs):
        proc = subprocess.Popen([sys.executable, str(script), spec], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            _out, err = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the script's own session
            proc.communicate()
            pytest.fail(f"run {run}: the script did not end within 90 s")
        assert proc.returncode == 0, f"run {run}: {err}"
        assert "Traceback" not in err, f"run {run}: {err}"


@pytest.mark.timeout(900)
@pytest.mark.parametrize(("workers", "runs"), [(2, RUNS), (4, 5)])
def test_only_the_item_whose_worker_died_fails(tmp_path: Path, workers: int, runs: int) -> None:
    run_crash_script(tmp_path, f"loky?max_workers={workers}&timeout=60", runs)
