"""The one ``map`` implementation every backend shares.

Input is pulled lazily into chunks; at most ``window`` chunks (or ``buffersize`` items) are in
flight or waiting to be yielded, so memory stays flat on endless input and a stalled consumer
stops the input. Finished chunks are announced through a queue fed by done-callbacks, which
works for any ``concurrent.futures.Future`` and lets a failure anywhere surface at once.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import queue
import time
import warnings
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import CancelledError, Future

from anyexec._chunking import Chunker
from anyexec._errors import (
    AnyexecWarning,
    ExecutorShutdownError,
    RemoteTraceback,
    WorkerCrashedError,
)
from anyexec._progress import make_progress
from anyexec._record import TYPE_CHECKING, Record
from anyexec._wire import (
    SINGLE,
    STAR,
    WHOLE_CHUNK,
    ChunkOutcome,
    Failure,
    dump_items,
    load_outcome,
    short_repr,
)
from anyexec.backends._crash import LIKELY_CAUSES

if TYPE_CHECKING:
    from typing import Any

    from anyexec._executor import Executor
    from anyexec._progress import Progress
    from anyexec._protocol import MapIterator

__all__ = [
    "MapRequest",
    "ResultIterator",
    "crash_message",
    "failure_exception",
    "source_file",
    "start_map",
    "task_outcome",
]

class MapRequest(Record):
    """Everything ``map`` was asked to do, already validated."""

    fn: Callable[..., Any]
    iterables: tuple[Iterable[Any], ...]
    timeout: float | None
    chunksize: int | None
    buffersize: int | None
    ordered: bool
    progress: bool
    retries: int
    retry_on: tuple[type[BaseException], ...]
    on_error: str
    task_timeout: float | None = None


class _Chunk:
    """Consecutive input items submitted together, and what came back for them."""

    __slots__ = ("errors", "items", "seq", "start", "values", "waiting")

    def __init__(self, seq: int, start: int, items: list[Any]) -> None:
        self.seq = seq
        self.start = start
        self.items = items
        self.values: list[Any] = []
        self.waiting = 0  # submissions not yet finished (the chunk, then retried items)
        self.errors: dict[int, BaseException] = {}


class _Task(Record):
    chunk: _Chunk
    # None: the whole chunk; otherwise the one position being retried.
    position: int | None
    attempt: int


def add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note(note)``, also on Python 3.10 where it does not exist yet."""
    if hasattr(exc, "add_note"):
        exc.add_note(note)
    else:  # pragma: no cover - Python 3.10
        notes = getattr(exc, "__notes__", None)
        if notes is None:
            notes = []
            exc.__notes__ = notes  # type: ignore[attr-defined]
        notes.append(note)


def task_outcome(ex: Executor, future: Future[Any], where: str) -> ChunkOutcome:
    """The outcome of a finished task; engine failures become anyexec errors naming ``where``."""
    try:
        raw = future.result()
    except CancelledError:
        raise
    except Exception as exc:
        # The runner catches every exception of the user's code, so anything raised here is
        # the engine losing the task: a dead worker, a lost node, a broken pool.
        raise WorkerCrashedError(crash_message(ex, where, exc)) from exc
    outcome = load_outcome(raw, where)
    if outcome.logs:  # forward_logs=True (anyexec._worker_logs)
        from anyexec._worker_logs import replay

        replay(outcome.logs)
    return outcome


def crash_message(ex: Executor, where: str, exc: BaseException) -> str:
    """Say which items an engine failure took, what it was, and what to do next.

    A backend that knows what happened raises a :class:`WorkerCrashedError` saying so; only
    an engine's own, unexplained error gets the list of usual causes.
    """
    what = " ".join(str(exc).split()).rstrip(".")  # engines' messages may span lines
    if isinstance(exc, WorkerCrashedError):
        # A death one of the items may have caused: say whether the executor still works.
        hint = f" {_recovery_hint(ex)}" if exc.item_specific else ""
        return f"a worker of backend {ex.backend!r} failed while running {where}: {what}.{hint}"
    return (f"a worker of backend {ex.backend!r} failed while running {where}: "
            f"{type(exc).__name__}: {what}. Likely causes: {LIKELY_CAUSES}. "
            f"{_recovery_hint(ex)}")


