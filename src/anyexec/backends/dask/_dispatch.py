# Much of distributed's public API has no annotations; calling it is not an error here.
# mypy: disable-error-code="no-untyped-call"
"""The Dask backend's queue of calls and the window of those in Dask.

Calls wait here until the window (``Window.in_flight``) has room, then go to Dask in the
order they came, suspects of a crash first (see ``_recovery``). The collector thread takes
finished ones out with ``finished`` and refills the window.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from anyexec.backends.dask._cluster import threads
from anyexec.backends.dask._recovery import scheduler_lost
from anyexec.backends.support import SHUTDOWN_MESSAGE, fail

if TYPE_CHECKING:
    from distributed import Client

    from anyexec.backends.dask._recovery import Recovery

__all__ = ["Dispatcher", "Job", "Shared", "Window"]

# Payloads smaller than this travel inside each task instead of being scattered.
_SCATTER_ABOVE = 64 * 1024
# Seconds between two looks at a joined cluster's size (the client's own view of it is
# refreshed every 2 s).
_RESIZE_EVERY = 1.0


@dataclass
class Job:
    """A submitted call: queued here until a slot is free, then sent to Dask."""

    future: Future[Any]
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    remote: Any = field(default=None)  # the distributed.Future once sent
    marker: str | None = field(default=None)  # file the task creates when it starts
    resent: int = 0  # times sent again after dying with a worker another task killed
    # Times it died while running beside other tasks in one worker process (which of them
    # killed it is unknown, so each runs once more; one that dies again is the culprit).
    suspected: int = 0


class Shared:
    """What ``share`` returns: the scattered data, and the object to scatter again if lost.

    The core passes it as a top-level ``submit`` argument; ``submit`` swaps in the Dask future,
    which Dask replaces by the value on the worker. Dropping this object (the map ended)
    releases the data on the cluster.
    """

    __slots__ = ("obj", "ref")

    def __init__(self, obj: Any, ref: Any) -> None:
        self.obj = obj
        self.ref = ref

    def lost(self) -> bool:
        """Whether every worker holding the data died."""
        return bool(self.ref.status != "finished")


@dataclass
class Window:
    """How many calls run at once, and how many of ours Dask may hold (see the package
    docstring): fixed on our local cluster, following the size of a joined one."""

    client: Client
    local: bool
    workers: int  # max_workers, or the local cluster's size
    cap: int | None  # the max_workers given
    ahead: int  # calls per slot in Dask on a local cluster

    @property
    def max_workers(self) -> int:
        """Tasks running at once: fixed on our local cluster, and the value given; otherwise,
        on a cluster we connected to, its current thread count, so that workers joining later
        get work and the window shrinks with the cluster."""
        if self.local or self.cap:
            return self.workers
        return max(1, threads(self.client))

    @property
    def in_flight(self) -> int:
        """How many of our tasks may be in Dask at once. On a cluster we connected to, never
        more than its current threads: a max_workers given is a cap, reached as the cluster
        grows."""
        if self.local:
            return self.workers * self.ahead
        current = max(1, threads(self.client))
        return min(self.cap, current) if self.cap else current


class Dispatcher:
    """The queue, the calls in Dask (by key) and sending; one lock guards them all."""

    def __init__(self, client: Client, window: Window, recovery: Recovery, *,
                 resources: dict[str, float] | None, retries: int, priority: int) -> None:
        from distributed import as_completed

        self.lock = threading.RLock()
        self.wake = threading.Condition(self.lock)  # something was sent, or we stopped
        self.queue: deque[Job] = deque()
        self.sent: dict[Any, Job] = {}  # Dask key -> job, for the jobs Dask holds
        self.closed = False  # shut down: no new calls
        self.halted = False  # terminate() or shutdown(cancel_futures=True): send nothing again
        self.stopped = False  # closing: the collector ends once nothing is in Dask
        self._resized_stop = threading.Event()
        self._client = client
        self._window = window
        self._recovery = recovery
        self._submit_options = {"resources": resources, "retries": retries or None,
                                "priority": priority}
        # Without results: a finished task frees its slot as soon as the scheduler says so,
        # and the next task is on its way while we fetch the results (in one gather).
        self._completed = as_completed(loop=client.loop)

    def put(self, fn: Callable[..., Any], args: tuple[Any, ...],
            kwargs: dict[str, Any]) -> Future[Any]:
        """Queue a call and send what the window allows."""
        future: Future[Any] = Future()
        with self.lock:
            if self.closed:
                raise RuntimeError(SHUTDOWN_MESSAGE)
            self.queue.append(Job(future, fn, args, kwargs))
        self.fill()
        return future

    def share(self, obj: Any) -> Any:
        """A large ``obj`` scattered to the cluster, with the copy to scatter again if lost;
        a small one as it is (see ``DaskBackend.share``)."""
        if _pickled_size(obj) < _SCATTER_ABOVE:
            return obj
        return Shared(obj, self._scatter(obj))

    def fill(self) -> None:
        """Send queued jobs to Dask while fewer than the in-flight bound are there."""
        with self.lock:
            # Sending under the lock keeps Dask's arrival order equal to submission order.
            # On a cluster we only connected to, exactly max_workers tasks in Dask, none
            # waiting on a worker: that is what bounds the tasks running at once there.
            while len(self.sent) < self._window.in_flight:
                suspect = self._recovery.next_suspect(self.halted)
                if suspect is not None:
                    self.send(suspect)
                    continue
                if not self.queue:
                    break
                job = self.queue.popleft()
                if not job.future.set_running_or_notify_cancel():
                    continue  # cancelled while queued: it never reaches Dask
                self.send(job)
            self.wake.notify()

    def send(self, job: Job) -> None:
        """Hand ``job`` to Dask (under the lock); a failure to send fails its future."""
        # Keyword arguments ride in a partial: as keywords of client.submit, names such as
        # "priority" or "key" would be taken for Dask's own.
        fn = partial(job.fn, **job.kwargs) if job.kwargs else job.fn
        fn = self._recovery.mark(job, fn)
        if self._client.status != "running":
            # Reconnecting after losing the scheduler (or closed): a task sent now would wait
            # for the reconnection (30 s by default) and then be dropped.
            self._recovery.settled(job)
            fail(job.future, scheduler_lost(self._client))
            return
        try:
            job.remote = self._client.submit(fn, *map(self._resolve, job.args), pure=False,
                                             **self._submit_options)
        except BaseException as exc:
            self._recovery.settled(job)
            fail(job.future, exc)
            return
        self.track(job)

    def track(self, job: Job) -> None:
        """Watch ``job``'s Dask future until it finishes (again, if its result was lost)."""
        with self.lock:
            self.sent[job.remote.key] = job
            self._completed.add(job.remote)

    def resend(self, job: Job) -> bool:
        """Run an innocent ``job`` again (now, or as a suspect later); False once halted."""
        with self.lock:
            if self.halted:
                return False
            if not self._recovery.hold(job):
                self.send(job)
            return True

    def finished(self) -> list[Job] | None:
        """Wait until Dask finishes some of our tasks; their jobs, out of the window. None
        once stopped with nothing left in Dask."""
        while True:
            with self.lock:
                while not self.sent and not self.stopped:
                    self.wake.wait()
                if self.stopped and not self.sent:
                    return None
            try:
                batch = self._completed.next_batch(block=True)
            except StopIteration:  # a cancelled future left it empty for a moment
                continue
            with self.lock:
                jobs = (self.sent.pop(remote.key, None) for remote in batch)
                return [job for job in jobs if job is not None]

    def close(self) -> bool:
        """Accept no new calls; whether this is the first close."""
        with self.lock:
            first = not self.closed
            self.closed = True
            return first

    def halt(self) -> tuple[list[Job], list[Job], list[Any]]:
        """Send nothing more. Returns, taken out, the jobs still queued and the suspects
        waiting to run again, and the Dask futures of the jobs Dask holds."""
        with self.lock:
            self.halted = True
            queued = list(self.queue)
            self.queue.clear()
            return queued, self._recovery.take_suspects(), [j.remote for j in self.sent.values()]

    def outstanding(self) -> list[Future[Any]]:
        """Our futures not settled yet, queued, waiting to run again or in Dask."""
        with self.lock:
            return [job.future for job in
                    (*self.queue, *self._recovery.suspects, *self.sent.values())
                    if not job.future.done()]

    def stop(self) -> None:
        """Closing: the collector ends once nothing is in Dask; the resize thread ends."""
        with self.lock:
            self.stopped = True
            self.wake.notify_all()
            self._resized_stop.set()

    def follow_cluster_size(self) -> None:
        """Thread body: on a joined cluster, send more as it grows (see ``_RESIZE_EVERY``).

        Tasks are sent when others finish; a worker that joins while every task runs for
        minutes would wait for that.
        """
        # Its own event, not self.wake: a notify() meant for the collector must not wake this.
        while not self._resized_stop.wait(_RESIZE_EVERY):
            with self.lock:
                if not self.queue or len(self.sent) >= self._window.in_flight:
                    continue
            with contextlib.suppress(Exception):
                self.fill()

    def _scatter(self, obj: Any) -> Any:
        # In a list: scatter would otherwise split a list or dict into one future per element.
        # hash=False: two maps of equal payloads must not share (and release) one key.
        # broadcast: the workers running the map all need it anyway, and with a single copy
        # the death of the worker holding it makes Dask cancel every task waiting for it.
        return self._client.scatter([obj], hash=False, broadcast=True)[0]

    def _resolve(self, arg: Any) -> Any:
        if not isinstance(arg, Shared):
            return arg
        if arg.lost():
            # Every worker holding it died: scatter it again from the copy we kept.
            with self.lock:
                if arg.lost():
                    arg.ref = self._scatter(arg.obj)
        return arg.ref


def _pickled_size(obj: Any) -> int:
    data = getattr(obj, "data", None)  # anyexec's PickledCallable is pickled already
    if isinstance(data, bytes):
        return len(data)
    try:
        import cloudpickle

        return len(cloudpickle.dumps(obj))
    except Exception:
        return _SCATTER_ABOVE  # let scatter report what is wrong with it
