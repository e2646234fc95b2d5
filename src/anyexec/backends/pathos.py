"""``pathos``: tasks run on a pathos pool (dill serialization), owned by the executor.

pathos keeps its pools in a module-level registry keyed by ``id`` (by default the node count),
so two ``ProcessPool(2)`` share one pool and ``clear()`` on either closes it for both. This
backend gives its pool a unique ``id``: it owns that pool alone, and ``clear()`` on shutdown
touches nothing another pathos user holds.

Submission: slot threads take calls from a queue and hand each to the pool with ``apipe``; a
slot waits on its call's result with a short timeout, and in between checks the pool's health.
There are two slots per worker: one call running and one waiting in the pool's own queue, so a
worker that finishes starts its next call at once instead of after a round trip through the
pool's result thread, a slot and the pool's task thread (2-5 ms a call, 0.575 s instead of
0.517 s for 100 x 50 ms on 10 workers). A call waiting in the backend's queue stays
cancellable; one handed to the pool (at most ``max_workers`` ahead of the running ones, as
joblib's ``pre_dispatch`` does) no longer is. The pool has ``max_workers`` processes, so at
most that many calls run at once.

Worker death: a multiprocessing-style pool replaces a worker that died but never reports the
call it was running, which would wait forever. Each process worker reports its PID when it
starts (pool initializer) and the token of each call it starts; a slot whose worker vanished
fails its call with :class:`WorkerLostError`, the pool is replaced, and calls that were running
on workers that did not die are run again on the new pool.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal

from anyexec._errors import WorkerCrashedError
from anyexec.backends.support import (
    Call,
    CallQueue,
    WorkerMarks,
    alive,
    check_choice,
    crash_error,
    fail,
    kill,
    pack_outcome,
    succeed,
    unpack_outcome,
    worker_count,
)

__all__ = ["PathosBackend", "WorkerLostError"]

log = logging.getLogger("anyexec")

PoolKind = Literal["process", "thread", "parallel"]

#: How often a slot waiting for a result checks that the worker running it is alive.
_POLL_SECONDS = 0.05
_STARTED = -1  # the token a worker reports once, from the pool initializer
#: Calls each worker may have waiting in the pool's queue, beyond the one it runs.
_AHEAD = 1
#: How long terminate() waits for the pool to stop its workers before killing the rest.
_RETIRE_SECONDS = 3.0

# In each process worker: the queue on which it reports (pid, token).
_reports: Any = None


#: Every live backend, for the exit hook.
_live: weakref.WeakSet[PathosBackend] = weakref.WeakSet()
_exit_hook_registered = False


def _finish_at_exit() -> None:
    """Run every call already submitted before the interpreter exits (stdlib pools do too).

    Registered with ``threading._register_atexit``, the hook ``concurrent.futures`` uses: it
    runs when the main thread ends, while our daemon slot threads still run.
    """
    for backend in list(_live):
        backend.shutdown(wait=True)


def _register_exit_hook() -> None:
    global _exit_hook_registered
    register = getattr(threading, "_register_atexit", None)
    if _exit_hook_registered or register is None:
        return
    _exit_hook_registered = True
    with contextlib.suppress(RuntimeError):  # the interpreter is exiting already
        register(_finish_at_exit)


def _refuse_in_daemon() -> None:
    """Refuse a process pool where one cannot start: in a daemonic process (a pool's worker).

    multiprocess would fail later, in a slot thread, with a bare AssertionError that anyexec
    could only report as a crashed worker.
    """
    import multiprocess

    if multiprocess.current_process().daemon:
        raise RuntimeError(
            "cannot start a pathos process pool here: this code runs in a daemonic worker "
            "process (a task of a pathos or multiprocessing pool), and daemonic processes are "
            "not allowed to have children. Inside a task, use get_executor() without a name "
            "(it picks 'serial' there), 'serial' or 'threads'; or run the outer map on a "
            "backend whose workers may start processes ('processes', 'joblib', 'loky')."
        )


class WorkerLostError(WorkerCrashedError):
    """The pathos worker process running a call died before returning its result."""


# -- what runs on the workers --------------------------------------------------------------

def _init_worker(reports: Any) -> None:
    """Process pool initializer: keep the report queue, say we exist, leave Ctrl-C to us."""
    global _reports
    _reports = reports
    reports.put((os.getpid(), _STARTED))
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _dill_dumps(obj: Any) -> bytes:
    import dill  # type: ignore[import-untyped, unused-ignore]

    return bytes(dill.dumps(obj, protocol=-1))


def _outcome(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """Run the call; return its outcome pickled by us (dill where pickle fails), so that the
    pool only ever sees bytes."""
    return pack_outcome(fn, args, kwargs, fallback=_dill_dumps)


def _tracked(token: int, fn: Callable[..., Any], args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> bytes:
    """Process pool task: report which worker starts the call, then run it."""
    if _reports is not None:
        _reports.put((os.getpid(), token))
    outcome = _outcome(fn, args, kwargs)
    if _reports is not None:
        # The call returned: if this worker dies before the pool delivers the outcome (it
        # died running the next call), this call was a bystander, not the culprit.
        _reports.put((os.getpid(), _finished(token)))
    return outcome


def _finished(token: int) -> int:
    """The report of a call that returned: below ``_STARTED``, so never a call token."""
    return _STARTED - 1 - token


def _pp_task(call: bytes, marks: str, token: int) -> bytes:
    """ParallelPool task. pp ships a function by its source, and treats function arguments as
    dependencies to ship by source too, so the call arrives as one dill blob instead. pp has
    no worker initializer: a mark in ``marks`` says which worker runs the call."""
    import dill  # type: ignore[import-untyped, unused-ignore]

    from anyexec.backends.pathos import _outcome
    from anyexec.backends.support import running

    with running(marks, token):
        fn, args, kwargs = dill.loads(call)
        return _outcome(fn, args, kwargs)


# -- the pool and its health ---------------------------------------------------------------

@dataclass(eq=False)
class _Generation:
    """One pathos pool and what its workers reported; replaced when a worker dies."""

    pool: Any
    reports: Any = None  # multiprocess queue (process pools only)
    pids: set[int] = field(default_factory=set)
    started: dict[int, int] = field(default_factory=dict)  # call token -> worker pid
    broken: bool = False
    dead: set[int] = field(default_factory=set)  # pids found dead when it broke
    inflight: set[int] = field(default_factory=set)  # tokens of calls not yet returned
    # Tokens of calls whose function returned in the worker, while the pool had not yet
    # delivered their outcome: never the culprit of a crash. Pruned with ``inflight``.
    returned: set[int] = field(default_factory=set)

    def drain(self) -> None:
        while self.reports is not None and not self.reports.empty():
            pid, token = self.reports.get()
            self.pids.add(pid)
            # Only calls still running matter; a report read after its call returned would
            # otherwise stay in ``started`` for the life of the pool.
            if token < _STARTED:
                if _finished(token) in self.inflight:  # the encoding is its own inverse
                    self.returned.add(_finished(token))
            elif token != _STARTED and token in self.inflight:
                self.started[token] = pid


class _Kind:
    """What differs between pathos' pool kinds: how a pool starts, runs a call, shows death."""

    #: Calls cross a process boundary (pickled), per the core's ``pickles`` attribute.
    pickles = True
    task_overhead = 3e-4
    capabilities: frozenset[str] = frozenset()

    def new_generation(self, nodes: int, pool_id: str) -> _Generation:
        raise NotImplementedError

    def send(self, gen: _Generation, token: int, job: Call) -> Any:
        """Hand the call to the pool; return pathos' async result."""
        raise NotImplementedError

    def get(self, result: Any) -> Any:
        """The call's outcome, waiting at most ``_POLL_SECONDS``; ``PoolTimeout`` if not yet."""
        return result.get(_POLL_SECONDS)

    def decode(self, data: Any) -> tuple[bool, Any]:
        ok, value, _pid = unpack_outcome(data)
        return ok, value

    def dead_workers(self, gen: _Generation, token: int) -> set[int] | None:
        """The pool's workers found dead (lock held); None if this kind cannot tell."""
        return None

    def close(self) -> None:
        """The backend is done with this kind for good."""


class _ProcessKind(_Kind):
    """``ProcessPool`` (multiprocess): workers report their PID and each call they start."""

    capabilities = frozenset({"isolated", "recovers_from_worker_death", "interrupts_tasks",
                              "reuses_workers"})  # calls run in the workers' main thread

    def __init__(self) -> None:
        _refuse_in_daemon()

    def new_generation(self, nodes: int, pool_id: str) -> _Generation:
        import multiprocess
        from pathos.pools import ProcessPool

        reports = multiprocess.get_context().SimpleQueue()
        return _Generation(ProcessPool(nodes=nodes, id=pool_id, initializer=_init_worker,
                                       initargs=(reports,)), reports)

    def send(self, gen: _Generation, token: int, job: Call) -> Any:
        return gen.pool.apipe(_tracked, token, job.fn, job.args, job.kwargs)

    def dead_workers(self, gen: _Generation, token: int) -> set[int] | None:
        gen.drain()
        return {pid for pid in gen.pids if not alive(pid)}


class _ThreadKind(_Kind):
    """``ThreadPool``: calls run in threads of this process; nothing pickled, no deaths."""

    pickles = False  # threads share the caller's memory: nothing to pickle, nothing isolated
    task_overhead = 1e-4

    def new_generation(self, nodes: int, pool_id: str) -> _Generation:
        from pathos.pools import ThreadPool

        return _Generation(ThreadPool(nodes=nodes, id=pool_id))

    def send(self, gen: _Generation, token: int, job: Call) -> Any:
        return gen.pool.apipe(_run_local, job.fn, job.args, job.kwargs)

    def decode(self, data: Any) -> tuple[bool, Any]:
        return data  # type: ignore[no-any-return]


class _ParallelKind(_Kind):
    """``ParallelPool`` (pp): no worker initializer, so a marker file names each call's worker."""

    capabilities = frozenset({"isolated", "recovers_from_worker_death", "interrupts_tasks"})
    task_overhead = 2e-3

    def __init__(self) -> None:
        self.marks = WorkerMarks("pathos")

    def new_generation(self, nodes: int, pool_id: str) -> _Generation:
        from pathos.pools import ParallelPool

        return _Generation(ParallelPool(nodes=nodes, id=pool_id))

    def send(self, gen: _Generation, token: int, job: Call) -> Any:
        import dill  # type: ignore[import-untyped, unused-ignore]

        call = dill.dumps((job.fn, job.args, job.kwargs))
        return gen.pool.apipe(_pp_task, call, self.marks.path, token)

    def get(self, result: Any) -> Any:
        from multiprocess import TimeoutError as PoolTimeout

        # pp's get(timeout) ignores its timeout and blocks: poll ready(), backing off.
        pause, waited = 0.0005, 0.0
        while not result.ready() and waited < _POLL_SECONDS:
            time.sleep(pause)
            waited += pause
            pause = min(2 * pause, 0.004)
        if not result.ready():
            raise PoolTimeout
        return result.get()

    def dead_workers(self, gen: _Generation, token: int) -> set[int] | None:
        pid = self.marks.pid_of(token)
        if pid is None:
            return set()
        gen.started[token] = pid
        return set() if alive(pid) else {pid}

    def close(self) -> None:
        self.marks.remove()


_KIND_CLASSES: dict[str, type[_Kind]] = {
    "process": _ProcessKind, "thread": _ThreadKind, "parallel": _ParallelKind}


class PathosBackend:
    """Runs calls on a pathos pool owned by the executor.

    Options: ``pool`` (``process``: ``pathos.pools.ProcessPool``, processes with dill, the
    default; ``thread``: ``ThreadPool``; ``parallel``: ``ParallelPool``, Parallel Python's
    local servers, which ship functions by source) and ``max_workers`` (default: CPU count).
    """

    requires = ("pathos",)
    engine = "pathos"
    install_hint = "pip install 'anyexec[pathos]'"

    def __init__(self, *, max_workers: int | None = None, pool: PoolKind = "process") -> None:
        check_choice("pool", pool, PoolKind, origin="the pathos backend")
        self.max_workers = worker_count(max_workers, origin="the pathos backend")
        self._kind = _KIND_CLASSES[pool]()
        self.pool = pool
        self.pickles = self._kind.pickles
        self.task_overhead = self._kind.task_overhead
        self.capabilities = self._kind.capabilities
        self._id = f"anyexec-{uuid.uuid4().hex}"
        # A process pool forks its workers: they inherit this object and the exit hooks, and
        # a copy must never touch the pool, which belongs to the process that created it.
        self._owner = os.getpid()
        self._queue = CallQueue()
        # The queue's (reentrant) lock guards the pool state too.
        self._lock = self._work = self._queue.condition
        self._stopping = False
        self._generation: _Generation | None = None
        self._tokens = itertools.count()
        self._generations = itertools.count()
        self._slots: list[threading.Thread] = []
        _live.add(self)
        _register_exit_hook()

    # -- pool management --

    def _new_generation(self) -> _Generation:
        # A fresh id per pool: pathos would hand back the broken pool under the old one.
        pool_id = f"{self._id}-{next(self._generations)}"
        return self._kind.new_generation(self.max_workers, pool_id)

    def _current(self) -> _Generation:
        """The live pool, created on first use (lock held)."""
        if self._generation is None:
            self._generation = self._new_generation()
        return self._generation

    def _check_health(self, gen: _Generation, token: int) -> None:
        """Mark ``gen`` broken and replace it if one of its workers died (lock held)."""
        if gen.broken:
            return
        dead = self._kind.dead_workers(gen, token)
        if not dead:
            return
        gen.broken, gen.dead = True, dead
        log.debug("anyexec: pathos worker(s) %s died; replacing the pool", sorted(dead))
        if self._generation is gen:
            self._generation = None
        # Terminate off the lock's critical path: the old pool's handler threads may take a
        # moment, and its calls on live workers are run again on the next pool.
        threading.Thread(target=_retire, args=(gen,), daemon=True).start()

    # -- slots --

    def _start_slots(self) -> None:
        while len(self._slots) < self.max_workers * (1 + _AHEAD):
            slot = threading.Thread(target=self._slot, name=f"anyexec-pathos-{len(self._slots)}",
                                    daemon=True)
            self._slots.append(slot)
            slot.start()

    def _take(self) -> Call | None:
        # Marked running: from here the call belongs to a worker and can no longer be cancelled.
        return None if self._stopping else self._queue.take(wait=True)

    def _slot(self) -> None:
        while (job := self._take()) is not None:
            try:
                ok, value = self._run(job)
            except BaseException as exc:  # the pool itself failed: report it with the call
                ok, value = False, exc
            if ok:
                succeed(job, value)
            else:
                fail(job, value)
            # Hold nothing while waiting for the next call: the finished call's function (a
            # model bound to it) and its result must be collectable.
            job.release()
            del job, value

    def _run(self, job: Call) -> tuple[bool, Any]:
        """Run one call on the pool until it returns or its worker is known dead."""
        while True:
            with self._lock:
                if self._stopping:
                    return False, RuntimeError("the executor was terminated before this call ran")
                gen = self._current()
                token = next(self._tokens)
                gen.inflight.add(token)
            try:
                outcome = self._attempt(job, gen, token)
            finally:
                with self._lock:
                    # Read the reports as calls return, not only when a poll times out: the
                    # pipe fills after about 1,600 calls and then stalls the workers.
                    gen.drain()
                    gen.inflight.discard(token)
                    gen.started.pop(token, None)
                    gen.returned.discard(token)
            if outcome is not None:
                return outcome
            log.debug("anyexec: running call %d again after a pathos worker crash", token)

    def _attempt(self, job: Call, gen: _Generation, token: int) -> tuple[bool, Any] | None:
        """One try on ``gen``: the outcome, or None if the pool broke under an innocent call."""
        from multiprocess import TimeoutError as PoolTimeout

        result = self._kind.send(gen, token, job)
        while True:
            try:
                data = self._kind.get(result)
            except (TimeoutError, PoolTimeout):
                pass
            else:
                return self._kind.decode(data)
            with self._lock:
                self._check_health(gen, token)
                if not gen.broken:
                    if self._stopping:
                        stopped = WorkerLostError("the executor was terminated")
                        stopped.item_specific = False  # no item caused it
                        return False, stopped
                    continue
                gen.drain()
                pid = gen.started.get(token)
                returned = token in gen.returned
            if pid is not None and pid in gen.dead and not returned:
                return False, crash_error(pid=pid, cls=WorkerLostError)
            return None  # an innocent call on the old pool: run it again on the new one

    # -- the backend interface --

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._work:
            call = self._queue.put(fn, args, kwargs)
            self._start_slots()
        return call

    def terminate(self) -> None:
        """Stop now: cancel queued calls, kill the workers running calls, drop the pool."""
        if os.getpid() != self._owner:
            return
        with self._work:
            self._stopping = True
            gen, self._generation = self._generation, None
            self._work.notify_all()
            if gen is not None:
                gen.drain()
                # Only workers running a call: an idle one may hold the pool's queue lock, and
                # killing it would hang the pool's own terminate().
                busy = {gen.started[t] for t in gen.inflight if t in gen.started}
        # Outside the lock: cancelling runs the core's callbacks.
        self._queue.close(cancel_queued=True)
        if gen is None:
            return
        kill(busy)
        retire = threading.Thread(target=_retire, args=(gen,), daemon=True)
        retire.start()
        # The program usually exits right after a Ctrl-C. Give the pool a moment to stop its
        # other workers (and any it started to replace the killed ones) before that; if its
        # terminate() is stuck, kill what is left by the PIDs the workers reported.
        retire.join(_RETIRE_SECONDS)
        if retire.is_alive():
            with self._lock:
                gen.drain()
                left = {pid for pid in gen.pids if alive(pid)}
            kill(left)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking calls; with ``wait``, return once every call submitted has finished.

        Callable again after ``shutdown(wait=False)``, to wait for the calls still running.
        """
        if os.getpid() != self._owner:
            return  # a forked worker's copy: the pool is not ours to close
        self._queue.close(cancel_queued=cancel_futures)
        if not wait:
            threading.Thread(target=self._finish, daemon=True).start()
            return
        self._finish()

    def _finish(self) -> None:
        for slot in self._slots:
            if slot is not threading.current_thread():
                slot.join()
        with self._lock:
            gen, self._generation = self._generation, None
            if gen is not None:
                gen.drain()
                healthy = all(alive(pid) for pid in gen.pids)
        if gen is not None and healthy:
            _release(gen)
        elif gen is not None:
            # A dead worker may hold the pool's queue lock: close()/join() could wait forever.
            threading.Thread(target=_retire, args=(gen,), daemon=True).start()
        self._kind.close()


def _run_local(fn: Callable[..., Any], args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> tuple[bool, Any]:
    try:
        return True, fn(*args, **kwargs)
    except BaseException as exc:  # delivered through the future
        return False, exc


def _release(gen: _Generation) -> None:
    """Close and join our own pool and drop it from pathos' registry (``clear``)."""
    _close_pool(gen, "releasing", gen.pool.close)


def _retire(gen: _Generation) -> None:
    """Stop a broken or abandoned pool at once and drop it from pathos' registry."""
    _close_pool(gen, "retiring", gen.pool.terminate)


def _close_pool(gen: _Generation, doing: str, stop: Callable[[], Any]) -> None:
    try:
        stop()
        gen.pool.join()
        gen.pool.clear()
    except Exception as exc:
        log.debug("anyexec: %s a pathos pool failed (%r)", doing, exc)