def _recovery_hint(ex: Executor) -> str:
    if "recovers_from_worker_death" in ex.capabilities:
        return "This executor has replaced its workers; the next call works."
    return "This executor may be broken: shut it down and create a new one."


def failure_exception(ex: Executor, failure: Failure, where: str,
                      source: str | None = None) -> BaseException:
    """The user's exception, with the worker's traceback attached and a note naming ``where``.

    ``source`` is the file of the function that was called (see :func:`source_file`), named
    in the worker's traceback where cloudpickle left none.
    """
    exc = failure.exception
    if ex.pickles and failure.traceback and exc.__traceback__ is None:
        # Tracebacks do not survive pickling; show the worker's text as the cause, as
        # ProcessPoolExecutor does.
        exc.__cause__ = RemoteTraceback(_restore_dynamic_frames(failure.traceback, source))
    add_note(exc, f"anyexec: raised by {where} on backend {ex.backend!r}")
    return exc


_DYNAMIC = '"<dynamic-code>"'


def _restore_dynamic_frames(text: str, path: str | None) -> str:
    """Put the file and source lines back into a worker's traceback of code sent by value.

    cloudpickle names the file of every function it sends by value (those of ``__main__``,
    lambdas, closures) ``<dynamic-code>``, so the worker's traceback shows neither the script's
    path nor its lines. Such code comes from the caller's own files: the file of the function
    that was called is the one to show, and the caller can read its lines.
    """
    if _DYNAMIC not in text or path is None:
        return text
    import linecache

    out: list[str] = []
    for line in text.splitlines(keepends=True):
        if _DYNAMIC not in line:
            out.append(line)
            continue
        out.append(line.replace(_DYNAMIC, f'"{path}"', 1))
        number = line.partition(", line ")[2].partition(",")[0]
        source = linecache.getline(path, int(number)).strip() if number.isdigit() else ""
        if source:
            out.append(f"    {source}\n")
    return "".join(out)


def source_file(fn: Any) -> str | None:
    """The file that defines ``fn`` (through partials and bound methods), if it exists here."""
    import os.path

    for _ in range(8):  # partial(partial(method)) ...
        inner = getattr(fn, "func", None) or getattr(fn, "__func__", None)
        if inner is None:
            break
        fn = inner
    code = getattr(fn, "__code__", None)
    path = getattr(code, "co_filename", None)
    return path if isinstance(path, str) and os.path.isfile(path) else None


