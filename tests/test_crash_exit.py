"""Crash, then exit: each crash kind, as a user's script, in fresh interpreters, many times.

A hang at interpreter exit after a worker died showed up in 1 run of 4 to 17 runs of 20 and
cannot be seen from inside the long-lived pytest process. Each case runs the script
``scripts/crash_then_exit.py`` ``ANYEXEC_CRASH_RUNS`` times (default 10; set it higher to
soak) and requires every run to end by itself, print only its own lines, keep every good
result, and leave no process behind.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import anyexec
from anyexec.testing.scripts import ScriptRun, run_script, stray_output

SCRIPT = Path(__file__).parent / "scripts" / "crash_then_exit.py"
RUNS = int(os.environ.get("ANYEXEC_CRASH_RUNS", "10"))

# (backend, options): the backends whose tasks run in worker processes on this machine.
BACKENDS: list[tuple[str, dict[str, Any]]] = [
    ("processes", {"max_workers": 2}),
    ("processes", {"max_workers": 2, "start_method": "spawn"}),
    ("processes", {"max_workers": 2, "start_method": "forkserver"}),
    ("joblib", {"max_workers": 2}),
    ("pathos", {"max_workers": 2}),
    ("loky", {"max_workers": 2}),
]
# (crash kind, seconds per item, bytes of argument per item). Slow items leave the other
# worker busy when one dies; large arguments are still being sent when it dies.
ROWS = [("raise", 0.0, 0), ("os-exit", 0.0, 0), ("os-exit", 0.02, 0), ("sigkill", 0.02, 0),
        ("segfault", 0.02, 0), ("os-exit", 0.0, 1_000_000)]


def _id(backend: str, options: dict[str, Any]) -> str:
    method = options.get("start_method")
    return f"{backend}-{method}" if method else backend


def _check(run: ScriptRun, how: str) -> None:
    assert not run.hung, f"the script did not end by itself: {run.describe()}"
    assert run.returncode == 0, run.describe()
    assert not stray_output(run.stderr), run.describe()
    assert not run.leftovers, run.describe()
    expected = "ValueError" if how == "raise" else "WorkerCrashedError"
    assert f"first: {expected}" in run.stdout, run.describe()
    assert "failed: [5]" in run.stdout, f"only item 5 may fail: {run.describe()}"
    assert "kept in order: True" in run.stdout, run.describe()
    assert "second: [2, 1, 0]" in run.stdout, run.describe()


@pytest.mark.timeout(600)
@pytest.mark.parametrize(("backend", "options"), BACKENDS,
                         ids=[_id(*case) for case in BACKENDS])
@pytest.mark.parametrize(("how", "seconds", "arg_bytes"), ROWS,
                         ids=[f"{h}-{int(s * 1000)}ms-{b}B" for h, s, b in ROWS])
def test_a_script_whose_worker_crashed_ends_quietly_every_time(
        backend: str, options: dict[str, Any], how: str, seconds: float,
        arg_bytes: int) -> None:
    info = anyexec.available_backends().get(backend)
    if info is None or not info.available:
        pytest.skip(f"backend {backend!r} is not available here")
    if options.get("start_method") and (how, seconds, arg_bytes) != ("os-exit", 0.02, 0):
        pytest.skip("start methods other than the default run one crash row")
    args = [str(SCRIPT), backend, how, json.dumps(options), str(seconds), str(arg_bytes)]
    # Two runs at a time: each is mostly interpreter and pool start-up.
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda _: run_script(args, timeout=60), range(RUNS)))
    for run in runs:
        _check(run, how)
