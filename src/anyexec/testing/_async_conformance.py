"""The conformance checks of ``Executor.amap``, as a mixin of the kit's test class.

``BackendConformance`` provides the ``executor`` fixture, ``make_executor``, ``backend`` and
``slow_task_seconds``; these checks use only those, so mixing this class in runs ``amap``'s
contract on every backend the kit tests.
"""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import pytest

import anyexec
from anyexec.testing import tasks

__all__ = ["AsyncMapConformance"]


def _run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 120))


async def _collect(iterator: AsyncIterator[Any]) -> list[Any]:
    return [value async for value in iterator]


async def _numbers(n: int, pulled: list[int] | None = None) -> AsyncIterator[int]:
    for i in range(n):
        await asyncio.sleep(0)
        if pulled is not None:
            pulled[0] = i + 1
        yield i


def _wait_for_no_pump_thread(seconds: float = 30) -> None:
    """Every ``amap`` runs on a thread named ``anyexec-amap``; a stopped one must end."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(t.name == "anyexec-amap" for t in threading.enumerate()):
            return
        time.sleep(0.02)
    raise AssertionError("an amap thread is still running after its consumer stopped")


class AsyncMapConformance:
    """``amap`` gives ``map``'s results, errors and cancellation to ``async for``."""

    backend: ClassVar[str]
    slow_task_seconds: ClassVar[float]

    def make_executor(self, **overrides: Any) -> anyexec.Executor:
        raise NotImplementedError  # provided by BackendConformance

    def test_amap_yields_results_in_input_order(self, executor: anyexec.Executor) -> None:
        got = _run(_collect(executor.amap(tasks.reverse_sleep, range(12), chunksize=1)))
        assert got == list(range(12))

    def test_amap_of_many_tiny_tasks_is_complete_and_ordered(
            self, executor: anyexec.Executor) -> None:
        got = _run(_collect(executor.amap(tasks.square, range(20_000))))
        assert got == [x * x for x in range(20_000)]

    def test_unordered_amap_yields_every_result_once(self, executor: anyexec.Executor) -> None:
        got = _run(_collect(executor.amap(tasks.reverse_sleep, range(12), ordered=False,
                                          chunksize=1)))
        assert sorted(got) == list(range(12))

    def test_amap_zips_async_and_sync_inputs_to_the_shortest(
            self, executor: anyexec.Executor) -> None:
        got = _run(_collect(executor.amap(tasks.add, _numbers(5), range(10, 100))))
        assert got == [10, 12, 14, 16, 18]

    def test_amap_stalled_consumer_stops_pulling_async_input(
            self, executor: anyexec.Executor) -> None:
        pulled = [0]

        async def main() -> None:
            results = executor.amap(tasks.square, _numbers(10**9, pulled), chunksize=1,
                                    buffersize=8)
            assert await results.__anext__() == 0
            await asyncio.sleep(0.3)
            await results.aclose()  # type: ignore[attr-defined]

        _run(main())
        # buffersize items in flight, the one consumed, one chunk handed ahead to the loop.
        assert pulled[0] <= 1 + 8 + 1
        _wait_for_no_pump_thread()

    def test_amap_exception_keeps_its_type_traceback_and_names_the_item(
            self, executor: anyexec.Executor) -> None:
        with pytest.raises(ValueError, match="item 3 is bad") as info:
            _run(_collect(executor.amap(tasks.fail_on, range(10))))
        text = "".join(traceback.format_exception(info.value))
        assert 'raise ValueError(f"item {x} is bad")' in text, "the worker's traceback is missing"
        notes = getattr(info.value, "__notes__", [])
        assert any("item 3" in note and self.backend in note for note in notes), notes
        _wait_for_no_pump_thread()

    def test_amap_on_error_return_and_retries(self, executor: anyexec.Executor,
                                              tmp_path: Path) -> None:
        got = _run(_collect(executor.amap(tasks.fail_on, range(6), on_error="return")))
        assert got[:3] == [0, 1, 2]
        assert got[4:] == [4, 5]
        assert isinstance(got[3], ValueError)
        fn = partial(tasks.fail_first_time, folder=str(tmp_path))
        assert _run(_collect(executor.amap(fn, range(8), retries=1))) == list(range(8))

    def test_amap_progress_shows_without_breaking_results(
            self, executor: anyexec.Executor, capsys: pytest.CaptureFixture[str]) -> None:
        got = _run(_collect(executor.amap(tasks.square, range(50), progress=True)))
        assert got == [x * x for x in range(50)]
        assert "50" in capsys.readouterr().err

    def test_amap_timeout_bounds_the_whole_iteration(self, executor: anyexec.Executor) -> None:
        fn = partial(tasks.sleep_then_return, seconds=2 * self.slow_task_seconds)
        with pytest.raises(TimeoutError):
            _run(_collect(executor.amap(fn, range(4), chunksize=1, timeout=0.2)))
        _wait_for_no_pump_thread()

    def test_amap_waiting_for_workers_leaves_the_event_loop_running(
            self, executor: anyexec.Executor) -> None:
        ticks = [0]

        async def main() -> list[int]:
            async def ticker() -> None:
                while True:
                    ticks[0] += 1
                    await asyncio.sleep(0.01)

            task = asyncio.create_task(ticker())
            fn = partial(tasks.sleep_then_return, seconds=0.5)
            out = await _collect(executor.amap(fn, range(2), chunksize=1))
            task.cancel()
            return out

        assert _run(main()) == [0, 1]
        # A loop blocked while the tasks ran would tick once or twice, not every 10 ms.
        assert ticks[0] >= 10

    def test_amap_cancelled_consumer_cancels_work_not_started(self, tmp_path: Path) -> None:
        ex = self.make_executor()
        try:
            fn = partial(tasks.record_and_sleep, folder=str(tmp_path),
                         seconds=self.slow_task_seconds)

            async def consume() -> None:
                async for _ in ex.amap(fn, range(200), chunksize=1):
                    pass

            async def main() -> None:
                task = asyncio.create_task(consume())
                while not list(tmp_path.glob("*.started")):
                    await asyncio.sleep(0.01)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task

            _run(main())
            _wait_for_no_pump_thread()
        finally:
            ex.shutdown(wait=True)
        started = len(list(tmp_path.glob("*.started")))
        assert started < 200, "cancelling the consumer did not cancel pending work"

    def test_amap_bad_arguments_raise_at_the_call(self, executor: anyexec.Executor) -> None:
        with pytest.raises(TypeError, match="argument 2 must be iterable"):
            executor.amap(tasks.square, 5)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="on_error"):
            executor.amap(tasks.square, range(3), on_error="ignore")  # type: ignore[arg-type]