class MapRun:
    """The state of one ``map`` call; iterated by the generator that ``start_map`` returns."""

    def __init__(self, ex: Executor, req: MapRequest) -> None:
        self._ex = ex
        self._req = req
        hooks = ex.hooks
        self._crossing = ex.pickles
        payload = ex.payload_for(req.fn)
        self._fn_file = source_file(req.fn)
        share = hooks.share if self._crossing else None
        self._payload = share(payload) if share is not None else payload
        self._mode = SINGLE if len(req.iterables) == 1 else STAR
        self._source: Iterator[Any] = (
            iter(req.iterables[0]) if self._mode == SINGLE else zip(*req.iterables, strict=False)
        )
        total = _length(req.iterables)
        # Chunks worth about a hundred times the engine's cost of one task.
        target = min(0.5, max(0.002, 100 * hooks.task_overhead))
        self._chunker = Chunker(fixed=req.chunksize, target_seconds=target,
                                workers=ex.max_workers, total=total)
        # A backend that runs tasks inside submit() (serial) is driven one chunk at a time, on
        # demand: nothing runs ahead of the consumer, and map() itself returns at once.
        self._inline = hooks.runs_in_caller
        self._deadline = None if req.timeout is None else time.monotonic() + req.timeout
        self._stop_on_error = req.on_error == "raise" and req.retries == 0
        self._pulled = 0
        self._requested = False  # a result was asked for (the dropped-iterator warning)
        self._closed = False
        self._exhausted = False
        self._seq = itertools.count()
        self._open: dict[int, _Chunk] = {}  # chunks not yet yielded, by seq
        self._items_open = 0
        self._next_to_yield = 0
        self._complete: dict[int, _Chunk] = {}
        self._pending: dict[int, tuple[_Task, Future[Any]]] = {}
        self._task_ids = itertools.count()
        # (task id, monotonic time it finished), fed by the futures' done-callbacks.
        self._done: queue.SimpleQueue[tuple[int, float]] = queue.SimpleQueue()
        self._progress: Progress | None = (
            make_progress(total, f"anyexec[{ex.backend}]") if req.progress else None
        )

    # -- submitting ----------------------------------------------------------------------

    def fill(self) -> None:
        """Pull input and submit chunks until the window is full or the input ends."""
        buffersize = self._req.buffersize
        # Read each time: a cluster's worker count changes as workers join and leave.
        window = 1 if self._inline else max(2, 2 * self._ex.max_workers + 2)
        while not self._exhausted and len(self._open) < window:
            size = self._chunker.next_size(self._pulled)
            if buffersize is not None:
                room = buffersize - self._items_open
                if room <= 0:
                    break
                size = min(size, room)
            items = list(itertools.islice(self._source, size))
            if len(items) < size:
                self._exhausted = True
            if not items:
                break
            if self._ex.closed:
                raise ExecutorShutdownError(
                    f"the executor (backend {self._ex.backend!r}) was shut down while this "
                    f"map still had input to run (items from {self._pulled} on never ran). "
                    "Consume the map's results before the executor shuts down: inside its "
                    "`with` block, or with list(ex.map(...))"
                )
            chunk = _Chunk(next(self._seq), self._pulled, items)
            self._pulled += len(items)
            self._items_open += len(items)
            self._open[chunk.seq] = chunk
            self._submit(_Task(chunk, None, 0))

    def _submit(self, task: _Task) -> None:
        chunk = task.chunk
        if task.position is None:
            items, start = chunk.items, chunk.start
        else:
            items, start = [chunk.items[task.position]], chunk.start + task.position
        blob: Any = dump_items(items, start) if self._crossing else items
        future = self._ex.submit_chunk(self._payload, blob, self._mode, self._stop_on_error,
                                       self._req.task_timeout)
        task_id = next(self._task_ids)
        chunk.waiting += 1
        self._pending[task_id] = (task, future)
        done = self._done
        # The callback holds only the queue, never this object, so that dropping the iterator
        # lets it be collected and its pending work cancelled.
        def announce(_future: Future[Any], task_id: int = task_id) -> None:
            done.put((task_id, time.monotonic()))

        future.add_done_callback(announce)

    # -- collecting ----------------------------------------------------------------------

    def _wait(self) -> int:
        if self._deadline is None:
            return self._done.get()[0]
        remaining = self._deadline - time.monotonic()
        try:
            task_id, finished = self._done.get(timeout=max(0.0, remaining))
        except queue.Empty:
            finished = float("inf")
        # A result that became available after the deadline is a timeout too, whether we
        # waited for it or a backend that runs tasks synchronously (serial) made us late.
        if finished > self._deadline:
            raise TimeoutError(self._timed_out())
        return task_id

    def _timed_out(self) -> str:
        """Cancel what has not started and say truthfully what happened to the rest."""
        cancelled = running = 0
        for _task, future in self._pending.values():
            if future.cancel():
                cancelled += 1
            elif not future.done():
                running += 1
        text = f"map did not finish within timeout={self._req.timeout} s"
        if cancelled:
            text += f"; {cancelled} task(s) not started were cancelled"
        if running:
            text += (f"; {running} task(s) already running could not be stopped: they run to "
                     "their end on the workers (shutting the executor down waits for them)")
        return text

    def _receive(self, task: _Task, future: Future[Any]) -> None:
        """Record a finished task's results into its chunk, resubmitting retries."""
        chunk = task.chunk
        chunk.waiting -= 1
        positions = range(len(chunk.items)) if task.position is None else [task.position]
        try:
            outcome = self._decode(future, chunk, task)
        except WorkerCrashedError as crash:
            # The crash took the whole chunk, but the culprit is one of its items. (Items
            # that ran before the crash run a second time.)
            if getattr(crash.__cause__, "item_specific", True) and self._split(task):
                return
            for position in positions:
                self._fail(task, position, crash)
            return
        if outcome.failures and outcome.failures[0].position == WHOLE_CHUNK:
            # The chunk's arguments did not unpickle on the worker: find which did not.
            if self._split(task):
                return
            whole = outcome.failures[0].exception
            chunk.values = chunk.values or [None] * len(chunk.items)
            for position in positions:
                failure = Failure(position, type(whole)(*whole.args), "",
                                  short_repr(chunk.items[position]))
                self._fail(task, position, self._exception(failure, chunk.start + position))
            return
        if task.position is None:
            chunk.values = outcome.values
            self._chunker.observe(len(chunk.items), outcome.elapsed)
        else:
            chunk.values[task.position] = outcome.values[0]
        for failure in outcome.failures:
            position = failure.position if task.position is None else task.position
            self._fail(task, position, self._exception(failure, chunk.start + position))

    def _split(self, task: _Task) -> bool:
        """Run each item of a whole chunk's failed task alone, once; False if it cannot be.

        So that only the item that caused the failure fails, and every other result is kept.
        """
        chunk = task.chunk
        if task.position is not None or len(chunk.items) < 2 or self._ex.closed:
            return False
        chunk.values = [None] * len(chunk.items)
        for position in range(len(chunk.items)):
            self._submit(_Task(chunk, position, 0))
        return True

    def _fail(self, task: _Task, position: int, exc: BaseException) -> None:
        chunk = task.chunk
        if not chunk.values:
            chunk.values = [None] * len(chunk.items)
        attempt = task.attempt if task.position is not None else 0
        if attempt < self._req.retries and isinstance(exc, self._req.retry_on):
            self._submit(_Task(chunk, position, attempt + 1))
            return
        chunk.errors[position] = exc

    def _decode(self, future: Future[Any], chunk: _Chunk, task: _Task) -> ChunkOutcome:
        start = chunk.start if task.position is None else chunk.start + task.position
        count = len(chunk.items) if task.position is None else 1
        where = f"item {start}" if count == 1 else f"items {start}..{start + count - 1}"
        first = short_repr(chunk.items[task.position or 0])
        return task_outcome(self._ex, future, f"{where} (first: {first})")

    def _exception(self, failure: Failure, index: int) -> BaseException:
        return failure_exception(self._ex, failure, f"item {index} ({failure.item_repr})",
                                 self._fn_file)

    def _finish(self, chunk: _Chunk) -> list[Any]:
        """The chunk's values; raises its first error unless ``on_error='return'``."""
        del self._open[chunk.seq]
        self._items_open -= len(chunk.items)
        if chunk.errors:
            if self._req.on_error == "raise":
                raise chunk.errors[min(chunk.errors)]
            for position, exc in chunk.errors.items():
                chunk.values[position] = exc
        return chunk.values

    def results(self) -> MapIterator[Any]:
        """Yield results; on exit for any reason, cancel what has not started."""
        return ResultIterator.over(self._values(), self)

    def _values(self) -> Generator[Iterator[Any], None, None]:
        """Yield each chunk's values, in the requested order; cancel leftovers on exit."""
        self._requested = True
        try:
            ordered, inline = self._req.ordered, self._inline
            while True:
                if inline:
                    self.fill()
                if not self._open:
                    break
                if ordered and self._next_to_yield in self._complete:
                    chunk = self._complete.pop(self._next_to_yield)
                    self._next_to_yield += 1
                    values = self._finish(chunk)
                    if not inline:
                        self.fill()  # keep the workers busy while the consumer works
                    yield _handed_out(values)
                    continue
                task_id = self._wait()
                task, future = self._pending.pop(task_id)
                self._receive(task, future)
                chunk = task.chunk
                if chunk.waiting:
                    continue
                if self._progress is not None:
                    self._progress.update(len(chunk.items))
                if chunk.errors and self._req.on_error == "raise":
                    self._finish(chunk)  # fail fast, whatever the order
                if ordered:
                    self._complete[chunk.seq] = chunk
                else:
                    values = self._finish(chunk)
                    if not inline:
                        self.fill()
                    yield _handed_out(values)
        except KeyboardInterrupt:
            self._ex.hooks.interrupt()
            raise
        finally:
            self.close()

    def close(self) -> None:
        """Cancel every task not yet started and release the progress display."""
        self._closed = True
        pending, self._pending = self._pending, {}
        for _task, future in pending.values():
            future.cancel()
        if self._progress is not None:
            self._progress.close()
            self._progress = None

    def __del__(self) -> None:
        # An iterator dropped before it was started never runs its finally block. (An object
        # whose __init__ failed has no _pending.)
        never = 0
        for task, future in getattr(self, "_pending", {}).values():
            if future.cancel():
                never += len(task.chunk.items) if task.position is None else 1
        if getattr(self, "_requested", True) or self._closed:
            return
        # The stdlib's map runs every item even if nobody reads a result; ours is lazy, so a
        # map called only for its side effects silently does almost nothing. Say so.
        rest = "" if self._exhausted else ", and the rest of the input was never read"
        with contextlib.suppress(Exception):  # the interpreter may be tearing down
            warnings.warn(
                f"a map iterator of backend {self._ex.backend!r} was dropped before any result "
                f"was requested: {never} of the {self._pulled} item(s) sent never ran{rest}. "
                "map() is lazy: iterate over its results (a for loop, list(...)), or call "
                "submit() for calls whose results you do not need",
                AnyexecWarning,
                stacklevel=2,
            )


