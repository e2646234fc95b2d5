"""``joblib``: tasks run on joblib's own machinery (``Parallel``/``delayed``), one pool reused.

joblib only offers a batch API: ``Parallel(...)(iterable_of_delayed_calls)``. To give the core
a ``submit`` that returns a ``concurrent.futures.Future``, one dispatcher thread per executor
keeps a long-lived ``Parallel`` (entered as a context manager, so its pool lives as long as the
executor) and runs *rounds*: each round is one ``parallel(feed)`` call with
``return_as="generator_unordered"`` and ``batch_size=1`` (the core already chunks), where
``feed`` is a generator over this backend's queue of submitted calls.

joblib pulls the next item of ``feed`` from its completion callback (loky's result thread),
under its own lock, so ``feed`` must never block. When the queue is empty while calls of the
round are still running, ``feed`` yields a short *park* task instead of ending: ending would
close the round, and calls submitted before the round drains would wait for its slowest call.
When nothing is queued or running, ``feed`` ends and the dispatcher waits for the next call.

Only joblib's public API is used (``Parallel``, ``delayed``).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from anyexec.backends.support import (
    Call,
    CallQueue,
    RerunAlone,
    WorkerMarks,
    check_choice,
    children,
    fail,
    kill,
    pack_outcome,
    running,
    succeed,
    unpack_outcome,
    worker_count,
)

if TYPE_CHECKING:
    from joblib import Parallel

__all__ = ["JoblibBackend"]

log = logging.getLogger("anyexec")

# loky's reusable executor is one per process. Two executors' rounds on it at once can
# deadlock inside joblib when a worker dies: one round aborts (shutting loky's executor down
# and joining its threads) while the other submits to it and loky's result thread runs the
# other round's callback. One loky round at a time per process avoids that; a round ends as
# soon as its executor has no work, so the others wait at most for work already submitted.
_LOKY_ROUNDS = threading.Lock()


#: The joblib backends this one can drive. joblib's "multiprocessing" is not among them (see
#: JoblibBackend.__init__), so option errors never list it as accepted.
JoblibName = Literal["loky", "threading"]

#: How long a park task sleeps on a process worker. Short: a call submitted while a worker
#: parks waits about this long; long enough that an idle worker costs little CPU.
_PARK_SECONDS = 0.002
#: How long creating an executor waits for joblib's engine to start (see _start_engine).
_START_SECONDS = 60.0
#: Threads park on an event set by ``submit``, so they wake at once; this only bounds a wait.
_THREAD_PARK_SECONDS = 0.05


# -- what runs on joblib's workers ---------------------------------------------------------

def _park(seconds: float) -> None:
    """Hold a process worker briefly, so the round stays open for calls yet to come."""
    time.sleep(seconds)


def _call_remote(tag: int, marks: str, fn: Callable[..., Any], args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> tuple[int, bytes]:
    """Run one call in a worker process and return its outcome pickled by us.

    Every outcome (value or exception) goes back as data: an exception reaching joblib would
    abort the whole round, and joblib must see only engine failures (a dead worker). While the
    call runs, a mark in ``marks`` says which worker runs it, so that after a crash only the
    call whose worker died is blamed.
    """
    with running(marks, tag):
        return tag, pack_outcome(fn, args, kwargs)


def _park_local(wake: threading.Event, seconds: float) -> None:
    wake.wait(seconds)


class _ExitNoiseFilter(logging.Filter):
    """Drop loky's "exception calling callback" reports of a pool shut down at exit.

    An executor never shut down may have park tasks in joblib's prefetch buffer when the
    interpreter exits (joblib takes ``n_jobs`` items from the feed at a time and dispatches
    them one per completion, even after the map's last result); loky refuses new work once its
    pool is shut down (``ShutdownExecutorError``) or the interpreter is exiting
    (``RuntimeError``), and joblib's callback then fails to dispatch it. Nothing is lost (the
    task only held a worker), so say nothing. (A real loss of our calls still reaches their
    futures through the round's exception.) Measured: a script that ended right after a map of
    100 x 50 ms in chunks of 4, without closing the executor, printed this traceback 6 times in
    6 runs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        at_exit = isinstance(exc, RuntimeError) and "interpreter shutdown" in str(exc)
        if exc is None or not (at_exit or type(exc).__name__ == "ShutdownExecutorError"):
            return True
        # Only while one of our rounds runs: other joblib users' reports stay untouched.
        return not any(d._round is not None for d in list(_dispatchers))


_dispatchers: weakref.WeakSet[_Dispatcher] = weakref.WeakSet()
_exit_filter_installed = False
#: Every live dispatcher, for the exit hook.
_live: weakref.WeakSet[_Dispatcher] = weakref.WeakSet()
#: When the exit hook was registered: "created" (a dispatcher started), "loky" (after loky's).
_exit_hooks: set[str] = set()


def _finish_at_exit() -> None:
    """Run every call already submitted before the interpreter exits (stdlib pools do too).

    Registered with ``threading._register_atexit``, the hook ``concurrent.futures`` uses: it
    runs when the main thread ends, while daemon threads (our dispatchers) still run.
    Registered only after loky registered its own hook (at its first submission in this
    process): such hooks run newest first, so ours runs while loky still accepts work. Once
    loky's has run, loky refuses every new call and joblib could not dispatch the rest.
    """
    for dispatcher in list(_live):
        dispatcher.close(cancel_queued=False)
    for dispatcher in list(_live):
        dispatcher.join()


def _register_exit_hook(when: str) -> None:
    """Register :func:`_finish_at_exit` once per ``when`` (running it twice is harmless)."""
    if when in _exit_hooks:
        return
    _exit_hooks.add(when)
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        with contextlib.suppress(RuntimeError):  # the interpreter is exiting already
            register(_finish_at_exit)


def _refused_at_exit(exc: BaseException) -> bool:
    """Whether a round failed because the engine refuses work while the interpreter exits."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "interpreter shutdown" in text or "atexit after shutdown" in text)


def _install_exit_filter(dispatcher: _Dispatcher) -> None:
    global _exit_filter_installed
    _dispatchers.add(dispatcher)
    if not _exit_filter_installed:
        _exit_filter_installed = True
        logging.getLogger("concurrent.futures").addFilter(_ExitNoiseFilter())


# -- the dispatcher ----------------------------------------------------------------------

@dataclass(eq=False)
class _Round:
    """The calls handed to joblib by one ``parallel(feed)`` call and not yet settled."""

    jobs: dict[int, Call] = field(default_factory=dict)
    closed: bool = False


class _Dispatcher:
    """Feeds submitted calls to one long-lived ``joblib.Parallel`` from a dedicated thread.

    What differs between joblib's engines lives in the two subclasses: :class:`_ThreadRounds`
    (joblib's thread pool) and :class:`_LokyRounds` (loky's process pool).
    """

    #: joblib's backend name.
    name: JoblibName
    #: Whether a ``with parallel`` block serves one round only (see ``_serve``).
    one_round_per_pool = False

    def __init__(self, max_workers: int) -> None:
        self._limit = max_workers
        self._n_jobs = self._pool_size(max_workers)
        self._queue = CallQueue()
        # Calls aborted by another call's crash, already marked running: they go first.
        self._resubmitted: deque[Call] = deque()
        # The queue's (reentrant) lock guards this dispatcher's state too.
        self._lock = self._work = self._queue.condition
        self._wake = threading.Event()
        self._stopping = False
        self._round: _Round | None = None
        self._tags = itertools.count()
        _live.add(self)
        # Threads need no ordering; loky dispatchers register again after loky's own hook.
        _register_exit_hook("created")
        self._thread = threading.Thread(target=self._serve,
                                        name=f"anyexec-joblib-{self.name}", daemon=True)
        self._ready = threading.Event()
        self._thread.start()
        # Measured: 0.01-0.03 s when loky's workers already run, 0.2-0.6 s to start them.
        if not self._ready.wait(_START_SECONDS):
            log.debug("anyexec: joblib took over %s s to start; going on", _START_SECONDS)

    # -- caller side --

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> Future[Any]:
        call = self._queue.put(fn, args, kwargs)
        self._wake.set()
        return call

    def close(self, *, cancel_queued: bool, stop: bool = False) -> None:
        with self._work:
            self._stopping = self._stopping or stop
            self._wake.set()
        self._queue.close(cancel_queued=cancel_queued)

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # -- what each engine decides --

    def _pool_size(self, max_workers: int) -> int:
        """joblib's ``n_jobs`` for ``max_workers``."""
        return max_workers

    def _guard(self) -> contextlib.AbstractContextManager[Any]:
        """Held while a round runs."""
        return contextlib.nullcontext()

    def _engine_started(self) -> None:
        """Called once joblib's engine ran its first (empty) round."""

    def _park_task(self) -> Any:
        """What ``feed`` yields while calls run and none waits (keeps the round open)."""
        raise NotImplementedError

    def _task(self, current: _Round, tag: int, job: Call) -> Any:
        """The joblib task that runs ``job``."""
        raise NotImplementedError

    def _returned(self, current: _Round, item: Any) -> None:
        """One output of the round arrived."""

    def _next_job(self, current: _Round) -> Call | None:
        """Pop the next call to hand to joblib; None if none may start now (lock held)."""
        # Not marked running: it is, when a thread starts it (until then it can be cancelled).
        return self._queue.take(mark_running=False)

    def _waiting_again(self) -> bool:
        """Whether calls wait to run again, not yet handed to joblib (lock held)."""
        return bool(self._resubmitted)

    def _drop_waiting_again(self) -> list[Call]:
        """Forget the calls waiting to run again, and return them (lock held)."""
        again = list(self._resubmitted)
        self._resubmitted.clear()
        return again

    def _after_crash(self, lost: list[tuple[int, Call]], crash: BaseException) -> None:
        """The round broke (an engine failure) with ``lost`` calls unsettled: fail them."""
        for _tag, job in lost:
            fail(job, crash)

    def worker_pids(self) -> set[int]:
        """The worker processes that ran or run this dispatcher's calls."""
        return set()

    def _cleanup(self) -> None:
        """The dispatcher thread ends."""

    # -- dispatcher thread --

    def _wait_for_work(self) -> bool:
        """Block until a call is queued; False once closed with nothing left to run."""
        with self._work:
            while not self._leftovers() and not self._queue.closed:
                self._work.wait()
            return self._leftovers() and not self._stopping

    def _leftovers(self) -> bool:
        """Whether calls wait to be handed to joblib (lock held)."""
        return bool(self._queue) or self._waiting_again()

    def _start_engine(self) -> Parallel:
        """Import joblib and run one empty round, so the engine runs before any call.

        Both must happen before the interpreter starts to exit: from then on importing
        ``concurrent.futures.process`` (which joblib's loky does) and starting loky's executor
        raise ("can't register atexit after shutdown"), so a call submitted just before the
        script ends could never run. The caller waits for this in ``__init__``.
        """
        try:
            from joblib import Parallel, delayed

            parallel = Parallel(n_jobs=self._n_jobs, backend=self.name,
                                return_as="generator_unordered", batch_size=1,
                                pre_dispatch="n_jobs")
            try:
                with self._guard(), parallel:
                    for _ in parallel([delayed(_park)(0.0)]):
                        pass
            except Exception as exc:  # the first real round will meet it again
                log.debug("anyexec: joblib's first round failed (%r)", exc)
            self._engine_started()
            return parallel
        finally:
            self._ready.set()

    def _serve(self) -> None:
        try:
            parallel = self._start_engine()
        except BaseException as exc:
            # joblib refused (a broken installation): say so through every call instead.
            while self._wait_for_work():
                self._queue.fail_queued(exc)
            return
        while self._wait_for_work():
            try:
                with self._guard(), parallel:
                    while self._wait_for_work():
                        self._run_round(parallel)
                        if self.one_round_per_pool:
                            break
            except Exception as exc:
                if _refused_at_exit(exc):
                    # Nothing can run any more: fail what is left rather than start rounds
                    # that the engine refuses, over and over.
                    self._fail_leftovers(RuntimeError(
                        "the interpreter began to exit before joblib ran this call, and "
                        f"joblib's engine no longer accepts work ({exc})"))
                    break
                # The round's calls already carry the exception; joblib aborted its executor
                # and the next round starts on a fresh one.
                log.debug("anyexec: joblib round failed, restarting the pool (%r)", exc)
        # Calls still queued when stopped (terminate) never run.
        self.close(cancel_queued=True)
        self._fail_leftovers(RuntimeError("the executor was stopped before this call ran"))
        self._cleanup()

    def _fail_leftovers(self, exc: BaseException) -> None:
        """Fail every call not yet handed to joblib, the ones to run again included."""
        with self._lock:
            again = self._drop_waiting_again()
        for job in again:
            fail(job, exc)
        self._queue.fail_queued(exc)

    def _run_round(self, parallel: Parallel) -> None:
        current = _Round()
        with self._lock:
            self._round = current
        try:
            for item in parallel(self._feed(current)):
                self._returned(current, item)
        except BaseException as exc:
            with self._lock:
                current.closed = True
                lost = list(current.jobs.items())
                current.jobs.clear()
            self._after_crash(lost, _one_line(exc))
            raise
        finally:
            with self._lock:
                self._round = None

    def _feed(self, current: _Round) -> Iterator[Any]:
        """The round's input. Runs in joblib's callback thread under joblib's lock: no waits."""
        park = self._park_task()
        while True:
            with self._lock:
                if current.closed or self._stopping:
                    return
                job = self._next_job(current)
                if job is None:
                    if not current.jobs:
                        return  # nothing queued or running: end the round
                    self._wake.clear()
            if job is None:
                yield park
            else:
                tag = next(self._tags)
                current.jobs[tag] = job
                yield self._task(current, tag, job)


class _ThreadRounds(_Dispatcher):
    """joblib's ``threading`` backend: calls run in joblib's threads, in this process."""

    name: JoblibName = "threading"

    def _park_task(self) -> Any:
        from joblib import delayed

        # Threads park on an event that submit() sets, so a new call starts at once.
        return delayed(_park_local)(self._wake, _THREAD_PARK_SECONDS)

    def _task(self, current: _Round, tag: int, job: Call) -> Any:
        from joblib import delayed

        return delayed(self._call_local)(current, tag, job)

    def _call_local(self, current: _Round, tag: int, job: Call) -> None:
        """Run one call in a joblib thread and settle its future directly (no pickling)."""
        try:
            # Marked running here, when a thread really starts it: cancelling before works.
            if not job.set_running_or_notify_cancel():
                return
            try:
                value = job.invoke()
            except BaseException as exc:  # delivered through the future
                fail(job, exc)
            else:
                succeed(job, value)
            job.release()
        finally:
            with self._lock:
                current.jobs.pop(tag, None)


class _LokyRounds(_Dispatcher):
    """joblib's ``loky`` backend: calls run in loky's reusable process pool.

    Each round enters the ``Parallel`` anew, so that it picks up loky's current reusable
    executor, which is shared by every loky user in this process and replaced when any of
    them loses a worker.
    """

    name: JoblibName = "loky"
    one_round_per_pool = True

    def __init__(self, max_workers: int) -> None:
        self._pids: set[int] = set()
        self._marks = WorkerMarks("joblib")
        # Calls that were running when a worker died: each runs again alone (_after_crash).
        self._triage: RerunAlone[Call] = RerunAlone()
        super().__init__(max_workers)
        _install_exit_filter(self)

    def _pool_size(self, max_workers: int) -> int:
        # joblib runs n_jobs=1 inline in the calling thread: calls would then not be isolated
        # (os._exit would kill the caller). Use two workers and admit one call.
        return max(2, max_workers)

    def _guard(self) -> contextlib.AbstractContextManager[Any]:
        return _LOKY_ROUNDS

    def _engine_started(self) -> None:
        # loky registered its exit hook when it started: ours now runs before it.
        _register_exit_hook("loky")

    def _park_task(self) -> Any:
        from joblib import delayed

        return delayed(_park)(_PARK_SECONDS)

    def _task(self, current: _Round, tag: int, job: Call) -> Any:
        from joblib import delayed

        return delayed(_call_remote)(tag, self._marks.path, job.fn, job.args, job.kwargs)

    def _returned(self, current: _Round, item: Any) -> None:
        if item is not None:  # None: a park task
            self._settle(current, *item)

    def _waiting_again(self) -> bool:
        return super()._waiting_again() or self._triage.blocking

    def _drop_waiting_again(self) -> list[Call]:
        return [*super()._drop_waiting_again(), *self._triage.drain()]

    def _cleanup(self) -> None:
        self._marks.remove()

    def worker_pids(self) -> set[int]:
        """Workers seen in results, and those running a call now (from its mark)."""
        with self._lock:
            pids = set(self._pids)
        return pids | self._marks.pids()

    def _next_job(self, current: _Round) -> Call | None:
        if self._triage.blocking:
            # A suspect runs alone, once the calls still running have finished.
            return self._triage.next_alone(busy=bool(current.jobs))
        # joblib's pool already bounds how many calls run; counting our handed-over calls too
        # would idle workers until joblib's 10 ms result loop reports them settled. Count only
        # when the pool is larger than max_workers (max_workers=1 on a process pool).
        if self._n_jobs != self._limit and len(current.jobs) >= self._limit:
            return None
        if self._resubmitted:
            return self._resubmitted.popleft()
        # Handed to joblib from now on, so it can no longer be cancelled.
        return self._queue.take()

    def _after_crash(self, lost: list[tuple[int, Call]], crash: BaseException) -> None:
        """Fail only the call whose worker died; run every other lost call again.

        loky kills every worker when one dies, so liveness cannot tell the culprit from the
        calls running beside it (marker files only say which calls were running). Those are
        suspects: each runs again alone on a fresh pool, nothing beside it, and fails only if
        its worker dies again then. Calls that had not started, or had finished but whose
        result joblib dropped when it aborted, are run again at once.
        """
        culprits: list[Call] = []
        requeue: list[Call] = []
        suspects = 0
        with self._lock:
            for job_tag, job in lost:
                started = self._marks.pid_of(job_tag, forget=True) is not None
                if self._stopping:
                    culprits.append(job)
                elif started or job is self._triage.alone:
                    if self._triage.lost(job):
                        culprits.append(job)  # it ran alone, so its own worker died
                    else:
                        suspects += 1
                else:
                    requeue.append(job)
            self._resubmitted.extend(requeue)
            self._work.notify()
        for job in culprits:
            fail(job, crash)
        if suspects or requeue:
            log.debug("anyexec: running %d call(s) again after a joblib worker crash, %d of "
                      "them alone", suspects + len(requeue), suspects)

    def _settle(self, current: _Round, tag: int, data: bytes) -> None:
        with self._lock:
            job = current.jobs.pop(tag, None)
            if job is not None:
                self._triage.returned(job)  # if it ran alone and came back: innocent
        if job is None:
            return
        ok, value, pid = unpack_outcome(data)
        if pid is not None:
            with self._lock:
                self._pids.add(pid)
        if ok:
            succeed(job, value)
        else:
            fail(job, value)
        job.release()


def _loky_workers(mine: set[int]) -> set[int]:
    """This process's loky worker processes, of ``children()``."""
    found: set[int] = set()
    for pid in mine:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as cmd:
            if b"popen_loky_posix" in cmd.read():
                found.add(pid)
    return found


def _one_line(exc: BaseException) -> BaseException:
    """``exc`` with its message on one line (loky's TerminatedWorkerError spans several)."""
    text = " ".join(str(exc).split())
    if text == str(exc):
        return exc
    try:
        flat = type(exc)(text)
    except Exception:
        flat = RuntimeError(f"{type(exc).__name__}: {text}")
    flat.__cause__ = exc
    return flat


class JoblibBackend:
    """Runs calls with ``joblib.Parallel`` on one of joblib's backends, reusing its pool.

    Options: ``backend`` (``loky``, the default, a robust process pool that survives worker
    crashes; or ``threading``; joblib's ``multiprocessing`` is refused with the reason), and
    ``max_workers`` (default: the CPU count).
    """

    requires = ("joblib",)
    engine = "joblib"
    install_hint = "pip install 'anyexec[joblib]'"
    # A round trip through joblib costs a fraction of a millisecond, and results reach the
    # caller through joblib's result loop, which polls every 10 ms: aim for ~0.2 s chunks.
    task_overhead = 2e-3

    def __init__(self, *, max_workers: int | None = None, backend: JoblibName = "loky") -> None:
        if backend == "multiprocessing":  # type: ignore[comparison-overlap]
            # joblib falls back to running inline when its multiprocessing backend is driven
            # from any thread but the main one, and it cannot stream results from it.
            raise ValueError(
                "joblib backend 'multiprocessing' cannot serve anyexec: joblib runs it only "
                "from the main thread and without return_as='generator'. Use backend='loky' "
                "(joblib's default process pool) or anyexec's own 'processes' backend."
            )
        check_choice("backend", backend, JoblibName, origin="the joblib backend")
        self.max_workers = worker_count(max_workers, origin="the joblib backend")
        self.backend = backend
        # Threads share the caller's memory: nothing to pickle, nothing isolated.
        self.pickles = backend != "threading"
        self.capabilities: frozenset[str] = frozenset()
        if backend == "loky":
            # loky runs each call in the main thread of its worker process.
            capabilities = {"isolated", "recovers_from_worker_death", "interrupts_tasks"}
            if self.max_workers > 1:
                # max_workers=1 keeps two loky workers (below) and alternates between them:
                # reused, but more processes than max_workers, which the kit cannot tell apart.
                capabilities.add("reuses_workers")
            self.capabilities = frozenset(capabilities)
        engine = _LokyRounds if backend == "loky" else _ThreadRounds
        self._dispatcher: _Dispatcher = engine(self.max_workers)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return self._dispatcher.submit(fn, args, kwargs)

    def terminate(self) -> None:
        """Stop now: run nothing more and kill the worker processes (Ctrl-C)."""
        self._dispatcher.close(cancel_queued=True, stop=True)
        if self.backend == "threading":
            return
        # Workers seen running our calls, plus loky workers that may not have reported yet
        # (still starting, or holding a call that did not start): on Ctrl-C the shared loky
        # pool goes down anyway, and loky's exit handler would wait for its running calls.
        if not os.path.isdir("/proc"):  # macOS: trust the PIDs, which we saw recently
            kill(self._dispatcher.worker_pids())
            return
        mine = children()
        # A PID seen long ago may belong to another process by now: only our children.
        kill((self._dispatcher.worker_pids() | _loky_workers(mine)) & mine)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._dispatcher.close(cancel_queued=cancel_futures)
        if wait:
            self._dispatcher.join()
