"""``Executor.amap``: map's semantics for ``async for`` on real backends."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

import anyexec
from anyexec.testing import tasks
from anyexec.testing._async_conformance import _collect as collect
from anyexec.testing._async_conformance import _numbers as numbers


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


def pump_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "anyexec-amap"]


def wait_for_no_pump_thread(seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while pump_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not pump_threads(), "the amap thread outlived its consumer"


# -- beyond the kit ----------------------------------------------------------------------------


def test_endless_async_input_works_and_closing_stops_the_thread() -> None:
    async def first_ten(ex: anyexec.Executor) -> list[int]:
        out = []
        iterator = ex.amap(tasks.square, numbers(10**9))
        async for value in iterator:
            out.append(value)
            if len(out) == 10:
                break
        await iterator.aclose()  # type: ignore[attr-defined]
        return out

    with anyexec.get_executor("processes", max_workers=2) as ex:
        assert run(first_ten(ex)) == [i * i for i in range(10)]
    wait_for_no_pump_thread()


def test_an_error_raised_by_the_async_input_reaches_the_consumer() -> None:
    async def broken() -> AsyncIterator[int]:
        yield 1
        raise OSError("the socket closed")

    with anyexec.get_executor("threads", max_workers=2) as ex, \
            pytest.raises(OSError, match="the socket closed"):
        run(collect(ex.amap(tasks.square, broken())))
    wait_for_no_pump_thread()


def test_an_input_error_in_the_first_window_cancels_what_it_had_submitted(
        tmp_path: Path) -> None:
    async def three_then_broken() -> AsyncIterator[int]:
        for i in range(3):
            yield i
        raise OSError("the socket closed")

    fn = partial(tasks.record_and_sleep, folder=str(tmp_path), seconds=0.3)
    with anyexec.get_executor("threads", max_workers=1) as ex:
        with pytest.raises(OSError, match="the socket closed"):
            run(collect(ex.amap(fn, three_then_broken(), chunksize=1)))
        wait_for_no_pump_thread()
    # One worker: the first item had started; the two queued behind it were cancelled.
    assert len(list(tmp_path.glob("*.started"))) == 1


def test_a_slow_sync_input_does_not_block_the_event_loop() -> None:
    def slow_input() -> Iterator[int]:
        for i in range(3):
            time.sleep(0.2)
            yield i

    with anyexec.get_executor("threads", max_workers=2) as ex:
        ticks = [0]

        async def main() -> list[int]:
            async def ticker() -> None:
                while True:
                    ticks[0] += 1
                    await asyncio.sleep(0.01)

            task = asyncio.create_task(ticker())
            out = await collect(ex.amap(tasks.square, slow_input()))
            task.cancel()
            return out

        assert run(main()) == [0, 1, 4]
    assert ticks[0] >= 10


# -- cancellation --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["threads", "processes"])
@pytest.mark.parametrize("how", ["cancel-task", "aclose"])
def test_a_stopped_consumer_cancels_every_task_not_yet_started(
        backend: str, how: str, tmp_path: Path) -> None:
    fn = partial(tasks.record_and_sleep, folder=str(tmp_path), seconds=0.5)
    with anyexec.get_executor(backend, max_workers=2) as ex:

        async def consume() -> None:
            iterator = ex.amap(fn, range(100), chunksize=1)
            try:
                async for _ in iterator:
                    pass
            finally:
                if how == "aclose":
                    await iterator.aclose()  # type: ignore[attr-defined]

        async def main() -> None:
            task = asyncio.create_task(consume())
            while len(list(tmp_path.iterdir())) < 2:  # both workers busy
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        run(main())
        wait_for_no_pump_thread()
        # Two task lengths: what the workers had already taken has started by now.
        time.sleep(1.0)
        started = len(list(tmp_path.iterdir()))
        time.sleep(0.7)  # anything still queued would start in this time
        assert len(list(tmp_path.iterdir())) == started
    # The two running at cancellation, plus what the engine had already taken off the futures
    # (one task finishing at that moment on threads; ProcessPoolExecutor's call queue of
    # max_workers + 1 on processes), exactly as when a map iterator is closed; never the rest
    # of the window (100 items).
    assert started <= (3 if backend == "threads" else 5)


def test_an_iterator_dropped_unfinished_stops_its_thread() -> None:
    with anyexec.get_executor("threads", max_workers=2) as ex:

        async def main() -> None:
            iterator = ex.amap(tasks.square, range(10**6), chunksize=1)
            async for _ in iterator:
                break
            del iterator  # asyncio's async-generator finaliser closes it

        run(main())
        wait_for_no_pump_thread()


# -- arguments -------------------------------------------------------------------------------


def test_bad_arguments_raise_at_the_call_like_map() -> None:
    with anyexec.get_executor("threads") as ex:
        with pytest.raises(TypeError, match="argument 2 must be iterable"):
            ex.amap(tasks.square, 5)
        with pytest.raises(ValueError, match="on_error"):
            ex.amap(tasks.square, range(3), on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.amap(tasks.square, range(3))


# -- exit ------------------------------------------------------------------------------------


SCRIPT = textwrap.dedent("""
    import asyncio, anyexec
    from functools import partial
    from anyexec.testing import tasks

    async def main():
        ex = anyexec.get_executor("processes", max_workers=2)
        async for value in ex.amap(partial(tasks.sleep_then_return, seconds=0.2), range(50)):
            if value == 1:
                break   # leave the iterator unclosed; asyncio.run closes it
        print("done", flush=True)

    asyncio.run(main())
""")


@pytest.mark.parametrize("attempt", range(3))
def test_a_script_leaving_an_amap_unfinished_exits_by_itself(attempt: int) -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "done"
    assert "Traceback" not in proc.stderr, proc.stderr
