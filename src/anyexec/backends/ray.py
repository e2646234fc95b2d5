"""``ray``: tasks on a Ray cluster, local or remote.

With no ``address`` the executor uses the Ray already initialised in this process, or starts a
local one sized for ``max_workers`` tasks and stops it when the last executor using it shuts
down. With an ``address`` it joins that cluster as a driver and never stops the cluster.

``max_workers`` holds on every Ray. On a Ray we do not control (the user's, a cluster) it is
enforced here: at most that many Ray tasks are in flight, the rest wait in a local queue where
cancelling them costs nothing; there it is the cluster's current CPUs (per task), capped by the
value given, so that nodes joining later get work. On a local Ray this executor started, Ray is
sized so that its own scheduler runs at most ``max_workers`` of our tasks at once; there up to
twice that many are handed to Ray, so a worker that finishes a task finds the next one already
waiting instead of idling for a round trip through this process. Ray's own task retries are
off, so a dead worker fails its future at once and ``map(retries=...)`` decides.

``ray.cancel`` is never called: in Ray 2.60 a cancel that races with the task's completion
aborts the whole driver process ("Check failed: it != submissible_tasks_.end()", see
ray-project/ray#54846). So only calls still in the local queue can be cancelled; a call handed
to Ray reports ``running()`` and runs to its end (its result is dropped if nobody wants it).

Losing the cluster's head node (its GCS): Ray itself reports nothing to the driver for calls
running on other nodes, and ends the whole driver process ``gcs_rpc_server_reconnect_timeout_s``
(60 s by default) after it lost the GCS; ``ray.shutdown()`` blocks until then. So while calls
are out, a watcher thread checks every second that the GCS port still accepts connections;
after ``_GCS_GRACE`` seconds without (at once when a call fails and the GCS refuses), every
call fails with :class:`RayClusterLostError` and the executor's own connection is closed
(in the background: that takes ~5 s, which the interpreter's exit waits for).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from anyexec._errors import WorkerCrashedError
from anyexec.backends.support import (
    Call,
    CallQueue,
    check_amount,
    check_amounts,
    fail,
    succeed,
    worker_count,
)

if TYPE_CHECKING:
    from ray import ObjectRef

__all__ = ["RayBackend", "RayClusterLostError"]

# Ray's switch between "cluster" networking (the machine's IP) and loopback-only networking.
_LOCAL_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_ORIGIN = "the ray backend"
# Seconds a reading of a joined cluster's size is reused: the core reads max_workers at every
# chunk, and the dispatcher looks again this often for workers that joined.
_RESIZE_EVERY = 1.0
# Seconds between two checks that the GCS accepts connections, while calls are out; and how
# long it may refuse them (or not answer) before the cluster counts as lost. A GCS restarted
# with fault tolerance (external Redis) within that time goes unnoticed.
_PROBE_EVERY = 1.0
_GCS_GRACE = 3.0


class RayClusterLostError(WorkerCrashedError):
    """The Ray cluster's head node (its GCS) stopped answering: the call's outcome is unknown.

    No item caused it, so the core fails the calls as they are instead of rerunning their
    items one by one. An executor that opened the process's Ray connection then closes it, in
    the background (Ray would otherwise end the whole process
    ``gcs_rpc_server_reconnect_timeout_s`` seconds, 60 by default, after losing the GCS).
    """

    item_specific = False

class _Session:
    """The Ray connection this module opened, shared by the executors that use it.

    Ray allows one connection per process, so a second executor reuses the first one's. The
    one that opened it is not special: Ray is shut down when the last executor using it closes.
    A Ray initialised by the user is never counted here and never shut down by us.
    """

    lock = threading.Lock()
    gcs_address: str | None = None
    users = 0
    lost: str | None = None  # the GCS address of a connection whose cluster was lost


def _current_gcs_address() -> str | None:
    import ray

    try:
        return str(ray.get_runtime_context().gcs_address)
    except Exception:  # Ray Client connections have no GCS address on the driver side
        return None


def _lost_message(address: str) -> str:
    return (f"lost the Ray cluster: its head node (the GCS at {address}) stopped answering "
            "(the head node's processes stopped, or the network to it failed), so the outcome "
            "of this call is unknown. The task and its worker were not at fault. Restart the "
            "cluster, then create a new executor")


def _gcs_endpoint(address: str | None) -> tuple[str, int] | None:
    """(host, port) of a GCS address ``HOST:PORT``; None if it has no such form."""
    if not address:
        return None
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _answers(endpoint: tuple[str, int]) -> bool:
    try:
        socket.create_connection(endpoint, timeout=_PROBE_EVERY).close()
    except OSError:
        return False
    return True


def _in_ray_task(ray: Any) -> bool:
    """Whether this code runs inside a Ray task or actor (a Ray worker process)."""
    try:
        return bool(ray.get_runtime_context().worker.mode == ray.WORKER_MODE)
    except Exception:
        return False


class RayBackend:
    """Runs each chunk as one Ray task (``max_retries=0``), at most ``max_workers`` at a time.

    Options:

    - ``max_workers``: tasks in flight at once. Default: a local Ray we start gets the CPU
      count; on an existing Ray, the cluster's CPUs divided by ``num_cpus`` per task.
    - ``address`` (default: the ``RAY_ADDRESS`` environment variable): join this cluster
      instead of starting one: ``"HOST:PORT"`` (the GCS port of
      ``ray start --head``, 6379 by default), ``"auto"`` (the cluster ``ray start`` ran on this
      machine) or ``"ray://HOST:10001"`` (Ray Client, needs ``ray[client]``). The spec string
      ``ray://HOST:PORT`` means ``address="HOST:PORT"``; write ``ray://ray://HOST:10001`` for
      Ray Client.
    - ``num_cpus``, ``num_gpus``, ``resources``: what each task reserves (Ray's defaults: one
      CPU, no GPU).
    - ``runtime_env``: Ray's runtime environment (``working_dir``, ``py_modules``, ``pip``,
      ``env_vars``) to ship code and dependencies to the workers.
    """

    requires = ("ray",)
    engine = "ray"
    install_hint = "pip install 'anyexec[ray]'"
    pickles = True
    # Measured on a local Ray (2 cores): ~1 ms per task when Ray pipelines many; ~2.8 ms per
    # task when a task is sent only after the previous one finished (the exact gate, used on a
    # Ray this executor did not start). Chunks then aim at ~0.2 s, so the overhead stays
    # around 1-2 %.
    task_overhead = 2e-3
    # Tasks run on the main thread of a Ray worker process, so task_timeout's alarm works.
    capabilities = frozenset({"recovers_from_worker_death", "isolated", "interrupts_tasks"})

    def __init__(self, *, max_workers: int | None = None, address: str | None = None,
                 num_cpus: float | None = None, num_gpus: float | None = None,
                 resources: dict[str, float] | None = None,
                 runtime_env: dict[str, Any] | None = None) -> None:
        worker_count(max_workers, origin=_ORIGIN)  # checked before Ray starts
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise ValueError(f"ray option address must be 'HOST:PORT', 'auto' or "
                             f"'ray://HOST:PORT', got {address!r}")
        check_amount("num_cpus", num_cpus, origin=_ORIGIN)
        check_amount("num_gpus", num_gpus, origin=_ORIGIN)
        check_amounts("resources", resources, origin=_ORIGIN)
        if runtime_env is not None and not isinstance(runtime_env, dict):
            raise TypeError(f"ray option runtime_env must be a dict, got "
                            f"{type(runtime_env).__name__}")

        if address is None:
            # Ray's own convention (set inside `ray job submit` jobs): join that cluster.
            address = os.environ.get("RAY_ADDRESS", "").strip() or None
            if address == "local":
                address = None
        if address is None and "ray" not in sys.modules:
            # A local Ray started for one laptop run has no reason to listen on the network: on
            # Linux Ray otherwise binds the machine's own IP. This setting (Ray's own, read at
            # import) keeps every Ray process on 127.0.0.1. A user who set it keeps their value.
            os.environ.setdefault(_LOCAL_ONLY, "0")

        import ray

        self._address = address.strip() if address else None
        cpus_per_task = 1.0 if num_cpus is None else float(num_cpus)
        self._owns_session, started = self._connect(ray, max_workers, cpus_per_task, resources,
                                                    runtime_env)
        # On a Ray we joined, the cluster's current size (CPUs per task) is read again as nodes
        # join and leave; a max_workers given is then a cap. A Ray we started keeps its size.
        local_ray = started and self._address is None
        self._cpus_per_task = cpus_per_task
        self._cap = max_workers
        self._live = not local_ray
        self._size_read = (0.0, 1)  # (monotonic time, workers) of the last reading
        self._fixed_workers = worker_count(max_workers, origin=_ORIGIN,
                                           default=None if local_ray else 1)
        # Calls handed to Ray at once (see the module docstring): twice max_workers only where
        # Ray itself keeps the bound: a local Ray we started, whose CPUs allow at most
        # max_workers of our tasks. Never with num_cpus=0 (Ray would run them all at once),
        # never on a Ray we joined (its CPUs may exceed max_workers, or grow).
        self._ahead = 1
        if local_ray and cpus_per_task > 0:
            ray_cpus = max(1, math.ceil(self._fixed_workers * cpus_per_task))  # as _connect did
            if math.floor(ray_cpus / cpus_per_task) <= self._fixed_workers:
                self._ahead = 2
        self._task_options: dict[str, Any] = {"max_retries": 0}
        if num_cpus is not None:
            self._task_options["num_cpus"] = num_cpus
        elif _in_ray_task(ray):
            # A task mapping on the Ray that runs it waits for the inner tasks while holding
            # its CPU; Ray frees it only while the task's main thread is in ray.get, and the
            # wait happens in anyexec's map. With every CPU held by such tasks, inner tasks
            # needing one never start. They take none: max_workers still bounds them.
            self._task_options["num_cpus"] = 0
        if num_gpus is not None:
            self._task_options["num_gpus"] = num_gpus
        if resources:
            self._task_options["resources"] = dict(resources)
        if runtime_env and not started:
            # Ray was initialised without our runtime_env: give it to every task instead.
            self._task_options["runtime_env"] = runtime_env
        self._remotes: dict[Callable[..., Any], Any] = {}
        # Calls waiting for a slot; cancelling one there costs nothing (it is skipped).
        self._queue = CallQueue()
        self._cond = self._queue.condition  # also guards _running
        # Calls handed to Ray (or being handed), with their ObjectRef once it exists.
        self._running: dict[Call, ObjectRef[Any] | None] = {}
        self._released = False
        self._releasing = threading.Lock()  # held while one caller shuts our Ray down
        self._gcs = _current_gcs_address()  # None on Ray Client: not watched
        self._lost = False
        self._stopped = threading.Event()  # set when this executor let go of Ray
        if self._live:
            self._refresh_size()
        self._dispatcher = threading.Thread(target=self._dispatch, name="anyexec-ray-dispatch",
                                            daemon=True)
        self._dispatcher.start()
        self._endpoint = _gcs_endpoint(self._gcs)
        if self._endpoint is not None:
            threading.Thread(target=self._watch, args=(self._endpoint,),
                             name="anyexec-ray-watch", daemon=True).start()

    # -- connecting ----------------------------------------------------------------------

    def _connect(self, ray: Any, max_workers: int | None, cpus_per_task: float,
                 resources: dict[str, float] | None,
                 runtime_env: dict[str, Any] | None) -> tuple[bool, bool]:
        """Join or start Ray. Returns (counted in ``_Session``, started by this call)."""
        with _Session.lock:
            if ray.is_initialized():
                current = _current_gcs_address()
                if current is not None and current == _Session.lost:
                    raise RayClusterLostError(
                        _lost_message(current) + " once this process has disconnected from "
                        "the lost one (under way: it takes a few seconds)")
                if self._address not in (None, "auto", current) and current is not None:
                    raise RuntimeError(
                        f"Ray is already connected to the cluster at {current} in this process, "
                        f"and a process can join only one Ray cluster; cannot join "
                        f"{self._address!r}. Omit 'address' to use the connected cluster, or "
                        "call ray.shutdown() first."
                    )
                if _Session.users and current == _Session.gcs_address:
                    _Session.users += 1
                    return True, False
                return False, False  # the user's Ray: use it, leave it alone
            kwargs: dict[str, Any] = {"logging_level": logging.WARNING}
            if runtime_env:
                kwargs["runtime_env"] = runtime_env
            if self._address is None:
                workers = worker_count(max_workers, origin=_ORIGIN)
                # Sized so that max_workers tasks run at once even beyond the physical cores
                # (I/O-bound work). No dashboard: nobody asked for a web server.
                # address="local": a new Ray, never a stray `ray start` cluster found on disk.
                kwargs.update(
                    address="local",
                    num_cpus=max(1, math.ceil(workers * cpus_per_task)),
                    include_dashboard=False,
                )
                if resources:
                    kwargs["resources"] = {k: v * workers for k, v in resources.items()}
            else:
                kwargs["address"] = self._address
            ray.init(**kwargs)
            _Session.gcs_address = _current_gcs_address()
            _Session.lost = None
            _Session.users = 1
            return True, True

    @property
    def max_workers(self) -> int:
        """Tasks running at once: fixed on a Ray we started, and the value given; otherwise,
        on a Ray we joined, its CPUs now (per task), so that nodes joining later get work."""
        if not self._live or self._cap:
            return self._fixed_workers
        return self._cluster_size()

    @property
    def _window(self) -> int:
        """Calls handed to Ray at once. On a Ray we joined, never more than its current size:
        a max_workers given is a cap, reached as the cluster grows."""
        if not self._live:
            return self._fixed_workers * self._ahead
        return min(self._cap, self._cluster_size()) if self._cap else self._cluster_size()

    def _cluster_size(self) -> int:
        # The last reading: asking Ray blocks while its GCS is away (up to a minute), so it
        # is never asked under a lock or on the caller's thread (see _refresh_size).
        return max(1, self._size_read[1])

    def _refresh_size(self) -> None:
        """Read the joined cluster's size again if the last reading is older than a second.

        Called by the dispatcher thread outside its lock (and once at start).
        """
        when, workers = self._size_read
        now = time.monotonic()
        if now - when <= _RESIZE_EVERY or self._lost:
            return
        import ray

        with contextlib.suppress(Exception):  # disconnected: keep the last reading
            workers = self._cluster_workers(ray, self._cpus_per_task)
        self._size_read = (time.monotonic(), workers)

    @staticmethod
    def _cluster_workers(ray: Any, cpus_per_task: float) -> int:
        cpus = float(ray.cluster_resources().get("CPU", 1))
        return max(1, int(cpus // cpus_per_task) if cpus_per_task > 0 else int(cpus))

    def _release_session(self) -> None:
        # A second caller (the exit hook after shutdown(wait=False)) waits until the first
        # has stopped Ray, so that Ray's own exit handler does not run beside that.
        with self._releasing:
            with self._cond:
                if self._released:
                    return
                self._released = True
            self._stopped.set()
            if self._owns_session:
                self._stop_ray()

    def _stop_ray(self) -> None:
        import ray

        with _Session.lock:
            if _Session.users == 0 or _current_gcs_address() != _Session.gcs_address:
                return  # someone else shut this Ray down already
            _Session.users -= 1
            if _Session.users == 0:
                _Session.gcs_address = None
                if self._lost:
                    return  # _lose() disconnects
                # A local Ray stops; a cluster's driver disconnects and the cluster keeps running.
                ray.shutdown()

    # -- running -------------------------------------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._cond:
            lost = self._lost or (self._gcs is not None and _Session.lost == self._gcs)
            if lost and not self._queue.closed:
                # (Another executor sharing the connection saw the loss and closed it.)
                call = Call(fn, args, kwargs)
                fail(call, self._cluster_lost())
                return call
            call = self._queue.put(fn, args, kwargs)  # RuntimeError once shut down
            # A free slot and nobody ahead: hand it over from here, without a thread switch.
            launch = len(self._queue) == 1 and len(self._running) < self._window
            if launch:
                self._queue.take()  # this call, the only one queued: marked running
                self._running[call] = None
            elif self._live:
                self._cond.notify_all()  # the dispatcher now looks at the size every second
        if launch:
            self._launch(call)
        return call

    def share(self, obj: Any) -> Any:
        """Put ``obj`` in Ray's object store once; tasks given the ref receive ``obj``."""
        import ray

        return ray.put(obj)

    def _remote(self, fn: Callable[..., Any]) -> Any:
        remote = self._remotes.get(fn)
        if remote is None:
            import ray

            remote = ray.remote(**self._task_options)(fn)
            self._remotes[fn] = remote
        return remote

    def _launch(self, call: Call) -> None:
        """Hand a call (taken from the queue, so running) to Ray; its slot is reserved."""
        if self._released:
            # terminate() shut our Ray down; a remote call now would start a new Ray.
            self._done(call)
            fail(call, RuntimeError("the executor was terminated"))
            return
        try:
            assert call.fn is not None  # released only once handed over
            ref = self._remote(call.fn).remote(*call.args, **call.kwargs)
        except BaseException as exc:
            self._done(call)
            fail(call, exc)
            return
        call.release()  # Ray holds the arguments now
        with self._cond:
            if call not in self._running:
                return  # the cluster was lost meanwhile: the call has failed
            self._running[call] = ref
        # Never as call.inner: cancelling that would settle our call with CancelledError.
        ref.future().add_done_callback(lambda ray_future: self._finished(call, ray_future))

    def _finished(self, call: Call, ray_future: Future[Any]) -> None:
        exc = ray_future.exception()
        if exc is not None and self._endpoint is not None and not self._lost \
                and not _answers(self._endpoint):
            # The node running it died and so did the GCS: the head node is gone (its
            # tasks fail at once; those on other nodes would wait in vain).
            self._lose()
            return
        if not self._done(call):
            return  # abandoned by terminate()
        if exc is not None:
            fail(call, exc)
        else:
            succeed(call, ray_future.result())

    def _done(self, call: Call) -> bool:
        """Free the call's slot; False if terminate() or a lost cluster already did."""
        with self._cond:
            if self._running.pop(call, False) is False:
                return False
            self._cond.notify_all()
            return True

    def _dispatch(self) -> None:
        """Move queued calls to Ray as slots free up (never from Ray's callback thread)."""
        while True:
            if self._live:
                self._refresh_size()  # outside the lock: it may block while the GCS is away
            call: Call | None = None
            with self._cond:
                if not self._lost and len(self._running) < self._window:
                    call = self._queue.take()  # skips cancelled calls
                    if call is not None:
                        self._running[call] = None
                if call is None:
                    if self._queue.closed and not self._queue:
                        self._cond.notify_all()
                        return
                    if not self._queue:
                        self._cond.notify_all()  # cancelled calls dropped: maybe idle now
                    # On a Ray we joined, look again every second, while calls are out, for
                    # nodes that joined (the core reads max_workers to size its window).
                    busy = self._running or self._queue
                    self._cond.wait(_RESIZE_EVERY if self._live and busy else None)
            if call is not None:
                self._launch(call)

    def _watch(self, endpoint: tuple[str, int]) -> None:
        """While calls are out, check every second that the GCS accepts connections."""
        down_since: float | None = None
        while not self._stopped.wait(_PROBE_EVERY):
            with self._cond:
                if not self._running and not self._queue:
                    down_since = None
                    continue
            if _answers(endpoint):
                down_since = None
                continue
            now = time.monotonic()
            if down_since is None:
                down_since = now
            elif now - down_since >= _GCS_GRACE:
                self._lose()
                return

    def _lose(self) -> None:
        """The GCS is gone: fail every call, and never wait for Ray again."""
        import ray

        with self._cond:
            self._lost = True
            running = list(self._running)
            self._running.clear()
            self._cond.notify_all()
        self._queue.fail_queued(self._cluster_lost())
        with _Session.lock:
            # Disconnect now if the connection is ours: Ray otherwise ends the whole process
            # gcs_rpc_server_reconnect_timeout_s (60 s by default) after losing the GCS. Not
            # here (this may be Ray's callback thread) and without waiting (ray.shutdown()
            # takes ~5 s after a loss); Ray's exit handler waits for it.
            disconnect = (self._owns_session and _Session.lost != self._gcs
                          and _Session.gcs_address == self._gcs)
            _Session.lost = self._gcs
        if disconnect:
            threading.Thread(target=ray.shutdown, name="anyexec-ray-disconnect",
                             daemon=True).start()
        for call in running:
            fail(call, self._cluster_lost())

    def _cluster_lost(self) -> RayClusterLostError:
        return RayClusterLostError(_lost_message(self._gcs or "its address"))

    # -- stopping ------------------------------------------------------------------------

    def terminate(self) -> None:
        """Drop every queued call and stop waiting for the ones Ray runs (used on Ctrl-C).

        A local Ray started by anyexec is shut down at once if this is the last executor using
        it, which stops its workers; tasks already on any other Ray run to their end, unobserved.
        """
        with self._cond:
            running = [call for call, ref in self._running.items() if ref is not None]
            for call in running:
                del self._running[call]
            self._cond.notify_all()
        self._queue.cancel_queued()
        for call in running:
            fail(call, RuntimeError("abandoned: the executor was terminated"))
        if self._owns_session and self._address is None:
            self._release_session()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        already = self._queue.closed
        self._queue.close(cancel_queued=cancel_futures)
        if already and not wait:
            return
        if wait:
            self._wait_idle()
            self._release_session()
        else:
            # Running tasks finish (as with the stdlib's pools); Ray is released after them.
            threading.Thread(target=self._drain_then_release, name="anyexec-ray-release",
                             daemon=True).start()

    def _wait_idle(self) -> None:
        with self._cond:
            while self._running or self._queue:
                self._cond.wait()
            if self._lost:
                return  # the dispatcher may be blocked in Ray until Ray ends the process
        self._dispatcher.join()

    def _drain_then_release(self) -> None:
        self._wait_idle()
        self._release_session()
