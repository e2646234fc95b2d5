"""The public adapter toolkit ``anyexec.backends.support``: each piece, and a backend built on it
alone passing the conformance kit."""

from __future__ import annotations

import os
import pickle
import runpy
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Literal

import pytest

import anyexec
from anyexec.backends import support
from anyexec.testing import BackendConformance, tasks

# Registered from its file, as the kit's fresh interpreters register it (register_file).
DEMO = str(Path(__file__).with_name("toolkit_demo.py"))
StdlibPool: Any = runpy.run_path(DEMO)["StdlibPool"]


class TestBackendOnTheToolkit(BackendConformance):
    backend = "toolkit-demo"
    options = {"max_workers": 2}
    register_file = DEMO


# -- the pieces ------------------------------------------------------------------------------

def test_succeed_and_fail_leave_a_cancelled_future_alone() -> None:
    future: Future[int] = Future()
    assert future.cancel()
    assert not support.succeed(future, 1)
    assert not support.fail(future, ValueError())
    fresh: Future[int] = Future()
    assert support.succeed(fresh, 1)
    assert fresh.result() == 1
    assert not support.fail(fresh, ValueError())  # settled once only


def test_settle_from_copies_value_exception_and_cancellation() -> None:
    makers = (lambda f: f.set_result(3), lambda f: f.set_exception(KeyError("k")), Future.cancel)
    for make in makers:
        done: Future[int] = Future()
        make(done)
        copy: Future[int] = Future()
        support.settle_from(copy, done)
        assert copy.cancelled() == done.cancelled()
        if not done.cancelled():
            assert repr(copy.exception()) == repr(done.exception())


def test_call_queue_skips_cancelled_calls_and_refuses_after_close() -> None:
    queue = support.CallQueue()
    first = queue.put(len, ("ab",), {})
    second = queue.put(len, ("abc",), {})
    assert first.cancel()
    taken = queue.take()
    assert taken is second
    assert taken.running()
    assert not taken.cancel()
    assert taken.invoke() == 3
    assert queue.take() is None
    waiting = queue.put(len, ("",), {})
    assert queue.close(cancel_queued=True) == [waiting]
    assert waiting.cancelled()
    with pytest.raises(RuntimeError, match=support.SHUTDOWN_MESSAGE):
        queue.put(len, ("",), {})


def test_call_queue_take_waits_for_a_call_or_the_close() -> None:
    queue = support.CallQueue()
    got: list[Any] = []
    taker = threading.Thread(target=lambda: got.append(queue.take(wait=True)))
    taker.start()
    time.sleep(0.05)
    call = queue.put(abs, (-1,), {})
    taker.join(5)
    assert got == [call]
    closer = threading.Thread(target=lambda: got.append(queue.take(wait=True)))
    closer.start()
    queue.close()
    closer.join(5)
    assert got[-1] is None


def test_fail_queued_fails_every_waiting_call() -> None:
    queue = support.CallQueue()
    calls = [queue.put(abs, (i,), {}) for i in range(3)]
    queue.fail_queued(OSError("engine gone"))
    assert all(isinstance(c.exception(), OSError) for c in calls)


def test_released_call_holds_no_user_data() -> None:
    call = support.Call(len, (b"x" * 10,), {"k": 1})
    call.release()
    assert (call.fn, call.args, call.kwargs) == (None, (), {})
    with pytest.raises(RuntimeError, match="released"):
        call.invoke()


def test_rerun_alone_blames_only_the_call_that_dies_alone() -> None:
    triage: support.RerunAlone[str] = support.RerunAlone()
    assert not triage.lost("a")  # both were running: suspects
    assert not triage.lost("b")
    assert triage.blocking
    assert triage.next_alone(busy=True) is None  # wait for the others to finish first
    assert triage.next_alone(busy=False) == "a"
    assert triage.next_alone(busy=False) is None  # one at a time
    triage.returned("a")  # came back: innocent
    assert triage.next_alone(busy=False) == "b"
    assert triage.lost("b")  # died alone: the culprit
    assert not triage.blocking


def test_pack_and_unpack_outcome_carry_value_error_and_pid() -> None:
    assert support.unpack_outcome(support.pack_outcome(divmod, (7, 2), {})) == (
        True, (3, 1), os.getpid())
    ok, error, _pid = support.unpack_outcome(support.pack_outcome(divmod, (1, 0), {}))
    assert not ok
    assert isinstance(error, ZeroDivisionError)
    ok, value, _pid = support.unpack_outcome(support.pack_outcome(lambda: lambda: 5, (), {}))
    assert ok
    assert value() == 5  # a lambda result travels by cloudpickle


def test_pack_outcome_reports_what_cannot_be_sent_back() -> None:
    ok, error, _pid = support.unpack_outcome(support.pack_outcome(threading.Lock, (), {}))
    assert not ok
    assert isinstance(error, anyexec.SerializationError)
    assert "could not be pickled" in str(error)
    ok, error, pid = support.unpack_outcome(b"not a pickle")
    assert (ok, type(error), pid) == (False, anyexec.SerializationError, None)


