"""``mpi``: anyexec over ``mpi4py.futures``, with MPI from the ``mpich`` wheel.

Two ways to run, both with the same code:

- ``python script.py``: each executor spawns ``max_workers`` worker processes with
  ``MPI_Comm_spawn`` (``MPIPoolExecutor``) and stops them on ``shutdown``;
- ``mpiexec -n 4 python -m mpi4py.futures script.py``: rank 0 runs the script and the other
  ranks are the workers, shared by every executor the script creates.

mpi4py is imported when an executor is created, never when anyexec lists its backends.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from anyexec.backends.support import children, kill_trees, worker_count
from anyexec_mpi._launcher import put_mpiexec_on_path

__all__ = ["MPIBackend"]

log = logging.getLogger("anyexec")


def _exit_after_interrupt() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(130)  # 128 + SIGINT, what a shell reports for Ctrl-C


def _launched_pool() -> tuple[bool, int]:
    """(True, world size) under ``python -m mpi4py.futures``, else (False, world size)."""
    from mpi4py import MPI
    from mpi4py.futures import _core

    # mpi4py sets this module global while ``-m mpi4py.futures`` runs the script; there is no
    # public accessor for it.
    return getattr(_core, "SharedPool", None) is not None, MPI.COMM_WORLD.Get_size()


class MPIBackend:
    """An ``mpi4py.futures.MPIPoolExecutor``.

    Options: ``max_workers`` (processes to spawn, default the CPU count; under
    ``-m mpi4py.futures`` the launched ranks are the workers, and a ``max_workers`` below their
    number is refused rather than silently exceeded), ``python_exe`` (the interpreter spawned
    workers run, default this one), ``env`` (environment variables set in spawned workers),
    ``use_pkl5`` (mpi4py's out-of-band pickling, for messages over 2 GiB).

    Capabilities: ``interrupts_tasks`` only (tasks run in the main thread of a worker process,
    so ``task_timeout`` interrupts them). Not ``isolated`` nor ``recovers_from_worker_death``:
    when a worker dies, MPI's fault model ends the whole job, the caller included (MPICH's
    ``mpiexec`` kills every process of a job when one exits abnormally). Not ``cancel_running``:
    a task that started runs to its end; cancelling one that has not started works.
    """

    engine = "mpi4py"
    requires = ("mpi4py",)
    install_hint = "pip install anyexec-mpi"
    aliases = ("mpi4py",)
    capabilities = frozenset({"interrupts_tasks", "reuses_workers"})
    # A round trip through mpi4py's manager thread and MPI messaging.
    task_overhead = 1e-3

    def __init__(self, *, max_workers: int | None = None, python_exe: str | None = None,
                 env: dict[str, str] | None = None, use_pkl5: bool = False) -> None:
        from mpi4py import MPI
        from mpi4py.futures import MPIPoolExecutor

        added = put_mpiexec_on_path(MPI.Get_library_version())
        if added:
            log.debug("anyexec-mpi: put %s first on PATH so that MPI finds mpiexec", added)
        launched, world = _launched_pool()
        options: dict[str, Any] = {"use_pkl5": use_pkl5}
        if not launched:
            options["max_workers"] = worker_count(max_workers, origin="the mpi backend")
            # Functions from the caller's __main__ arrive by value (anyexec cloudpickles
            # them), so workers need not re-import the caller's script.
            options["main"] = False
            if python_exe is not None:
                options["python_exe"] = python_exe
            if env is not None:
                options["env"] = dict(env)
        before = children(os.getpid())
        self._pool = MPIPoolExecutor(**options)
        # Start the workers now: spawn errors surface in get_executor, and MPI may grant fewer
        # processes than asked ("soft" spawn), which is the real concurrency.
        self.max_workers: int = self._pool.num_workers
        # The process trees this pool spawned (MPICH's mpiexec and its workers), by PID, so
        # that terminate() stops exactly what this executor started.
        self._spawned = children(os.getpid()) - before
        if self.max_workers < 1:
            self._pool.shutdown(wait=False)
            raise RuntimeError("mpi4py.futures could not start any MPI worker")
        if launched and max_workers is not None and max_workers < self.max_workers:
            self._pool.shutdown(wait=False)
            raise ValueError(
                f"this script was launched with {world} MPI processes, so {self.max_workers} "
                f"workers run tasks at once; max_workers={max_workers} cannot be honoured. "
                f"Launch with 'mpiexec -n {max_workers + 1} python -m mpi4py.futures ...' or "
                "drop max_workers."
            )

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = self._pool.submit(fn, *args, **kwargs)
        return future

    def terminate(self) -> None:
        """Ctrl-C: kill the workers this executor spawned, then release the pool.

        Under ``mpiexec`` the workers are not ours; ``mpiexec`` forwards the interrupt to them.
        """
        spawned, self._spawned = self._spawned, set()
        kill_trees(spawned)
        self._pool.shutdown(wait=False, cancel_futures=True)
        if spawned:
            # mpi4py's manager thread now waits forever for replies from the killed workers,
            # and mpi4py has the interpreter join it at exit. MPI's fault model is that the job
            # ends when a process dies: end this one promptly, through the same pre-join hook
            # mpi4py registers itself with, after the interrupt's traceback was printed.
            threading._register_atexit(_exit_after_interrupt)  # type: ignore[attr-defined]

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)
