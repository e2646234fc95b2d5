"""The per-worker state example in docs/usage.md runs as written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[1] / "examples" / "per_worker_state.py"


@pytest.mark.parametrize("backend", ["processes", "threads", "serial"])
def test_example_loads_the_model_once_per_worker(backend: str) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--backend", backend, "--items", "200"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"200 predictions on {backend}" in result.stdout
    if backend == "processes":
        assert "initializer runs seen per process: [1]" in result.stdout
