"""Checks of the ``concurrent.futures`` contract and of what a user meets next to the happy path.

Written in our own words after the scenarios of CPython's ``test_concurrent_futures``: exit
with pending work, submit during interpreter exit, ``wait``/``as_completed``, references kept,
and the map iterator's life after its executor. Mixed into :class:`BackendConformance`.
"""

from __future__ import annotations

import concurrent.futures
import gc
import json
import weakref
from pathlib import Path
from typing import Any, ClassVar

import pytest

import anyexec
from anyexec.testing import tasks
from anyexec.testing.scripts import run_script, stray_output


class ContractConformance:
    """The contract checks; see :class:`anyexec.testing.BackendConformance` for the fixtures."""

    backend: ClassVar[str]
    options: ClassVar[dict[str, Any]]
    #: How long a fresh interpreter may take to start the engine, run and end.
    script_timeout: ClassVar[float] = 120.0
    #: For a backend registered at run time (``anyexec.register_backend``) rather than by an
    #: entry point: a Python file that registers it, run first in the fresh interpreters.
    register_file: ClassVar[str | None] = None

    def make_executor(self, **overrides: Any) -> anyexec.Executor:
        raise NotImplementedError  # provided by BackendConformance

    # -- exit ----------------------------------------------------------------------------

    def _exit_script(self, case: str, tmp_path: Path) -> tuple[Any, Path]:
        target = tmp_path / "written"
        extra = [self.register_file] if self.register_file else []
        run = run_script(["-m", "anyexec.testing._exit_script", self.backend,
                          json.dumps(self.options), case, str(target), *extra],
                         timeout=self.script_timeout, grace=15.0)
        assert not run.hung, f"the script did not end by itself: {run.describe()}"
        assert run.returncode == 0, run.describe()
        assert not stray_output(run.stderr), run.describe()
        assert not run.leftovers, f"processes left behind: {run.describe()}"
        return run, target

    @pytest.mark.timeout(300)
    @pytest.mark.parametrize("case",
                             ["no-shutdown", "shutdown-nowait", "backend-shutdown-at-exit"])
    def test_submitted_work_finishes_before_the_interpreter_exits(
            self, case: str, tmp_path: Path) -> None:
        _run, target = self._exit_script(case, tmp_path)
        assert target.exists(), "a call submitted before the script ended never ran"
        assert target.read_text() == "done"

    @pytest.mark.timeout(300)
    def test_work_submitted_during_interpreter_exit_is_refused(self, tmp_path: Path) -> None:
        run, _target = self._exit_script("submit-at-exit", tmp_path)
        for what in ("submit", "map", "get_executor"):
            assert f"{what}: refused: ExecutorShutdownError" in run.stdout, run.describe()

    # -- futures -------------------------------------------------------------------------

    def test_wait_and_as_completed_work_on_its_futures(self, executor: anyexec.Executor) -> None:
        futures = [executor.submit(tasks.sleep_then_return, x, 0.05 * x) for x in range(4)]
        done, _ = concurrent.futures.wait(futures, timeout=120,
                                          return_when=concurrent.futures.FIRST_COMPLETED)
        assert done
        finished = [f.result() for f in concurrent.futures.as_completed(futures, timeout=120)]
        assert sorted(finished) == [0, 1, 2, 3]
        done, not_done = concurrent.futures.wait(futures, timeout=120)
        assert len(done) == 4
        assert not not_done

    def test_the_executor_lets_a_submitted_callable_go(self, executor: anyexec.Executor) -> None:
        holder = tasks.Holder(1_000_000)
        assert executor.submit(holder.size).result(timeout=120) == 1_000_000
        ref = weakref.ref(holder)
        del holder
        gc.collect()
        assert ref() is None, "the executor keeps the last submitted callable alive"

    def test_the_map_iterator_keeps_no_result_it_has_yielded(
            self, executor: anyexec.Executor) -> None:
        results = executor.map(tasks.Holder, [10, 20, 30, 40], chunksize=4)
        first = next(results)
        ref = weakref.ref(first)
        del first
        gc.collect()
        assert ref() is None, "the map iterator still holds a result it yielded"
        assert [h.size() for h in results] == [20, 30, 40]

    # -- the map iterator's life ---------------------------------------------------------

    def test_a_map_consumed_after_shutdown_with_work_left_raises_a_clear_error(self) -> None:
        ex = self.make_executor()
        results = ex.map(tasks.square, range(10_000), chunksize=1)
        assert next(results) == 0
        ex.shutdown(wait=True)
        with pytest.raises(anyexec.ExecutorShutdownError, match="was shut down while this map"):
            list(results)
        with pytest.raises(RuntimeError, match="after shutdown"):
            ex.submit(tasks.square, 2)

    def test_a_map_dropped_before_any_result_was_requested_warns(self) -> None:
        ex = self.make_executor()
        try:
            results = ex.map(tasks.square, range(1000))
            with pytest.warns(anyexec.AnyexecWarning, match="never ran"):
                del results
            closed = ex.map(tasks.square, range(1000))
            closed.close()
            del closed  # closed on purpose: no warning (pytest's filterwarnings would show it)
        finally:
            ex.shutdown(wait=True)

    def test_a_map_timeout_says_what_happened_to_running_tasks(self) -> None:
        ex = self.make_executor()
        try:
            if ex.hooks.runs_in_caller:
                pytest.skip("tasks run inside submit(): nothing runs when the timeout fires")
            results = ex.map(tasks.sleep_then_return, [0, 1], [3.0, 3.0], chunksize=1,
                             timeout=0.5)
            with pytest.raises(TimeoutError, match=r"timeout=0\.5") as info:
                list(results)
            message = str(info.value)
            # Never "cancelled" for a task that kept running: say what happened to each.
            assert "not finished in time were cancelled" not in message, message
            assert "could not be stopped" in message or "not started were cancelled" in message
        finally:
            ex.shutdown(wait=True)

    # -- crashes over chunked maps -------------------------------------------------------

    def test_a_crash_in_a_chunked_map_fails_only_its_item(self) -> None:
        ex = self.make_executor()
        try:
            if "recovers_from_worker_death" not in ex.capabilities:
                pytest.skip(f"backend {self.backend!r} does not declare "
                            "'recovers_from_worker_death'")
            for seconds in (0.0, 0.02):
                results = list(ex.map(tasks.exit_worker_after, range(20), [seconds] * 20,
                                      on_error="return"))
                failed = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
                assert failed == [3], f"items {failed} failed; only item 3 crashed its worker"
                assert isinstance(results[3], anyexec.WorkerCrashedError)
                assert "item 3" in str(results[3]), str(results[3])
                assert [r for i, r in enumerate(results) if i != 3] == [
                    i for i in range(20) if i != 3]
        finally:
            ex.shutdown(wait=True)

