"""The benchmark harness runs end to end at its smallest size (no timing is asserted).

Every workload runs on the built-in backends through the real command line; the tiny workload
runs once on each installed engine, anyexec against the engine used directly. Engines that are
not installed are skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import anyexec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the harness is a top-level package of the repository

from benchmarks import run  # noqa: E402

ENGINES = ["joblib", "pathos", "ray", "dask"]


def _installed(name: str) -> bool:
    info = anyexec.available_backends().get(name)
    return info is not None and info.available


def test_the_command_runs_every_workload_on_the_builtin_backends(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--backends", "serial,threads,processes",
         "--out", str(tmp_path)],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True,
        timeout=150, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    errors = [c for c in results["cases"] + results["starts"] if "error" in c]
    assert errors == []
    seen = {(c["workload"], c["backend"]) for c in results["cases"]}
    assert {("tiny", "processes"), ("cpu", "processes"), ("sleep", "threads"),
            ("stream", "processes")} <= seen
    assert {s["workload"] for s in results["starts"]} == {"import", "first result"}
    assert "| workload | backend |" in proc.stdout
    for workload in ("tiny", "cpu", "sleep", "stream", "import", "first_result"):
        assert (tmp_path / f"{workload}.png").stat().st_size > 0


def test_the_stalled_consumer_check_sees_anyexec_stop_pulling_input() -> None:
    case = run.run_case("stream", "processes", "smoke", timeout=90)
    assert "error" not in case, case.get("error")
    stall = case["extra"]["stall"]["anyexec"]
    assert stall["grew_while_stalled"] == 0
    assert stall["window_items"] is not None


@pytest.mark.parametrize("backend", ENGINES)
def test_each_installed_engine_runs_the_tiny_workload_both_ways(backend: str) -> None:
    if not _installed(backend):
        pytest.skip(f"{backend} is not installed")
    case = run.run_case("tiny", backend, "smoke", timeout=120)
    assert "error" not in case, case.get("traceback") or case.get("error")
    assert case["times"]["anyexec"], "anyexec was not timed"
    direct = [label for label in case["times"] if label != "anyexec"]
    assert direct, f"no direct {backend} variant was timed"
    assert all(case["times"][label] for label in direct)
