"""The conformance suite as one abstract test class (see ``anyexec.testing``)."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
import traceback
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import pytest

import anyexec
from anyexec.testing import tasks
from anyexec.testing._async_conformance import AsyncMapConformance
from anyexec.testing._contract import ContractConformance
from anyexec.testing._worker_setup_conformance import WorkerSetupConformance

__all__ = ["CRASH_TABLE", "BackendConformance", "CrashRow"]


def _text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


#: Pseudo-capability for checks that apply to every backend that pickles its tasks.
PICKLES = "pickles"


class CrashRow:
    """One way a task can fail, what the caller must get, and what it needs from the backend."""

    def __init__(self, name: str, fn: Any, items: Any, error: type[BaseException], match: str,
                 needs: str | None = None, bad_index: int = 3) -> None:
        self.name, self.fn, self.items = name, fn, items
        self.error, self.match, self.needs, self.bad_index = error, match, needs, bad_index


# Built lazily (functions returning the task and the inputs) so nothing runs at import time.
CRASH_TABLE = [
    CrashRow("raise-in-task", lambda: tasks.fail_on, lambda: range(6), ValueError,
             "item 3 is bad"),
    CrashRow("os-exit-in-worker", lambda: tasks.exit_worker, lambda: range(6),
             anyexec.WorkerCrashedError, r"item 3.*os\._exit", "recovers_from_worker_death"),
    CrashRow("sigkill-of-worker", lambda: tasks.kill_worker, lambda: range(6),
             anyexec.WorkerCrashedError, r"item 3.*killed by a signal",
             "recovers_from_worker_death"),
    CrashRow("unpicklable-argument", lambda: tasks.square,
             lambda: [0, 1, 2, threading.Lock()], anyexec.SerializationError,
             r"item 3 \(lock\) cannot be pickled", PICKLES),
    CrashRow("unpicklable-result", lambda: tasks.return_lock_on, lambda: range(6),
             anyexec.SerializationError, r"result .* could not be pickled", PICKLES),
    CrashRow("unpicklable-exception", lambda: tasks.raise_unpicklable, lambda: range(6),
             anyexec.SerializationError, "UnpicklableError: cannot send 3", PICKLES),
    CrashRow("exception-fails-to-unpickle", lambda: tasks.raise_bad_reduce, lambda: range(6),
             anyexec.SerializationError, "BadReduceError", PICKLES),
    CrashRow("argument-fails-to-unpickle", lambda: tasks.square,
             lambda: [0, 1, 2, tasks.UnpicklesBadly()], anyexec.SerializationError,
             "could not be unpickled there", PICKLES),
]


class BackendConformance(ContractConformance, WorkerSetupConformance, AsyncMapConformance):
    """Subclass with ``backend = "name"``; optionally ``options`` and ``slow_task_seconds``."""

    #: The backend's registered name.
    backend: ClassVar[str] = ""
    #: Keyword options passed to ``get_executor``.
    options: ClassVar[dict[str, Any]] = {}
    #: How long the "slow" tasks of the cancellation checks sleep; raise it for engines with a
    #: high per-task latency.
    slow_task_seconds: ClassVar[float] = 0.3

    # -- fixtures ------------------------------------------------------------------------

    def make_executor(self, **overrides: Any) -> anyexec.Executor:
        """A new executor on the backend under test; the caller shuts it down."""
        if not self.backend:
            raise TypeError(f"{type(self).__name__} must set the class attribute 'backend'")
        return anyexec.get_executor(self.backend, **{**self.options, **overrides})

    @pytest.fixture(scope="class")
    @classmethod
    def executor(cls) -> Iterator[anyexec.Executor]:
        """One executor shared by the class's tests (engines such as Ray start slowly)."""
        ex = cls().make_executor()
        try:
            yield ex
        finally:
            ex.shutdown(wait=True)

    def require(self, executor: anyexec.Executor, capability: str) -> None:
        """Skip, saying why, unless the backend declares ``capability``.

        ``PICKLES`` is not a capability but a fact: the backend sends tasks to other
        processes (its ``pickles`` attribute), so the serialization checks apply to it.
        """
        if capability == PICKLES:
            if not executor.pickles:
                pytest.skip(f"backend {self.backend!r} does not pickle tasks (pickles=False)")
        elif capability not in executor.capabilities:
            pytest.skip(f"backend {self.backend!r} does not declare capability {capability!r}")

    # -- identity ------------------------------------------------------------------------

    def test_executor_reports_its_backend_and_worker_count(
        self, executor: anyexec.Executor
    ) -> None:
        assert executor.backend == self.backend
        assert isinstance(executor.max_workers, int)
        assert executor.max_workers >= 1
        assert set(executor.capabilities) <= anyexec.CAPABILITIES

    # -- map -----------------------------------------------------------------------------

    def test_map_yields_results_in_input_order(self, executor: anyexec.Executor) -> None:
        assert list(executor.map(tasks.reverse_sleep, range(20), chunksize=1)) == list(range(20))

    def test_map_of_many_tiny_tasks_is_complete_and_ordered(
        self, executor: anyexec.Executor
    ) -> None:
        assert list(executor.map(tasks.square, range(20_000))) == [x * x for x in range(20_000)]

    def test_unordered_map_yields_every_result_once(self, executor: anyexec.Executor) -> None:
        results = list(executor.map(tasks.reverse_sleep, range(20), ordered=False, chunksize=1))
        assert sorted(results) == list(range(20))

    def test_map_over_empty_input_yields_nothing(self, executor: anyexec.Executor) -> None:
        assert list(executor.map(tasks.square, [])) == []
        assert list(executor.map(tasks.square, [], ordered=False)) == []

    def test_several_iterables_are_zipped_to_the_shortest(self, executor: anyexec.Executor) -> None:
        assert list(executor.map(tasks.add, range(5), range(10, 100))) == [10, 12, 14, 16, 18]

    def test_endless_generator_is_consumed_lazily(self, executor: anyexec.Executor) -> None:
        results = executor.map(tasks.square, itertools.count())
        assert list(itertools.islice(results, 100)) == [x * x for x in range(100)]
        results.close()

    def test_stalled_consumer_stops_pulling_input(self, executor: anyexec.Executor) -> None:
        pulled = 0

        def source() -> Iterator[int]:
            nonlocal pulled
            for x in itertools.count():
                pulled += 1
                yield x

        results = executor.map(tasks.square, source(), chunksize=1, buffersize=8)
        assert next(results) == 0
        time.sleep(0.3)
        assert pulled <= 1 + 8
        results.close()

    def test_partial_and_kwargs_free_functions_work(self, executor: anyexec.Executor) -> None:
        fn = partial(tasks.sleep_then_return, seconds=0)
        assert list(executor.map(fn, "abc")) == ["a", "b", "c"]

    def test_lambdas_closures_and_nested_functions_work(self, executor: anyexec.Executor) -> None:
        offset = 10

        def nested(x: int) -> int:
            return x + offset

        assert list(executor.map(lambda x: x * 2, range(5))) == [0, 2, 4, 6, 8]
        assert list(executor.map(nested, range(3))) == [10, 11, 12]
        assert executor.submit(lambda: offset).result() == 10

    def test_map_timeout_raises_timeout_error(self, executor: anyexec.Executor) -> None:
        results = executor.map(tasks.sleep_then_return, [1], [5.0], timeout=0.2)
        with pytest.raises(TimeoutError, match=r"timeout=0\.2"):
            list(results)

    # -- errors --------------------------------------------------------------------------

    def test_exception_keeps_its_type_traceback_and_names_the_item(
        self, executor: anyexec.Executor
    ) -> None:
        with pytest.raises(ValueError, match="item 3 is bad") as info:
            list(executor.map(tasks.fail_on, range(10)))
        text = _text(info.value)
        assert "fail_on" in text, "the worker's traceback is missing"
        assert 'raise ValueError(f"item {x} is bad")' in text
        notes = getattr(info.value, "__notes__", [])
        assert any("item 3" in note and self.backend in note for note in notes), notes

    def test_unordered_map_raises_the_failure_too(self, executor: anyexec.Executor) -> None:
        with pytest.raises(ValueError, match="item 3 is bad"):
            list(executor.map(tasks.fail_on, range(10), ordered=False))

    def test_on_error_return_keeps_every_good_result(self, executor: anyexec.Executor) -> None:
        results = list(executor.map(tasks.fail_on, range(6), on_error="return"))
        assert results[:3] == [0, 1, 2]
        assert results[4:] == [4, 5]
        assert isinstance(results[3], ValueError)
        assert "fail_on" in _text(results[3])

    def test_retries_rerun_only_the_failed_items(self, executor: anyexec.Executor,
                                                 tmp_path: Path) -> None:
        fn = partial(tasks.fail_first_time, folder=str(tmp_path))
        assert list(executor.map(fn, range(8), retries=1)) == list(range(8))
        fresh = tmp_path / "again"
        fresh.mkdir()
        fn = partial(tasks.fail_first_time, folder=str(fresh))
        with pytest.raises(RuntimeError, match="transient failure"):
            list(executor.map(fn, range(8), retries=1, retry_on=KeyError))

    def test_submit_returns_a_future_with_the_result(self, executor: anyexec.Executor) -> None:
        future = executor.submit(tasks.add, 2, y=3)
        assert future.result(timeout=60) == 5

    def test_submit_exception_keeps_type_and_names_the_call(
        self, executor: anyexec.Executor
    ) -> None:
        future = executor.submit(tasks.fail_on, 3)
        with pytest.raises(ValueError, match="item 3 is bad") as info:
            future.result(timeout=60)
        assert "fail_on" in _text(info.value)
        assert any("(3)" in note for note in getattr(info.value, "__notes__", []))

    def test_works_with_asyncio_run_in_executor(self, executor: anyexec.Executor) -> None:
        async def main() -> list[int]:
            loop = asyncio.get_running_loop()
            calls = [loop.run_in_executor(executor, tasks.square, x) for x in range(5)]
            return list(await asyncio.gather(*calls))

        assert asyncio.run(main()) == [0, 1, 4, 9, 16]

    def test_default_backend_inside_a_task_is_serial(self, executor: anyexec.Executor) -> None:
        assert executor.submit(tasks.nested_default_backend).result(timeout=60) == "serial"
        assert list(executor.map(lambda _: tasks.nested_default_backend(), [0])) == ["serial"]

    def test_progress_shows_without_breaking_results(self, executor: anyexec.Executor,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
        assert list(executor.map(tasks.square, range(50), progress=True)) == [
            x * x for x in range(50)
        ]
        assert "50" in capsys.readouterr().err

    # -- worker reuse --------------------------------------------------------------------

    def test_workers_are_reused_across_maps_and_submits(self) -> None:
        ex = self.make_executor()
        try:
            self.require(ex, "reuses_workers")
            # Rounds of maps and submits, one more than there are workers: a pool started
            # afresh per round would show at least one new process per round.
            rounds = ex.max_workers + 1
            seen: set[int] = set()
            for r in range(rounds):
                if r % 2:
                    seen |= {ex.submit(tasks.pid).result(timeout=60) for _ in range(4)}
                else:
                    seen |= set(ex.map(tasks.pid, range(8), chunksize=1))
            assert len(seen) <= ex.max_workers, (
                f"{len(seen)} worker processes over {rounds} rounds with max_workers="
                f"{ex.max_workers}: workers were started again")
            if "isolated" in ex.capabilities:
                assert os.getpid() not in seen
        finally:
            ex.shutdown(wait=True)

    # -- cancellation and shutdown -------------------------------------------------------

    def test_closing_the_iterator_cancels_work_not_started(self, tmp_path: Path) -> None:
        ex = self.make_executor()
        try:
            fn = partial(tasks.record_and_sleep, folder=str(tmp_path),
                         seconds=self.slow_task_seconds)
            results = ex.map(fn, range(200), chunksize=1)
            assert next(results) == 0
            results.close()
        finally:
            ex.shutdown(wait=True)
        started = len(list(tmp_path.glob("*.started")))
        assert started < 200, "closing the iterator did not cancel pending work"

    def test_dropping_the_iterator_cancels_work_not_started(self, tmp_path: Path) -> None:
        ex = self.make_executor()
        try:
            fn = partial(tasks.record_and_sleep, folder=str(tmp_path),
                         seconds=self.slow_task_seconds)
            results = ex.map(fn, range(200), chunksize=1)
            with pytest.warns(anyexec.AnyexecWarning, match="never ran"):
                del results
        finally:
            ex.shutdown(wait=True)
        assert len(list(tmp_path.glob("*.started"))) < 200

    def test_submit_after_shutdown_raises(self) -> None:
        ex = self.make_executor()
        ex.shutdown()
        with pytest.raises(RuntimeError, match="after shutdown"):
            ex.submit(tasks.square, 2)
        with pytest.raises(RuntimeError, match="after shutdown"):
            ex.map(tasks.square, [1])
        ex.shutdown()  # a second shutdown does nothing

    def test_context_manager_shuts_down(self) -> None:
        with self.make_executor() as ex:
            assert ex.submit(tasks.square, 3).result(timeout=60) == 9
        with pytest.raises(RuntimeError):
            ex.submit(tasks.square, 3)

    # -- the crash table ----------------------------------------------------------------

    @pytest.mark.parametrize(
        "row", CRASH_TABLE, ids=[row.name for row in CRASH_TABLE]
    )
    def test_crash_table_each_failure_is_reported_and_the_next_call_works(
        self, row: CrashRow
    ) -> None:
        ex = self.make_executor()
        try:
            if row.needs:
                self.require(ex, row.needs)
            # (?s): an engine's crash message may span several lines.
            with pytest.raises(row.error, match="(?s)" + row.match) as info:
                list(ex.map(row.fn(), row.items(), chunksize=1))
            if row.error is not anyexec.WorkerCrashedError:
                notes = " ".join(getattr(info.value, "__notes__", []))
                assert f"item {row.bad_index}" in str(info.value) + notes
            # The same executor keeps working after every row.
            assert list(ex.map(tasks.square, range(5))) == [0, 1, 4, 9, 16]
        finally:
            ex.shutdown(wait=True)

    def test_unpicklable_function_is_named_at_the_call(self, executor: anyexec.Executor) -> None:
        self.require(executor, PICKLES)
        lock = threading.Lock()
        with pytest.raises(anyexec.SerializationError, match="cannot be pickled"):
            executor.map(lambda x: (lock, x), [1])

    def test_tasks_run_in_other_processes(self, executor: anyexec.Executor) -> None:
        self.require(executor, "isolated")
        import os

        assert os.getpid() not in set(executor.map(tasks.pid, range(4), chunksize=1))

    # -- per-item time limit -------------------------------------------------------------

    def test_task_timeout_fails_only_the_slow_item(self) -> None:
        ex = self.make_executor()
        try:
            if "interrupts_tasks" not in ex.capabilities:
                with pytest.warns(anyexec.AnyexecWarning, match="cannot interrupt"):
                    results = list(ex.map(tasks.sleep_then_return, range(4), [0, 0, 1.0, 0],
                                          task_timeout=0.3, on_error="return"))
            else:
                results = list(ex.map(tasks.sleep_then_return, range(4), [0, 0, 30, 0],
                                      task_timeout=0.5, on_error="return"))
            assert results[:2] == [0, 1]
            assert results[3] == 3
            assert isinstance(results[2], anyexec.TaskTimeoutError)
            assert isinstance(results[2], TimeoutError)
            assert any("item 2" in n for n in getattr(results[2], "__notes__", []))
        finally:
            ex.shutdown(wait=True)

    def test_timed_out_items_can_be_retried(self, tmp_path: Path) -> None:
        ex = self.make_executor()
        try:
            self.require(ex, "interrupts_tasks")
            fn = partial(tasks.slow_first_time, folder=str(tmp_path), seconds=30)
            assert list(ex.map(fn, range(3), task_timeout=0.5, retries=1)) == [0, 1, 2]
        finally:
            ex.shutdown(wait=True)