def test_worker_marks_name_the_process_running_a_call() -> None:
    marks = support.WorkerMarks("test")
    with support.running(marks.path, 7):
        assert marks.pid_of(7) == os.getpid()
        assert marks.pids() == {os.getpid()}
    assert marks.pid_of(7) is None
    path = marks.path
    marks.remove()
    assert not os.path.exists(path)


def test_marks_survive_the_worker_that_dies_holding_them() -> None:
    marks = support.WorkerMarks("test")
    code = (f"import os\nfrom anyexec.backends.support import running\n"
            f"with running({marks.path!r}, 3):\n    os._exit(1)\n")
    child = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert child.returncode == 1
    pid = marks.pid_of(3, forget=True)
    assert pid is not None
    assert not support.alive(pid)
    assert marks.pid_of(3) is None  # forgotten
    marks.remove()


def test_crash_error_says_which_worker_and_the_likely_causes() -> None:
    error = support.crash_error(pid=123, detail=OSError("pool\nbroke"), rerun_alone=True)
    assert isinstance(error, anyexec.WorkerCrashedError)
    assert error.item_specific
    text = str(error)
    for part in ("worker process 123", "alone", support.LIKELY_CAUSES):
        assert part in text
    assert "OSError: pool broke" in text
    assert not support.crash_error(item_specific=False).item_specific


Mode = Literal["fast", "safe"]


def test_option_checks_say_what_is_accepted_and_where_it_came_from() -> None:
    assert support.worker_count(None, origin="x", default=3) == 3
    assert support.worker_count(2, origin="x") == 2
    with pytest.raises(ValueError, match=r"max_workers.*from the demo"):
        support.worker_count(0, origin="the demo")
    assert support.check_choice("mode", "safe", Mode, origin="x") == "safe"
    expected = r"mode must be one of 'fast', 'safe' \(from x\), got 'slow'"
    with pytest.raises(ValueError, match=expected):
        support.check_choice("mode", "slow", Mode, origin="x")
    assert support.check_int("n", None, origin="x", optional=True) is None
    with pytest.raises(TypeError, match="n must be an int"):
        support.check_int("n", True, origin="x")
    with pytest.raises(ValueError, match="n must be >= 1"):
        support.check_int("n", 0, origin="x", minimum=1)
    assert support.check_amount("cpus", 2, origin="x") == 2.0
    with pytest.raises(ValueError, match="cpus must be >= 0"):
        support.check_amount("cpus", -1, origin="x")
    with pytest.raises(TypeError, match="a number > 0"):
        support.check_amount("timeout", float("nan"), origin="x", positive=True)
    assert support.check_amounts("resources", {"GPU": 1}, origin="x") == {"GPU": 1.0}
    with pytest.raises(ValueError, match="resource names to amounts"):
        support.check_amounts("resources", ["GPU"], origin="x")


# -- the PoolBackend machinery ---------------------------------------------------------------

def test_pool_backend_keeps_calls_beyond_the_window_cancellable() -> None:
    backend = StdlibPool(max_workers=1)
    try:
        futures = [backend.submit(time.sleep, 0.3) for _ in range(6)]
        assert not futures[0].cancel()  # handed to the pool, and running there
        assert futures[5].cancel()  # still waiting in the backend
        assert [f.result(30) for f in futures[:5]] == [None] * 5
    finally:
        backend.shutdown()


def test_pool_backend_fails_only_the_call_that_crashes_alone() -> None:
    backend = StdlibPool(max_workers=2)
    try:
        futures = [backend.submit(tasks.exit_worker, i, 3) for i in range(8)]
        outcomes = [f.exception(60) for f in futures]
        crashed = [i for i, exc in enumerate(outcomes) if exc is not None]
        assert crashed == [3], outcomes
        assert isinstance(outcomes[3], anyexec.WorkerCrashedError)
        assert "also when the task was run again alone" in str(outcomes[3])
        assert [f.result() for i, f in enumerate(futures) if i != 3] == [0, 1, 2, 4, 5, 6, 7]
    finally:
        backend.shutdown()


def test_pool_backend_shutdown_cancels_waiting_calls_and_refuses_new_ones() -> None:
    backend = StdlibPool(max_workers=1)
    futures = [backend.submit(time.sleep, 0.2) for _ in range(5)]
    backend.shutdown(wait=True, cancel_futures=True)
    assert futures[-1].cancelled()
    assert all(f.done() for f in futures)
    with pytest.raises(RuntimeError, match=support.SHUTDOWN_MESSAGE):
        backend.submit(abs, 1)


def test_pool_backend_terminate_fails_waiting_calls() -> None:
    backend = StdlibPool(max_workers=1)
    futures = [backend.submit(time.sleep, 0.5) for _ in range(4)]
    backend.terminate()
    assert "terminated before this call ran" in str(futures[-1].exception(30))


def test_support_imports_no_engine_and_anyexec_does_not_import_support() -> None:
    code = ("import sys, anyexec\nassert 'anyexec.backends.support' not in sys.modules\n"
            "import anyexec.backends.support\n"
            "heavy = {'ray', 'dask', 'joblib', 'loky', 'pathos', 'cloudpickle', 'numpy'}\n"
            "print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout


def test_toolkit_objects_pickle_where_workers_need_them() -> None:
    marks = support.WorkerMarks("test")
    assert pickle.loads(pickle.dumps(marks.path)) == marks.path
    marks.remove()
