"""Shared fixtures: every test gets a clean backend selection environment."""

from __future__ import annotations

import os

import pytest

# Keep every Ray process in the tests (local Rays, the multi-node test cluster, subprocesses)
# on 127.0.0.1: by default Ray on Linux binds the machine's own IP address. Set before any
# test imports Ray, which reads it at import.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


@pytest.fixture(autouse=True)
def _no_backend_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The CI machine or a developer may have ANYEXEC_BACKEND set; tests set it explicitly.
    monkeypatch.delenv("ANYEXEC_BACKEND", raising=False)
