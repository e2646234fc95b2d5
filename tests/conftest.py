"""Shared fixtures: every test gets a clean backend selection environment."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_backend_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The CI machine or a developer may have ANYEXEC_BACKEND set; tests set it explicitly.
    monkeypatch.delenv("ANYEXEC_BACKEND", raising=False)
