"""Crash accounting: which of the tasks that died with a worker crashed it.

Dask fails every task assigned to a worker that died. Only the task that was running there
when it died may have killed it; one still waiting on that worker, or one that had just
finished, is a bystander and runs again instead of failing. To tell them apart, each task
leaves marker files (``_run_marked``): one holding its worker's PID when it starts, an empty
one when it ends. A task that died running beside others in one worker process is a suspect:
it runs once more, alone, and only one that dies again is reported.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections import deque
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anyexec.backends.dask._cluster import Cluster, workers_see
from anyexec.backends.dask._outcome import DaskSchedulerLostError, cancel_reason

if TYPE_CHECKING:
    from distributed import Client

    from anyexec.backends.dask._dispatch import Job

__all__ = ["Recovery", "lost_with_scheduler", "scheduler_lost"]

# Suffix of the marker file a task leaves when it has finished (see _run_marked).
_DONE = ".done"
_MAX_RESENDS = 3


class Recovery:
    """The marker folder and the suspects waiting to run once more, one at a time.

    Its state is guarded by the dispatcher's lock: call it with that lock held, except
    ``died_innocent``, ``forget`` and ``remove``.
    """

    def __init__(self, markers: str | None) -> None:
        self.markers = markers
        # Tasks that died running beside others in one worker process, to run once more one
        # at a time, and the one sent.
        self.suspects: deque[Job] = deque()
        self.suspect_out: Job | None = None

    @classmethod
    def for_cluster(cls, cluster: Cluster, *, exact_slots: bool, processes: bool) -> Recovery:
        """Markers where they work: a local cluster whose worker processes each run one task
        at a time behind the next, or a joined cluster whose workers all see our files."""
        if cluster.local is not None and not (exact_slots and processes):
            return cls(None)
        markers = tempfile.mkdtemp(prefix="anyexec-dask-")
        if cluster.local is None and not workers_see(cluster.client, markers):
            shutil.rmtree(markers, ignore_errors=True)
            return cls(None)
        return cls(markers)

    def mark(self, job: Job, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` made to leave ``job``'s marker files on the worker, if markers are on."""
        if self.markers is None:
            return fn
        job.marker = os.path.join(self.markers, f"{id(job)}-{os.urandom(6).hex()}")
        return partial(_run_marked, job.marker, fn)

    def next_suspect(self, halted: bool) -> Job | None:
        """The suspect to send now: one at a time, since two sent together could share a
        worker process again and the innocent one would die a second time with the culprit."""
        if not self.suspects or self.suspect_out is not None or halted:
            return None
        self.suspect_out = self.suspects.popleft()
        return self.suspect_out

    def settled(self, job: Job) -> None:
        """``job`` gets its outcome now: the next suspect may go."""
        if job is self.suspect_out:
            self.suspect_out = None

    def died_innocent(self, job: Job, halted: bool) -> bool:
        """Whether ``job`` died with a worker some other task killed, without being the cause.

        Dask fails every task assigned to a dead worker: one still waiting there (it never
        started), and one that had just finished (its result and the worker's report of it
        died with the worker, as the next task killed it). Neither crashed anything. A task
        that was running there is the culprit when it ran alone in that worker process; when
        others ran beside it, nobody can tell which one killed it, so each is sent once more
        and only one that dies again is reported.
        """
        if job.marker is None or job.remote.status != "error" or halted or \
                job.resent >= _MAX_RESENDS:
            # Capped: should the marker files fail (a full disk), a task that kills its worker
            # must not be taken for a bystander and sent again forever.
            return False
        from distributed import KilledWorker

        try:
            killed = isinstance(job.remote.exception(), KilledWorker)
        except Exception:
            return False
        if not killed:
            return False
        if not os.path.exists(job.marker) or os.path.exists(job.marker + _DONE):
            return True
        beside = _ran_beside_others(job.marker)
        # It died running: its marker stays (until shutdown), so that the tasks that ran
        # beside it, judged after it, see it too, whether this one is the culprit or not.
        job.marker = None
        if job.suspected or not beside:
            return False
        job.suspected += 1
        return True

    def hold(self, job: Job) -> bool:
        """For an innocent ``job`` about to run again: keep it back if it is a suspect (sent
        later, alone, by the dispatcher); False if it may go at once."""
        self.forget(job)
        job.resent += 1
        if job.marker is None and job.suspected and job is not self.suspect_out:
            self.suspects.append(job)
            return True
        return False

    def take_suspects(self) -> list[Job]:
        """The suspects still waiting, taken out: halted, they get the crash they died of."""
        suspects = list(self.suspects)
        self.suspects.clear()
        return suspects

    def forget(self, job: Job) -> None:
        """Delete ``job``'s marker files (it is settled or about to be sent again)."""
        if job.marker is not None:
            for path in (job.marker, job.marker + _DONE):
                with contextlib.suppress(OSError):
                    os.unlink(path)

    def remove(self) -> None:
        """Delete the marker folder (at shutdown)."""
        if self.markers is not None:
            shutil.rmtree(self.markers, ignore_errors=True)


def lost_with_scheduler(remote: Any, values: dict[Any, Any], client: Client) -> bool:
    """Whether ``remote``'s outcome went with the scheduler: Dask cancelled it for that, or
    it finished as the scheduler went and its result can no longer be fetched (that would
    wait out the client's reconnection)."""
    return cancel_reason(remote) == "scheduler-connection-lost" or (
        remote.key not in values and client.status != "running")


def scheduler_lost(client: Client) -> DaskSchedulerLostError:
    """The error of a task whose outcome is unknown because the scheduler went."""
    where = getattr(client, "scheduler", None)
    address = getattr(where, "address", None) or "its address"
    return DaskSchedulerLostError(
        f"the Dask client lost its connection to the scheduler at {address} (the "
        "scheduler process stopped or the network between them failed), so the outcome "
        "of this task is unknown. The cluster's workers were not at fault. Restart the "
        "scheduler (or check the network), then create a new executor"
    )


def _run_marked(marker: str, fn: Callable[..., Any], /, *args: Any) -> Any:
    """On a worker: note that the task started (a file holding the worker's PID), and that
    it finished (an empty file)."""
    with contextlib.suppress(OSError), open(marker, "x") as started:
        started.write(str(os.getpid()))
    try:
        return fn(*args)
    finally:
        with contextlib.suppress(OSError):
            open(marker + _DONE, "x").close()


def _ran_beside_others(marker: str) -> bool:
    """Whether another task was running in the same worker process as ``marker``'s task."""
    folder, own = os.path.split(marker)
    with contextlib.suppress(OSError):
        pid = Path(marker).read_text()
        for name in os.listdir(folder):
            if name == own or name.endswith(_DONE) or os.path.exists(
                    os.path.join(folder, name + _DONE)):
                continue
            with contextlib.suppress(OSError):
                if pid and Path(folder, name).read_text() == pid:
                    return True
    return False