def _handed_out(values: list[Any]) -> Iterator[Any]:
    """Iterate over ``values``, dropping the list's reference to each one as it is handed out.

    Like the stdlib's ``map``, the iterator keeps no result it has already yielded (a large
    array stays alive only as long as the consumer holds it). ``starmap`` over ``list.pop``
    does it in C: a generator cost ~50 ns per item, and an iterator with a sentinel would
    compare every result with it (NumPy arrays refuse that).
    """
    values.reverse()
    return itertools.starmap(values.pop, itertools.repeat((), len(values)))


if TYPE_CHECKING:
    _Chain = itertools.chain[Any]
else:  # typing's Any is not imported at run time
    _Chain = itertools.chain


class ResultIterator(_Chain):
    """The iterator ``map`` returns (an ``anyexec.MapIterator``): a chunk's values are handed
    out by C code, one by one.

    A generator that did ``yield from values`` cost ~50 ns of frame switching per item: 10 ms
    of the caller's CPU on 200,000 trivial calls, competing with the workers for the cores.
    Chunks come from a generator, whose ``finally`` cancels what has not started; ``close()``
    reaches it as it would a generator's.
    """

    _chunks: Generator[Iterator[Any], None, None]
    _run: MapRun

    @classmethod
    def over(cls, chunks: Generator[Iterator[Any], None, None], run: MapRun) -> ResultIterator:
        it = cls.from_iterable(chunks)
        assert isinstance(it, ResultIterator)  # from_iterable builds the subclass it is called on
        it._chunks = chunks
        it._run = run
        return it

    def close(self) -> None:
        """Stop the map: cancel every task not yet started (like a generator's ``close``)."""
        self._chunks.close()
        # A generator closed before it started never runs its finally: cancel here too.
        self._run.close()
        # Like a closed generator, yield nothing more: drop what is left of the current chunk.
        collections.deque(self, maxlen=0)


def _length(iterables: tuple[Iterable[Any], ...]) -> int | None:
    lengths = []
    for iterable in iterables:
        try:
            lengths.append(len(iterable))  # type: ignore[arg-type]
        except TypeError:
            return None
    return min(lengths) if lengths else None


def start_map(ex: Executor, req: MapRequest) -> MapIterator[Any]:
    """Submit the first window now (like the stdlib's ``map``) and return the result iterator."""
    run = MapRun(ex, req)
    try:
        if not run._inline:
            run.fill()
    except BaseException:
        run.close()
        raise
    return run.results()
