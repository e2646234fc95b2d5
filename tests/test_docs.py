"""The documentation site builds in strict mode, and the integration examples run as written."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MKDOCS = Path(sys.executable).parent / "mkdocs"
QUIET = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}


def build(root: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MKDOCS), "build", "--strict", "--site-dir", str(site)], cwd=root,
        capture_output=True, text=True, timeout=120, env=QUIET)


def test_the_site_builds_in_strict_mode_with_the_api_reference(tmp_path: Path) -> None:
    proc = build(ROOT, tmp_path / "site")
    assert proc.returncode == 0, proc.stderr
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in ("get_executor", "amap", "BackendConformance", "AnyexecJoblibBackend"):
        assert name in api
    # Sphinx roles of the docstrings are shown as code, not as ':func:' text.
    assert not re.search(r":(func|class|meth):", api)


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    shutil.copy(ROOT / "mkdocs.yml", tmp_path)
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    (tmp_path / "src").symlink_to(ROOT / "src")
    with (tmp_path / "docs" / "usage.md").open("a") as page:
        page.write("\nSee [the missing page](no-such-page.md).\n")
    proc = build(tmp_path, tmp_path / "site")
    assert proc.returncode != 0
    assert "no-such-page.md" in proc.stderr


def _python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "docs" / page).read_text(), re.DOTALL)


@pytest.mark.parametrize("index", range(len(_python_blocks("integrations.md"))))
def test_each_integration_example_runs_as_written(index: int, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(_python_blocks("integrations.md")[index])
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip(), "the example printed nothing"
    assert "Traceback" not in proc.stderr, proc.stderr
