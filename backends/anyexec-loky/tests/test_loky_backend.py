"""anyexec-loky passes the conformance kit, and is found through its entry point."""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import subprocess
import sys

import pytest

import anyexec
from anyexec.testing import BackendConformance, tasks


class TestLoky(BackendConformance):
    backend = "loky"
    options = {"max_workers": 2, "timeout": 60}


def test_the_backend_is_registered_by_the_installed_distribution():
    info = anyexec.available_backends()["loky"]
    assert info.available, info.reason
    assert info.source == "anyexec-loky"
    assert info.version == metadata.version("loky")
    dist = metadata.distribution("anyexec-loky")
    # Installed as a regular wheel, as a third party's plugin would be, not in editable mode.
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    assert not direct.get("dir_info", {}).get("editable", False)


def test_listing_backends_does_not_import_loky():
    code = "import anyexec, sys; anyexec.available_backends(); print('loky' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "False"


def test_spec_string_options_reach_loky_workers():
    spec = 'loky?max_workers=1&timeout=30&env={"ANYEXEC_LOKY_PROBE": "seen"}'
    with anyexec.get_executor(spec) as ex:
        assert ex.max_workers == 1
        assert ex.submit(os.getenv, "ANYEXEC_LOKY_PROBE").result(timeout=60) == "seen"


def test_a_bad_option_value_is_rejected_before_anything_starts():
    with pytest.raises(ValueError, match="context"):
        anyexec.get_executor("loky?context=threads")


def test_executors_with_the_same_options_share_warm_workers():
    options = {"max_workers": 2, "timeout": 60}
    with anyexec.get_executor("loky", **options) as first:
        before = set(first.map(tasks.pid, range(8), chunksize=1))
    with anyexec.get_executor("loky", **options) as second:
        after = set(second.map(tasks.pid, range(8), chunksize=1))
    assert before & after, "a second executor did not reuse loky's workers"
