"""Conformance checks for the executor-level per-worker set-up (``initializer``/``initargs``).

A mixin of :class:`anyexec.testing.BackendConformance`; it uses only ``make_executor``,
``require`` and ``backend``, so it runs on any backend or plugin without extra fixtures.
"""

from __future__ import annotations

import collections
import logging
import socket
import traceback
import uuid
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

import anyexec
from anyexec.testing import _setup_tasks as setup_tasks
from anyexec.testing import tasks

__all__ = ["WorkerSetupConformance"]

# Bound on each map of these checks: a hang becomes a failure naming the check, not a stall.
_BOUND = 120.0


def _text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


class _Collect(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.INFO)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class WorkerSetupConformance:
    """``initializer=``/``initargs=`` behave as in ``concurrent.futures`` on every backend."""

    backend: ClassVar[str]

    if TYPE_CHECKING:  # provided by BackendConformance
        def make_executor(self, **overrides: Any) -> anyexec.Executor: ...

        def require(self, executor: anyexec.Executor, capability: str) -> None: ...

    def _with_initializer(self, key: str, **overrides: Any) -> anyexec.Executor:
        return self.make_executor(initializer=setup_tasks.remember, initargs=(key,), **overrides)

    def test_initializer_runs_before_the_first_task_of_each_worker(self) -> None:
        key = uuid.uuid4().hex
        ex = self._with_initializer(key)
        try:
            seen = list(ex.map(setup_tasks.runs_seen, [key] * 40, chunksize=1, timeout=_BOUND))
            seen.append(ex.submit(setup_tasks.runs_seen, key).result(timeout=_BOUND))
        finally:
            ex.shutdown(wait=True)
        # Every task found the initializer already run where it ran.
        assert all(runs >= 1 for _pid, runs in seen), seen
        if "isolated" in ex.capabilities:
            # Once per worker process, not once per task.
            assert {runs for _pid, runs in seen} == {1}, seen
        else:
            # In the caller's process: once per worker thread (once on serial).
            assert max(runs for _pid, runs in seen) <= ex.max_workers, seen

    def test_initializer_is_not_run_per_task(self) -> None:
        key = uuid.uuid4().hex
        ex = self._with_initializer(key)
        try:
            seen = list(ex.map(setup_tasks.runs_seen, [key] * 60, chunksize=1, timeout=_BOUND))
        finally:
            ex.shutdown(wait=True)
        per_worker: dict[int, int] = collections.defaultdict(int)
        for pid, runs in seen:
            per_worker[pid] = max(per_worker[pid], runs)
        assert sum(per_worker.values()) < len(seen), seen

    def test_raising_initializer_fails_every_call_with_a_clear_error(self) -> None:
        ex = self.make_executor(initializer=setup_tasks.refuse_to_start,
                                initargs=("weights.bin is missing",))
        try:
            with pytest.raises(anyexec.WorkerInitializerError) as info:
                list(ex.map(tasks.square, range(10), timeout=_BOUND))
            message = str(info.value)
            assert "refuse_to_start" in message
            assert "LookupError: cannot load the model: weights.bin is missing" in message
            # The initializer's own traceback comes with it, down to the raising line.
            assert 'raise LookupError(f"cannot load the model: {reason}")' in _text(info.value)
            # Later calls fail the same way, at once: no hang, no respawn loop.
            for _attempt in range(2):
                future = ex.submit(tasks.square, 3)
                with pytest.raises(anyexec.WorkerInitializerError, match="refuse_to_start"):
                    future.result(timeout=_BOUND)
            with pytest.raises(anyexec.WorkerInitializerError):
                list(ex.map(tasks.square, range(10), timeout=_BOUND))
        finally:
            ex.shutdown(wait=True)

    def test_replacement_worker_runs_the_initializer_again(self) -> None:
        key = uuid.uuid4().hex
        ex = self._with_initializer(key)
        try:
            self.require(ex, "recovers_from_worker_death")
            with pytest.raises(anyexec.WorkerCrashedError):
                list(ex.map(tasks.exit_worker, range(6), chunksize=1, timeout=_BOUND))
            seen = list(ex.map(setup_tasks.runs_seen, [key] * 20, chunksize=1, timeout=_BOUND))
        finally:
            ex.shutdown(wait=True)
        assert {runs for _pid, runs in seen} == {1}, seen

    def test_bad_initializer_options_are_refused_at_creation(self) -> None:
        with pytest.raises(TypeError, match="initializer must be a callable"):
            self.make_executor(initializer="load_model")
        with pytest.raises(TypeError, match=r"initargs must be a tuple.*initargs=\(value,\)"):
            self.make_executor(initializer=setup_tasks.remember, initargs="key")
        with pytest.raises(TypeError, match="initargs given without an initializer"):
            self.make_executor(initargs=(1,))

    def test_forward_logs_reaches_the_callers_handlers(self) -> None:
        records: list[logging.LogRecord] = []
        handler = _Collect(records)
        logger = logging.getLogger("anyexec.kit.forwarded")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        ex = self.make_executor(forward_logs=True)
        try:
            assert list(ex.map(setup_tasks.log_and_return, range(6), chunksize=1,
                               timeout=_BOUND)) == list(range(6))
        finally:
            ex.shutdown(wait=True)
            logger.removeHandler(handler)
            logger.setLevel(logging.NOTSET)
        infos = [r for r in records if r.levelno == logging.INFO]
        assert sorted(r.getMessage().split(" on ")[0] for r in infos) == [
            f"item {x}" for x in range(6)]
        for record in infos:
            # Which worker sent it: the record carries the PID of the process that logged.
            assert record.process == int(record.getMessage().split(" on ")[1])
            assert record.name == "anyexec.kit.forwarded"
        [warning] = [r for r in records if r.levelno == logging.WARNING]
        assert warning.getMessage() == "item 2 had a problem"
        text = warning.exc_text or logging.Formatter().formatException(
            warning.exc_info)  # type: ignore[arg-type]
        assert "KeyError: 'missing'" in text
        if "isolated" in ex.capabilities:
            host = socket.gethostname()
            assert all(getattr(r, "anyexec_worker", None) == f"pid {r.process} on {host}"
                       for r in records)
