"""``processes``: a ``concurrent.futures.ProcessPoolExecutor`` started once per executor.

The pool is reused by every ``map`` and ``submit`` on the executor. When a worker dies
(``os._exit``, a segfault, SIGKILL, the out-of-memory killer) the stdlib marks the whole pool
broken and fails every pending future alike. This backend knows better: each task reports which
worker started it, so only the tasks whose worker is gone fail; the others are resubmitted to a
fresh pool, and the executor keeps working.

Data flow::

    submit() --> local queue -(2 x max_workers + 1)-> ProcessPoolExecutor --> workers
                     ^                                             |
                     |  innocent victims of a crash                | done-callback: settles a
                     +---------------- settler thread <------------+ result; hands a broken
                                                                     pool's calls over

Two rules keep the stdlib pool's broken-pool path safe on every Python from 3.10 to 3.13:

- Its futures are never cancelled from outside. On 3.11, ``terminate_broken`` sets an exception
  on each pending future without checking; one we had cancelled raised ``InvalidStateError`` in
  the pool's manager thread, which then died before stopping the other workers, and the
  interpreter hung at exit joining them. Calls wait in our own queue, where cancelling is free,
  and only as many as keep the workers busy are handed to the pool.
- Its done-callbacks for a broken pool only put the finished future on a queue. On 3.12 and
  3.13 ``terminate_broken`` runs the callbacks while holding the pool's shutdown lock, so a
  callback that resubmitted into that pool (or settled a future whose own callbacks did)
  deadlocked. A settler thread, one per backend, does that work outside every pool lock. A
  call that simply finished is settled in the callback itself, where no pool lock is held (a
  hop through the settler cost ~15 % on 200,000 trivial calls).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import multiprocessing
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from anyexec._errors import WorkerCrashedError
from anyexec._futures import fail, settle_from
from anyexec._record import TYPE_CHECKING
from anyexec.backends._calls import Call, CallQueue
from anyexec.backends._checks import check_choice, check_int, worker_count
from anyexec.backends._crash import crash_error
from anyexec.backends._pids import alive, kill

if TYPE_CHECKING:
    # Only for annotations: importing typing at run time would slow the first result.
    from typing import Any, Literal

__all__ = ["ProcessesBackend", "WorkersFailedToStartError"]

log = logging.getLogger("anyexec")

# In each worker: the queue on which it reports (pid, token) when it starts a task.
_reports: Any = None


_STARTED_WORKER = -1  # the token a worker reports once, when it starts
_SETTLER_IDLE_SECONDS = 2.0


class WorkersFailedToStartError(WorkerCrashedError):
    """Every worker of a new pool died before it could run a task (usually: a script without
    the ``if __name__ == "__main__":`` guard under the spawn or forkserver start method)."""

    item_specific = False


def _init_worker(reports: Any) -> None:
    """Worker initializer: keep the report queue, say we exist, leave Ctrl-C to the parent."""
    global _reports
    _reports = reports
    reports.put((os.getpid(), _STARTED_WORKER))
    # A Ctrl-C at the terminal reaches the whole process group; the parent decides what to
    # cancel and stops the workers itself, so workers must not die half-way on their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _tracked(token: int, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    _reports.put((os.getpid(), token))
    return fn(*args, **kwargs)


class ProcessesBackend:
    """A process pool of ``max_workers`` processes (default: the CPU count).

    Options: ``start_method`` (``fork``, ``spawn`` or ``forkserver``; default: the platform's),
    ``max_tasks_per_child`` (replace a worker after that many tasks, to contain leaks).
    """

    aliases = ("process", "multiprocessing", "processpool")
    pickles = True
    task_overhead = 2e-4

    def __init__(self, *, max_workers: int | None = None,
                 start_method: Literal["fork", "spawn", "forkserver"] | None = None,
                 max_tasks_per_child: int | None = None) -> None:
        origin = "the processes backend"
        self.max_workers = worker_count(max_workers, origin=origin)
        if start_method is not None:
            check_choice("start_method", start_method, ("fork", "spawn", "forkserver"),
                         origin=origin)
        check_int("max_tasks_per_child", max_tasks_per_child, minimum=1, optional=True,
                  origin=origin)
        capabilities = {"recovers_from_worker_death", "isolated", "interrupts_tasks"}
        if max_tasks_per_child is None:  # otherwise workers are replaced on purpose
            capabilities.add("reuses_workers")
        self.capabilities = frozenset(capabilities)
        self._context = multiprocessing.get_context(start_method)
        self._max_tasks_per_child = max_tasks_per_child
        # Enough calls in the pool that a worker that finishes finds its next one waiting; the
        # rest wait here, where cancelling them is free. As many as the stdlib pool itself can
        # no longer cancel (max_workers running, max_workers + 1 in its call queue). Measured
        # with python -m benchmarks.tiny_side_by_side (medians of 15 pairs, noisy machine):
        # 2 x max_workers 1.50-1.62x Pool.map, this 1.30-1.44x, 4 x max_workers 1.19-1.40x
        # but then a closed map's whole window has already been handed over.
        self._limit = 2 * self.max_workers + 1
        self._queue = CallQueue()
        # The queue's (reentrant) lock guards the pool state too.
        self._cond = self._queue.condition
        # Calls that already ran once and lost their pool to another call's crash: first.
        self._again: collections.deque[Call] = collections.deque()
        self._in_pool = 0
        self._pool: _Pool | None = None
        self._tokens = 0
        # Set by terminate(): crashed calls are then failed, never resubmitted.
        self._stopped = False
        self._release_when_idle = False
        self._finished: queue.SimpleQueue[tuple[Call, Future[Any], _Pool] | None] = \
            queue.SimpleQueue()
        self._settler: threading.Thread | None = None

    # -- caller side ----------------------------------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._cond:
            call = self._queue.put(fn, args, kwargs)
            if self._stopped and not self._in_pool:
                self._stopped = False  # after a Ctrl-C the caller may go on: start afresh
            self._ensure_settler()
            self._pump()
        return call

    def terminate(self) -> None:
        """Kill this pool's workers now (by the PIDs they reported); queued calls never run."""
        with self._cond:
            self._stopped = True
            pool, self._pool = self._pool, None
        self._queue.cancel_queued()
        if pool is not None:
            pool.kill_workers()
            pool.close(wait=True)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking calls; with ``wait``, return once every call not cancelled has finished.

        Callable again: a ``shutdown(wait=True)`` after ``shutdown(wait=False)`` waits for the
        calls still running (the executor's exit hook relies on that).
        """
        self._queue.close(cancel_queued=cancel_futures)
        if not wait or threading.current_thread() is self._settler:
            with self._cond:
                self._release_when_idle = True
                self._release_if_idle()
            return
        with self._cond:
            while self._queue or self._again or self._in_pool:
                self._cond.wait()
            pool, self._pool = self._pool, None
            settler, self._settler = self._settler, None
        if pool is not None:
            pool.close(wait=True)
        if settler is not None:
            self._finished.put(None)
            settler.join()

    # -- dispatch (any thread, lock held) ---------------------------------------------------

    def _pump(self) -> None:
        """Hand queued calls to the pool while it has room. Never called from its callbacks."""
        while self._in_pool < self._limit:
            # From here on the call is the pool's: it can no longer be cancelled.
            call = self._again.popleft() if self._again else self._queue.take()
            if call is None:
                return
            self._send(call)

    def _send(self, call: Call) -> None:
        if self._pool is None:
            self._pool = self._new_pool()
        self._tokens += 1
        call.tag = self._tokens
        fn, args, kwargs = call.fn, call.args, call.kwargs
        assert fn is not None  # released only once settled
        try:
            inner = self._pool.executor.submit(_tracked, call.tag, fn, args, kwargs)
        except BrokenProcessPool as exc:
            log.debug("anyexec: replacing a broken process pool (%s)", exc)
            self._pool.close(wait=False)
            self._pool = self._new_pool()
            inner = self._pool.executor.submit(_tracked, call.tag, fn, args, kwargs)
        self._in_pool += 1
        pool, finished = self._pool, self._finished

        def hand_over(done: Future[Any]) -> None:
            # Runs in the pool's manager thread.
            if isinstance(done.exception(), BrokenProcessPool):
                # Under the pool's lock (3.12+): never call the pool, only hand over. Note
                # the dead now, before the pool terminates the surviving workers: afterwards
                # every worker is dead and the culprit could not be told from its neighbours.
                pool.note_break()
                finished.put((call, done, pool))
            else:
                # The usual case, outside every pool lock: settle here, without a hop through
                # the settler thread.
                self._complete(call, done, pool)

        inner.add_done_callback(hand_over)

    def _new_pool(self) -> _Pool:
        extra: dict[str, Any] = {}
        if self._max_tasks_per_child is not None:
            extra["max_tasks_per_child"] = self._max_tasks_per_child
        reports = self._context.SimpleQueue()
        executor = ProcessPoolExecutor(self.max_workers, mp_context=self._context,
                                       initializer=_init_worker, initargs=(reports,), **extra)
        return _Pool(executor, reports)

    def _ensure_settler(self) -> None:
        if self._settler is None:
            # A daemon: the executor's exit hook waits for the work itself, and a settler
            # must never keep a crashed script alive.
            self._settler = threading.Thread(target=self._settle_forever, daemon=True,
                                             name="anyexec-processes-settler")
            self._settler.start()

    def _release_if_idle(self) -> None:
        """After shutdown(wait=False): close the pool once the last call has finished."""
        if self._release_when_idle and not (self._queue or self._again or self._in_pool):
            pool, self._pool = self._pool, None
            if pool is not None:
                pool.close(wait=False)

    # -- settler thread -------------------------------------------------------------------

    def _settle_forever(self) -> None:
        while True:
            try:
                item = self._finished.get(timeout=_SETTLER_IDLE_SECONDS)
            except queue.Empty:
                with self._cond:
                    # Idle: end, so that an executor dropped without shutdown() can be
                    # collected; the next submit starts a new settler.
                    if not (self._in_pool or self._queue or self._again):
                        if self._settler is threading.current_thread():
                            self._settler = None
                        return
                continue
            if item is None:
                return
            self._complete(*item)
            # Hold nothing while idle: the last call's future leads to its executor, which
            # must be collectable once the program drops it.
            del item

    def _complete(self, call: Call, inner: Future[Any], pool: _Pool) -> None:
        """Settle one finished call, then hand the pool its next one."""
        # Every task writes one report when it starts: read them as tasks finish, or the
        # pipe fills after a few thousand tasks and the workers block writing to it.
        pool.drain()
        try:
            self._settle(call, inner, pool)
        except Exception:  # a bug here must not stop every later call from settling
            log.exception("anyexec: settling a processes task failed")
        finally:
            pool.forget(call.tag)
            with self._cond:
                self._in_pool -= 1
                if not self._stopped:
                    self._pump()
                self._release_if_idle()
                self._cond.notify_all()

    def _settle(self, call: Call, inner: Future[Any], pool: _Pool) -> None:
        exc = inner.exception()
        if isinstance(exc, BrokenProcessPool):
            pid = pool.worker_of(call.tag)
            if not pool.any_worker_started():
                exc = WorkersFailedToStartError(_failed_to_start(self._context))
            elif not self._stopped and not pool.died_in_break(pid):
                # An innocent victim of another task's crash: run it again on a fresh pool.
                log.debug("anyexec: resubmitting task %d after a worker crash", call.tag)
                with self._cond:
                    self._again.append(call)
                return
            else:
                exc = crash_error(pid=pid)
        if exc is not None:
            fail(call, exc)
        else:
            settle_from(call, inner)
        call.release()


def _failed_to_start(context: Any) -> str:
    method = context.get_start_method()
    text = (f"the worker processes died while starting (start method {method!r}), before "
            "running any task.")
    if method in ("spawn", "forkserver"):
        text += (" With 'spawn' and 'forkserver' each worker imports your script's main "
                 "module: code that starts an executor or a map at import time must sit "
                 "under `if __name__ == \"__main__\":`. Otherwise the main module failed to "
                 "import in the worker (its traceback is printed above).")
    else:
        text += " The worker's own error, if any, is printed above."
    return text


def _unblock_feeder(executor: ProcessPoolExecutor) -> None:
    """Python 3.10 only: what 3.11's ``terminate_broken`` does (CPython gh-94777).

    When a worker dies while the pool's feeder thread is writing a large call to the workers'
    pipe, nobody reads that pipe again: the feeder blocks forever, the pool's manager thread
    blocks joining it, and the interpreter hangs at exit (measured: a crash with 1 MB arguments
    hung 1 run in 5 on 3.10.13). Closing the parent's read end makes the write fail once the
    pool has terminated the surviving workers, as 3.11 and later do themselves. Called from the
    pool's own manager thread, before it joins the feeder. There is no public way to do this.
    """
    reader = getattr(getattr(executor, "_call_queue", None), "_reader", None)
    if reader is not None:
        with contextlib.suppress(OSError):
            reader.close()


class _Pool:
    """One ProcessPoolExecutor with the queue on which its workers report what they start."""

    def __init__(self, executor: ProcessPoolExecutor, reports: Any) -> None:
        self.executor = executor
        self._reports = reports
        self._lock = threading.Lock()
        self._started: dict[int, int] = {}  # token -> pid of the worker that started it
        self._pids: set[int] = set()  # the workers, as they reported themselves
        self._dead_at_break: set[int] | None = None
        self._closed = False

    def drain(self) -> None:
        with self._lock:
            while not self._closed and not self._reports.empty():
                pid, token = self._reports.get()
                if token == _STARTED_WORKER:
                    self._pids.add(pid)
                else:
                    self._started[token] = pid

    def worker_of(self, token: int) -> int | None:
        self.drain()
        return self._started.get(token)

    def note_break(self) -> None:
        """Record which workers are dead at the moment the pool reports itself broken."""
        if sys.version_info < (3, 11):
            _unblock_feeder(self.executor)
        self.drain()
        with self._lock:
            if self._dead_at_break is None:
                self._dead_at_break = {pid for pid in self._pids | set(self._started.values())
                                       if not alive(pid)}

    def died_in_break(self, pid: int | None) -> bool:
        """Whether worker ``pid`` was already dead when the pool broke (the culprit's)."""
        if pid is None:
            return False  # never started: an innocent victim
        with self._lock:
            dead = self._dead_at_break
        return not alive(pid) if dead is None else pid in dead

    def any_worker_started(self) -> bool:
        self.drain()
        return bool(self._pids)

    def forget(self, token: int) -> None:
        """The task settled: drop its report, so the table lasts as long as its tasks."""
        with self._lock:
            self._started.pop(token, None)

    def kill_workers(self) -> None:
        self.drain()
        kill(self._pids)

    def close(self, *, wait: bool) -> None:
        # Our calls are never cancelled inside the pool (see the module's docstring).
        self.executor.shutdown(wait=wait, cancel_futures=False)
        # Read what the workers reported before closing the pipe: the settler may still ask
        # which worker ran a crashed task. Without wait, tasks of a broken pool may still be
        # settling: the pipe then closes when the last of them lets go of this object.
        self.drain()
        if wait:
            with self._lock:
                self._closed = True
                self._reports.close()
