"""The Dask backend's options: checked once, when the executor is created, into one record."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Options", "StartMethod"]

# In the same order as the processes backend's: typing caches "Literal[...] | None" by equality,
# which ignores order, so whichever backend's options were read first decided the order of the
# choices in the other's error message.
StartMethod = Literal["fork", "spawn", "forkserver"]

# Options that only shape the LocalCluster this backend starts, with their defaults.
_LOCAL_DEFAULTS: dict[str, Any] = {"threads_per_worker": None, "processes": True,
                                   "memory_limit": "auto", "start_method": None}


@dataclass
class Options:
    """``DaskBackend``'s options (see its docstring), checked; raises on a wrong one."""

    max_workers: int | None
    address: str | None
    scheduler_file: str | None
    client: Any
    threads_per_worker: int | None
    processes: bool
    memory_limit: float | str | None
    start_method: StartMethod | None
    resources: dict[str, float] | None
    retries: int
    priority: int
    connect_timeout: float
    #: Which of address, scheduler_file and client was given (None: start a local cluster).
    target: str | None = field(init=False)
    #: Tasks running at once on the local cluster, or the cap on a joined one (1 if none:
    #: then the joined cluster's size is read live).
    workers: int = field(init=False)

    def __post_init__(self) -> None:
        _check_int("max_workers", self.max_workers, minimum=1, optional=True)
        _check_int("threads_per_worker", self.threads_per_worker, minimum=1, optional=True)
        _check_int("retries", self.retries, minimum=0)
        _check_int("priority", self.priority, minimum=None)
        if self.start_method not in (None, "fork", "spawn", "forkserver"):
            raise ValueError(f"start_method must be 'fork', 'spawn', 'forkserver' or None, got "
                             f"{self.start_method!r}")
        if not isinstance(self.processes, bool):
            raise TypeError(f"processes must be True or False, got {self.processes!r}")
        self.resources = _check_resources(self.resources)
        self.connect_timeout = _check_timeout(self.connect_timeout)
        self.target = self._check_target()
        self.workers = self.max_workers or (1 if self.remote else os.cpu_count() or 1)

    @property
    def remote(self) -> bool:
        """Whether the tasks run on a cluster this executor joins instead of starting one."""
        return self.target is not None

    def _check_target(self) -> str | None:
        """At most one cluster to join, and no option that only shapes a local cluster."""
        targets = [n for n, v in (("address", self.address),
                                  ("scheduler_file", self.scheduler_file),
                                  ("client", self.client)) if v is not None]
        if len(targets) > 1:
            raise ValueError(f"give at most one of address, scheduler_file and client; got "
                             f"{' and '.join(targets)}")
        if not targets:
            return None
        local_only = [k for k, default in _LOCAL_DEFAULTS.items()
                      if getattr(self, k) != default]
        if local_only:
            raise ValueError(
                f"{', '.join(local_only)} only shape the local cluster anyexec starts; "
                f"with {targets[0]}= the running cluster's workers decide. Drop "
                f"{'it' if len(local_only) == 1 else 'them'}, or start the workers with "
                "'dask worker --nthreads N --memory-limit M'."
            )
        return targets[0]


def _check_int(name: str, value: Any, *, minimum: int | None, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        kind = "an int or None" if optional else "an int"
        raise TypeError(f"{name} must be {kind}, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_resources(resources: Any) -> dict[str, float] | None:
    if resources is None:
        return None
    if not isinstance(resources, dict) or not all(
        isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
        for k, v in resources.items()
    ):
        raise ValueError(f"resources must map resource names to amounts >= 0, for example "
                         f"{{\"GPU\": 1}}; got {resources!r}")
    return {k: float(v) for k, v in resources.items()}


def _check_timeout(seconds: Any) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
        raise ValueError(f"connect_timeout must be a number of seconds > 0, got {seconds!r}")
    return float(seconds)
