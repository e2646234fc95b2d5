"""The README's demo runs and prints its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).parents[1] / "examples" / "file_pipeline.py"


def test_demo_prints_a_speed_up_table() -> None:
    result = subprocess.run(
        [sys.executable, str(DEMO), "--files", "6", "--workers", "2", "--backends", "threads",
         "processes"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("backend"))
    rows = [line.split()[0] for line in lines[header + 1:header + 4]]
    assert rows == ["serial", "threads", "processes"]
