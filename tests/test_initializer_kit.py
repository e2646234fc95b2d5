"""The per-worker set-up checks of the conformance kit where no full kit class runs them.

``BackendConformance`` includes ``WorkerSetupConformance``, so every backend's own kit class
runs these checks; here they also run on processes started with ``spawn``, where a worker
shares nothing with the caller (the initializer must arrive by pickling).
"""

from __future__ import annotations

from typing import Any, ClassVar

from anyexec.testing import BackendConformance
from anyexec.testing._worker_setup_conformance import WorkerSetupConformance


class TestProcessesSpawn(WorkerSetupConformance):
    backend = "processes"
    options: ClassVar[dict[str, Any]] = {"max_workers": 2, "start_method": "spawn"}
    make_executor = BackendConformance.make_executor
    require = BackendConformance.require
