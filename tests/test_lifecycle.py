"""Defined behaviour around shutdown and threads, on the contract every backend shares."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

import anyexec
from anyexec._registry import registry
from anyexec.testing import tasks


class FailingShutdown(ThreadPoolExecutor):
    """A backend whose shutdown raises, as a buggy plugin's might."""

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        super().shutdown(wait=wait, cancel_futures=cancel_futures)
        raise OSError("engine refused to stop")


@pytest.fixture
def failing_backend() -> Iterator[str]:
    anyexec.register_backend("failing-shutdown", FailingShutdown)
    yield "failing-shutdown"
    registry.unregister("failing-shutdown")


def test_an_exception_from_the_backends_shutdown_propagates_once(failing_backend: str) -> None:
    ex = anyexec.get_executor(failing_backend)
    assert ex.submit(tasks.square, 2).result() == 4
    with pytest.raises(OSError, match="engine refused to stop"):
        ex.shutdown()
    ex.shutdown()  # already shut down: nothing happens, nothing raises
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(tasks.square, 2)


def test_shutdown_with_cancel_futures_cancels_queued_submits() -> None:
    ex = anyexec.get_executor("threads", max_workers=1)
    gate = threading.Event()
    first = ex.submit(gate.wait, 10)
    queued = [ex.submit(tasks.square, i) for i in range(5)]
    ex.shutdown(wait=False, cancel_futures=True)
    gate.set()
    assert first.result(timeout=10) is True
    assert all(f.cancelled() for f in queued)


def test_a_map_iterator_can_be_consumed_from_another_thread() -> None:
    with anyexec.get_executor("processes", max_workers=2) as ex:
        results = ex.map(tasks.square, range(100))
        collected: list[int] = []
        worker = threading.Thread(target=lambda: collected.extend(results))
        worker.start()
        worker.join(timeout=60)
        assert collected == [x * x for x in range(100)]


def test_consuming_one_iterator_from_two_threads_at_once_is_refused() -> None:
    with anyexec.get_executor("threads", max_workers=2) as ex:
        results = ex.map(tasks.sleep_then_return, range(4), [0.3] * 4, chunksize=1)
        errors: list[BaseException] = []
        started = threading.Event()

        def consume() -> None:
            started.set()
            try:
                list(results)
            except ValueError as exc:
                errors.append(exc)

        first = threading.Thread(target=consume)
        first.start()
        started.wait()
        second = threading.Thread(target=consume)
        second.start()
        first.join(timeout=30)
        second.join(timeout=30)
        assert any("already executing" in str(e) for e in errors)


def test_cancelling_a_submitted_future_before_it_starts_prevents_the_call() -> None:
    with anyexec.get_executor("threads", max_workers=1) as ex:
        gate = threading.Event()
        blocker = ex.submit(gate.wait, 10)
        later: Future[Any] = ex.submit(tasks.square, 7)
        assert later.cancel()
        gate.set()
        assert blocker.result(timeout=10) is True
        assert later.cancelled()


def test_a_future_of_a_started_call_cannot_be_cancelled() -> None:
    with anyexec.get_executor("threads", max_workers=1) as ex:
        gate = threading.Event()
        running = ex.submit(gate.wait, 10)
        while not running.running() and not running.done():
            threading.Event().wait(0.01)
        assert not running.cancel()
        gate.set()
        assert running.result(timeout=10) is True


def test_a_function_the_workers_cannot_import_is_reported_as_such(tmp_path: Any) -> None:
    import sys

    module = tmp_path / "only_in_the_caller.py"
    module.write_text("def double(x):\n    return 2 * x\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import only_in_the_caller  # type: ignore[import-not-found]

        # The caller still has the module, so the function is pickled by reference; fresh
        # (spawned) workers look for the file and it is gone.
        module.unlink()
        with anyexec.get_executor("processes", max_workers=1, start_method="spawn") as ex:
            results = list(ex.map(only_in_the_caller.double, [1, 2], on_error="return"))
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("only_in_the_caller", None)
    assert len(results) == 2
    for failure in results:
        assert isinstance(failure, anyexec.SerializationError), failure
        assert "could not load the function" in str(failure)
        assert "only_in_the_caller" in str(failure)


@pytest.mark.parametrize("backend", ["serial", "threads"])
def test_a_closed_map_iterator_yields_nothing_more_like_a_closed_generator(backend: str) -> None:
    with anyexec.get_executor(backend, max_workers=2) as ex:
        results = ex.map(tasks.square, range(1000), chunksize=100)
        assert next(results) == 0  # in the middle of the first chunk
        results.close()
        assert list(results) == []
        results.close()  # a second close does nothing


def _children() -> set[int]:
    import psutil

    return {child.pid for child in psutil.Process().children(recursive=True)
            if child.status() != psutil.STATUS_ZOMBIE}


def test_a_late_map_iterator_starts_no_new_pool_after_shutdown() -> None:
    before = _children()
    ex = anyexec.get_executor("processes", max_workers=2)
    results = ex.map(tasks.square, range(10_000), chunksize=1)
    assert next(results) == 0
    ex.shutdown(wait=True)
    with pytest.raises(anyexec.ExecutorShutdownError, match="Consume the map's results"):
        list(results)
    assert _children() <= before, "a process pool was started again after shutdown()"


def test_a_map_timeout_on_processes_does_not_claim_to_cancel_a_running_item() -> None:
    with anyexec.get_executor("processes", max_workers=2) as ex:
        results = ex.map(tasks.sleep_then_return, [0], [2.0], timeout=0.3)
        with pytest.raises(TimeoutError) as info:
            list(results)
    message = str(info.value)
    assert "1 task(s) already running could not be stopped" in message, message
    assert "were cancelled" not in message, message


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_an_idle_executor_dropped_without_shutdown_is_collected(backend: str) -> None:
    import gc
    import weakref

    ex = anyexec.get_executor(backend, max_workers=2)
    assert ex.submit(tasks.square, 2).result(timeout=60) == 4
    assert list(ex.map(tasks.square, range(10))) == [x * x for x in range(10)]
    ref = weakref.ref(ex)
    del ex
    gc.collect()
    assert ref() is None, "the exit hook's registry keeps an idle executor alive"
