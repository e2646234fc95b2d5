"""What a user meets right next to the happy path, run as their script in a fresh interpreter:
a script without the main guard under spawn/forkserver, and tracebacks of script functions."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

import anyexec
from anyexec.testing.scripts import run_script

SCRIPTS = Path(__file__).parent / "scripts"


def _require(backend: str) -> None:
    info = anyexec.available_backends().get(backend)
    if info is None or not info.available:
        pytest.skip(f"backend {backend!r} is not available here")


GUARD_CASES: list[tuple[str, dict[str, Any]]] = [
    ("processes", {"max_workers": 2, "start_method": "spawn"}),
    ("processes", {"max_workers": 2, "start_method": "forkserver"}),
]


@pytest.mark.parametrize(("backend", "options"), GUARD_CASES,
                         ids=[f"{b}-{o['start_method']}" for b, o in GUARD_CASES])
def test_a_script_without_the_main_guard_fails_fast_with_one_clear_error(
        backend: str, options: dict[str, Any]) -> None:
    _require(backend)
    for _ in range(3):
        run = run_script([str(SCRIPTS / "no_main_guard.py"), backend, json.dumps(options)],
                         timeout=60)
        assert not run.hung, run.describe()
        assert run.returncode == 1, run.describe()
        assert run.seconds < 30, run.describe()
        assert 'if __name__ == "__main__":' in run.stderr, run.describe()
        assert "WorkerCrashedError" in run.stderr, run.describe()
        # One error, not a respawn loop: a handful of lines, no leaked semaphores.
        assert len(run.stderr.splitlines()) < 40, run.describe()
        assert "leaked" not in run.stderr, run.describe()
        assert not run.leftovers, run.describe()


@pytest.mark.parametrize("backend", ["processes", "joblib", "pathos"])
def test_a_traceback_from_a_script_function_shows_its_file_and_lines(backend: str) -> None:
    _require(backend)
    script = SCRIPTS / "raise_in_script.py"
    run = run_script([str(script), backend], timeout=120)
    assert run.returncode == 0, run.describe()
    assert f'File "{script}", line 14, in parse' in run.stdout, run.stdout
    assert "return int(fields[1])  # the line the traceback must show" in run.stdout
    assert f'File "{script}", line 20, in parse' in run.stdout, run.stdout
    assert "return int(record)  # the classmethod's line" in run.stdout
    assert "<dynamic-code>" not in run.stdout


def test_the_scripts_use_this_interpreter() -> None:
    # run_script starts sys.executable: the venv's Python, with anyexec installed.
    run = run_script(["-c", "import anyexec, sys; print(sys.executable)"], timeout=60)
    assert run.stdout.strip() == sys.executable
