"""``Executor.amap``: the shared ``map`` driven from a thread, consumed with ``async for``.

::

    event loop (caller)                    pump thread (one per amap)
    ---------------------                  --------------------------------------
    async for x in amap  <-- chunk lists -- MapRun: pull input, submit, wait, order
                          (call_soon_threadsafe;  |
                           1 chunk handed ahead)  v
    async input  ----- one item per request ---> fill() (run_coroutine_threadsafe)

Everything ``map`` does (chunking, window, order, retries, errors, progress, timeouts) is the
one ``MapRun`` of ``_map``; this module only moves its chunks between threads. The thread, not
the loop, pulls the input and waits for the workers, so a slow sync generator or a busy engine
never blocks the loop. Values cross per chunk, not per item, so the thread hop costs little
even on tiny tasks; what remains is ``async for`` itself (docs/integrations.md). Stopping (the
consumer is cancelled, ``aclose()``, or the generator is collected) wakes the thread at once
and cancels every task not yet started, as closing a ``map`` iterator does.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator

from anyexec._map import MapRequest, MapRun
from anyexec._record import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

    from anyexec._executor import Executor

__all__ = ["amap"]

# Task ids of MapRun are >= 0; this one wakes the pump thread's wait to stop it.
_STOP_ID = -1
# How often a pump thread whose consumer vanished without closing (its loop closed) checks.
_ORPHAN_CHECK_SECONDS = 1.0


class _Stopped(Exception):
    """The consumer is gone: unwind the map (its ``finally`` cancels what has not started)."""


class _StoppableRun(MapRun):
    """A ``MapRun`` whose wait for the next finished task can be interrupted by ``stop``."""

    def _wait(self) -> int:
        task_id = super()._wait()
        if task_id == _STOP_ID:
            raise _Stopped
        return task_id

    def wake_to_stop(self) -> None:
        self._done.put((_STOP_ID, time.monotonic()))


_VALUES, _ERROR, _END = 0, 1, 2


class _Channel:
    """Hands chunks from the pump thread to the loop; one chunk ahead at most."""

    def __init__(self, run: _StoppableRun) -> None:
        self.run = run
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopped = False
        # Released by the consumer each time it takes a chunk: the thread computes the next
        # chunk while the consumer works through this one, and no further, so a slow consumer
        # stops the map (and its input) exactly as it stops a plain map iterator.
        self.room = threading.Semaphore(0)
        self.ready: collections.deque[tuple[int, Any]] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None
        # The request for the next item of an async input, in flight on the loop.
        self.pulling: Any = None

    # -- loop side -----------------------------------------------------------------------

    def _arrive(self, message: tuple[int, Any]) -> None:
        self.ready.append(message)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def take(self) -> tuple[int, Any]:
        while not self.ready:
            assert self.loop is not None  # set by _consume before the thread starts
            self.waiter = self.loop.create_future()
            await self.waiter
        self.room.release()
        return self.ready.popleft()

    def stop(self) -> None:
        """Cancel what has not started and let the pump thread end; never blocks."""
        if self.stopped:
            return
        self.stopped = True
        pulling = self.pulling
        if pulling is not None:
            pulling.cancel()
        self.room.release()
        self.run.wake_to_stop()

    # -- thread side ---------------------------------------------------------------------

    def send(self, message: tuple[int, Any]) -> bool:
        loop = self.loop
        assert loop is not None
        try:
            loop.call_soon_threadsafe(self._arrive, message)
        except RuntimeError:  # the loop is closed: nobody will read this
            return False
        return True

    def wait_for_room(self) -> bool:
        loop = self.loop
        assert loop is not None
        while not self.room.acquire(timeout=_ORPHAN_CHECK_SECONDS):
            if loop.is_closed():
                return False
        return not self.stopped

    def pump(self) -> None:
        run = self.run
        chunks = run._values()
        try:
            if not run._inline:
                run.fill()
            for values in chunks:
                if not self.send((_VALUES, values)) or not self.wait_for_room():
                    return
        except BaseException as error:
            if not self.stopped:
                self.send((_ERROR, error))
            return
        finally:
            chunks.close()  # cancels every task not yet started
            # A generator closed before it started (the first fill() raised: a failing async
            # input, a cancelled consumer) never runs its finally: cancel the first window.
            run.close()
        self.send((_END, None))


def _from_async(source: Any, holder: list[_Channel]) -> Iterator[Any]:
    """A sync iterator over an async iterable, read on the loop one item per request."""
    channel = holder[0]

    async def next_item() -> Any:
        return await source.__anext__()

    while True:
        loop = channel.loop
        assert loop is not None
        request = asyncio.run_coroutine_threadsafe(next_item(), loop)
        channel.pulling = request
        try:
            value = request.result()
        except StopAsyncIteration:
            return
        finally:
            channel.pulling = None
        yield value


def amap(ex: Executor, fn: Callable[..., Any], iterables: tuple[Any, ...],
         options: dict[str, Any]) -> AsyncIterator[Any]:
    """Validate like ``map`` (errors raise here), then return the async iterator."""
    from anyexec._executor import _validate_map

    holder: list[_Channel] = []
    sources: list[Iterable[Any]] = []
    for iterable in iterables:
        if hasattr(iterable, "__aiter__"):
            # Built now so that validation sees an iterable; it starts only in the thread,
            # after the loop is known.
            sources.append(_LazyAsync(iterable.__aiter__(), holder))
        else:
            sources.append(iterable)
    req: MapRequest = _validate_map(fn, tuple(sources), **options)
    ex.admit(req, stacklevel=4)
    channel = _Channel(_StoppableRun(ex, req))
    holder.append(channel)
    return _consume(channel)


class _LazyAsync:
    """An async iterable's place in the map's input until the channel exists."""

    def __init__(self, source: Any, holder: list[_Channel]) -> None:
        self._source = source
        self._holder = holder

    def __iter__(self) -> Iterator[Any]:
        return _from_async(self._source, self._holder)


async def _consume(channel: _Channel) -> AsyncIterator[Any]:
    channel.loop = asyncio.get_running_loop()
    threading.Thread(target=channel.pump, name="anyexec-amap", daemon=True).start()
    try:
        while True:
            kind, payload = await channel.take()
            if kind == _VALUES:
                for value in payload:
                    yield value
            elif kind == _ERROR:
                raise payload
            else:
                return
    finally:
        channel.stop()
