"""The Dask backend's options: checked once, when the executor is created, into one record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from anyexec.backends.support import (
    check_amount,
    check_amounts,
    check_choice,
    check_int,
    worker_count,
)

__all__ = ["Options", "StartMethod"]

# In the same order as the processes backend's: typing caches "Literal[...] | None" by equality,
# which ignores order, so whichever backend's options were read first decided the order of the
# choices in the other's error message.
StartMethod = Literal["fork", "spawn", "forkserver"]

_ORIGIN = "the dask backend"

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
        check_int("threads_per_worker", self.threads_per_worker, minimum=1, optional=True,
                  origin=_ORIGIN)
        check_int("retries", self.retries, minimum=0, origin=_ORIGIN)
        check_int("priority", self.priority, origin=_ORIGIN)
        if self.start_method is not None:
            check_choice("start_method", self.start_method, StartMethod, origin=_ORIGIN)
        if not isinstance(self.processes, bool):
            raise TypeError(f"processes must be True or False, got {self.processes!r}")
        self.resources = check_amounts("resources", self.resources, origin=_ORIGIN)
        check_amount("connect_timeout", self.connect_timeout, origin=_ORIGIN, optional=False,
                     positive=True)
        self.connect_timeout = float(self.connect_timeout)
        self.target = self._check_target()
        # On a joined cluster without max_workers, its size is read live (Window).
        self.workers = worker_count(self.max_workers, origin=_ORIGIN,
                                    default=1 if self.remote else None)

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
