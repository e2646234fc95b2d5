"""The per-worker set-up checks of the conformance kit, on every backend and the loky plugin.

Only the mixin runs here (the full kit runs in each backend's own test file), with the kit's
two fixtures borrowed from ``BackendConformance``.
"""

from __future__ import annotations

from typing import Any

import pytest

import anyexec
from anyexec.testing import BackendConformance
from anyexec.testing._worker_setup_conformance import WorkerSetupConformance


def needs(backend: str) -> pytest.MarkDecorator:
    info = anyexec.available_backends().get(backend)
    reason = info.reason if info is not None else "not installed"
    return pytest.mark.skipif(info is None or not info.available,
                              reason=f"backend {backend!r} unavailable: {reason}")


class SetupKit(WorkerSetupConformance):
    options: dict[str, Any] = {}
    make_executor = BackendConformance.make_executor
    require = BackendConformance.require


class TestSerial(SetupKit):
    backend = "serial"


class TestThreads(SetupKit):
    backend = "threads"
    options = {"max_workers": 3}


class TestProcesses(SetupKit):
    backend = "processes"
    options = {"max_workers": 2}


class TestProcessesSpawn(SetupKit):
    backend = "processes"
    options = {"max_workers": 2, "start_method": "spawn"}


@needs("joblib")
class TestJoblib(SetupKit):
    backend = "joblib"
    options = {"max_workers": 2}


@needs("joblib")
class TestJoblibThreading(SetupKit):
    backend = "joblib"
    options = {"max_workers": 2, "backend": "threading"}


@needs("pathos")
class TestPathos(SetupKit):
    backend = "pathos"
    options = {"max_workers": 2}


@needs("loky")
class TestLoky(SetupKit):
    backend = "loky"
    options = {"max_workers": 2}


@pytest.mark.cluster
@needs("ray")
class TestRay(SetupKit):
    backend = "ray"
    options = {"max_workers": 2}


@pytest.mark.cluster
@needs("dask")
class TestDask(SetupKit):
    backend = "dask"
    options = {"max_workers": 2}


@pytest.mark.cluster
@needs("mpi")
class TestMpi(SetupKit):
    backend = "mpi"
    options = {"max_workers": 2}
