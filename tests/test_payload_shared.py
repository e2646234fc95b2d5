"""A big function payload is sent once per worker through shared memory, and cleaned up.

Issue 12 item 1 (once per worker, not once per task; arrays not copied per worker) and issue 13
item 3 (the executor does not keep the user's function, nor what it carries, alive).
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import weakref
from functools import partial
from pathlib import Path

import pytest

import anyexec
from anyexec._shm import THRESHOLD, available
from anyexec.testing import _payload_tasks as pt
from anyexec.testing import tasks

pytestmark = pytest.mark.skipif(not available(), reason="no POSIX shared memory here")

PROCESS_BACKENDS = [
    ("processes", {"max_workers": 2}),
    ("joblib", {"max_workers": 2}),
    ("pathos", {"max_workers": 2}),
    ("loky", {"max_workers": 2}),
]
IDS = [name for name, _ in PROCESS_BACKENDS]
SHM = Path("/dev/shm")


def segment_exists(name: str) -> bool:
    return (SHM / name).exists() if SHM.is_dir() else True


def shared_name(ex: anyexec.Executor) -> str:
    """The segment of the executor's current payload (white-box: which segment to watch)."""
    last = ex._last_payload
    assert last is not None
    assert last[1].shared is not None
    return last[1].shared.name


@pytest.mark.parametrize(("backend", "options"), PROCESS_BACKENDS, ids=IDS)
def test_big_payload_is_written_once_and_tasks_carry_only_its_name(
    backend: str, options: dict[str, int]
) -> None:
    blob = bytes(range(256)) * (4 * THRESHOLD // 256)
    fn = partial(pt.byte_at, blob)
    with anyexec.get_executor(backend, **options) as ex:
        assert list(ex.map(fn, range(300))) == [blob[i] for i in range(300)]
        name = shared_name(ex)
        assert segment_exists(name)
        # What each task carries for the function is a few hundred bytes, not 4 MB.
        assert len(pickle.dumps(ex._last_payload[1])) < 2_000  # type: ignore[index]
        # The same function in a later map or submit reuses the segment.
        assert list(ex.map(fn, [5, 6], chunksize=1)) == [5, 6]
        assert ex.submit(fn, 7).result() == 7
        assert shared_name(ex) == name
    # Shut down: the segment is removed although the caller still holds the function.
    assert not segment_exists(name)
    assert fn(1) == 1


def test_small_payloads_stay_inside_the_task() -> None:
    small = b"x" * 1000
    fn = partial(pt.byte_at, small)
    with anyexec.get_executor("processes", max_workers=2) as ex:
        assert list(ex.map(fn, range(3))) == [120] * 3
        last = ex._last_payload
        assert last is not None
        assert last[1].shared is None


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
@pytest.mark.parametrize(("backend", "options"), PROCESS_BACKENDS, ids=IDS)
def test_numpy_array_is_mapped_in_the_workers_not_copied(
    backend: str, options: dict[str, int]
) -> None:
    np = pytest.importorskip("numpy")
    array = np.arange(4_000_000, dtype=np.float64)  # 32 MB
    with anyexec.get_executor(backend, **options) as ex:
        reports = list(ex.map(partial(pt.array_residency, array), range(6), chunksize=1))
    for report in reports:
        assert report["sum"] == float(array.sum())
        # The array views the mapping: its 32 MB are resident as shared memory.
        assert not report["owns_data"]
        assert report["RssShmem"] >= array.nbytes * 0.9, report
        assert report["writeable"]


def test_a_task_writing_to_its_array_changes_only_its_own_copy() -> None:
    np = pytest.importorskip("numpy")
    array = np.zeros(1_000_000)
    with anyexec.get_executor("processes", max_workers=2) as ex:
        assert list(ex.map(partial(pt.write_into, array), range(4), chunksize=1)) == [12345.0] * 4
        # Each worker wrote to its own pages: the caller's array is untouched.
        assert array[0] == 0.0
        # And workers that did not write still read the original.
        other = partial(pt.first_value, array)
        assert list(ex.map(other, range(2))) == [0.0, 0.0]


def test_replacement_worker_maps_the_payload_without_failing_the_task() -> None:
    blob = bytes(2 * THRESHOLD)
    with anyexec.get_executor("processes", max_workers=2) as ex:
        crashing = partial(pt.exit_on_byte, blob)
        with pytest.raises(anyexec.WorkerCrashedError):
            list(ex.map(crashing, range(6), chunksize=1))
        # Fresh workers, same function object: they map the same segment.
        assert list(ex.map(crashing, [0, 1, 2, 4, 5], chunksize=1)) == [0] * 5


def test_segment_is_removed_after_an_exception_once_the_function_is_dropped() -> None:
    blob = bytes(2 * THRESHOLD)
    with anyexec.get_executor("processes", max_workers=2) as ex:
        fn = partial(pt.raise_on_byte, blob)
        with pytest.raises(ValueError, match="item 3 is bad"):
            list(ex.map(fn, range(10), chunksize=1))
        name = shared_name(ex)
        assert segment_exists(name)
        del fn
        gc.collect()
        # Dropped by the user: the executor lets go of the function, and the segment goes
        # once the tasks still running beside the failed one are done.
        assert ex._last_payload is None
        deadline = time.monotonic() + 60
        while segment_exists(name) and time.monotonic() < deadline:
            time.sleep(0.05)
            gc.collect()
        assert not segment_exists(name)
        assert list(ex.map(tasks.square, range(3))) == [0, 1, 4]


@pytest.mark.parametrize(("backend", "options"),
                         [*PROCESS_BACKENDS, ("threads", {"max_workers": 2}), ("serial", {}),
                          pytest.param("ray", {"max_workers": 2}, marks=pytest.mark.cluster),
                          pytest.param("dask", {"max_workers": 2}, marks=pytest.mark.cluster)],
                         ids=[*IDS, "threads", "serial", "ray", "dask"])
def test_executor_does_not_keep_the_last_function_alive(
    backend: str, options: dict[str, int]
) -> None:
    with anyexec.get_executor(backend, **options) as ex:
        model = pt.Model(2 * THRESHOLD)
        alive = weakref.ref(model)
        assert ex.submit(model.predict, 1).result() == 1
        assert list(ex.map(model.predict, range(3))) == [0, 1, 2]
        held = partial(pt.Model.predict, model)
        assert list(ex.map(held, range(3))) == [0, 1, 2]
        del model, held
        gc.collect()
        assert alive() is None


def run_script(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, check=False)


SCRIPT_HEAD = """
    import os, sys, signal
    from functools import partial
    import anyexec
    from anyexec.testing import _payload_tasks as pt

    def segment(ex):
        return ex._last_payload[1].shared.name
"""


@pytest.mark.parametrize("ending", ["shutdown", "no-shutdown", "uncaught-error", "ctrl-c"])
def test_no_segment_is_left_behind_when_the_program_ends(ending: str) -> None:
    body = {
        "shutdown": """
            ex.shutdown()
        """,
        "no-shutdown": """
            pass
        """,
        "uncaught-error": """
            list(ex.map(partial(pt.raise_on_byte, blob), range(10), chunksize=1))
        """,
        "ctrl-c": """
            os.kill(os.getpid(), signal.SIGINT)
        """,
    }[ending]
    code = SCRIPT_HEAD + f"""
    blob = bytes({2 * THRESHOLD})
    ex = anyexec.get_executor("processes", max_workers=2)
    fn = partial(pt.byte_at, blob)
    assert list(ex.map(fn, range(20))) == [0] * 20
    print(segment(ex), flush=True)
    """ + textwrap.indent(textwrap.dedent(body), "    ")
    for _run in range(2):
        result = run_script(code)
        name = result.stdout.split()[0]
        expected_code = {"shutdown": 0, "no-shutdown": 0}.get(ending)
        if expected_code is not None:
            assert result.returncode == expected_code, result.stderr
            assert "Traceback" not in result.stderr, result.stderr
        else:
            assert result.returncode != 0
        assert "leaked shared_memory" not in result.stderr, result.stderr
        assert not segment_exists(name), (ending, result.stderr)


def test_a_killed_caller_leaves_no_segment_behind() -> None:
    """SIGKILL runs no Python code: Python's resource tracker removes the segment once every
    process holding its pipe (the caller and the workers, stopped here by PID) is gone."""
    code = SCRIPT_HEAD + f"""
    import multiprocessing
    blob = bytes({2 * THRESHOLD})
    ex = anyexec.get_executor("processes", max_workers=2)
    fn = partial(pt.byte_at, blob)
    assert list(ex.map(fn, range(20))) == [0] * 20
    workers = [p.pid for p in multiprocessing.active_children()]
    print(segment(ex), *workers, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
    with subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as proc:
        assert proc.stdout is not None
        name, *workers = proc.stdout.readline().split()
        assert proc.wait(timeout=60) == -signal.SIGKILL
        for pid in map(int, workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while segment_exists(name) and time.monotonic() < deadline:
            time.sleep(0.1)
    assert not segment_exists(name)


@pytest.mark.cluster
@pytest.mark.parametrize(("backend", "options"),
                         [("ray", {}), ("dask", {"processes": False})], ids=["ray", "dask"])
def test_engines_with_a_store_get_big_payloads_out_of_band(
    backend: str, options: dict[str, bool]
) -> None:
    """Ray and Dask keep the payload in their own store (``share``); its pickle and array
    buffers travel as protocol-5 out-of-band buffers, not inside every task. (Dask's own
    local process cluster uses shared memory instead; see test_backend_dask.py.)"""
    np = pytest.importorskip("numpy")
    array = np.arange(2_000_000, dtype=np.float64)
    blob = bytes(range(256)) * (THRESHOLD // 128)
    fn = partial(pt.array_residency, array)
    with anyexec.get_executor(backend, max_workers=2, **options) as ex:
        assert list(ex.map(partial(pt.byte_at, blob), range(300, 304))) == [44, 45, 46, 47]
        reports = list(ex.map(fn, range(4), chunksize=1))
        payload = ex._last_payload[1]  # type: ignore[index]
        stream: list[pickle.PickleBuffer] = []
        head = pickle.dumps(payload, protocol=5, buffer_callback=stream.append)
        assert len(head) < 2_000
        assert sum(buffer.raw().nbytes for buffer in stream) >= array.nbytes
    assert {r["sum"] for r in reports} == {float(array.sum())}
    assert not any(r["owns_data"] for r in reports)
    if backend == "ray":
        # A view of Ray's shared-memory object store: resident as shared memory.
        assert all(r["RssShmem"] >= array.nbytes * 0.9 for r in reports), reports


@pytest.mark.parametrize(("backend", "options"), PROCESS_BACKENDS, ids=IDS)
def test_workers_do_not_keep_the_big_functions_of_earlier_maps(
    backend: str, options: dict[str, int]
) -> None:
    with anyexec.get_executor(backend, **{**options, "max_workers": 1}) as ex:
        # Start the worker first: one forked later would inherit the caller's model too.
        # (loky's workers outlive executors: one may still cache an earlier test's model.)
        ex.submit(pt.live_models).result()
        for _map in range(4):
            model = pt.Model(2 * THRESHOLD)
            assert list(ex.map(model.predict, range(3))) == [0, 1, 2]
            del model
        # Only the last map's model is still cached in the worker.
        assert ex.submit(pt.live_models).result() <= 1


@pytest.mark.parametrize("backend", ["processes", "loky"])
def test_ctrl_c_during_a_map_leaves_no_segment_and_ends_promptly(backend: str) -> None:
    code = SCRIPT_HEAD + f"""
    import threading, time
    blob = bytes({2 * THRESHOLD})
    fn = partial(pt.slow_byte_at, blob)
    with anyexec.get_executor({backend!r}, max_workers=2) as ex:
        results = ex.map(fn, range(200), chunksize=1)
        print(segment(ex), flush=True)
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
        for _ in results:
            pass
    """
    for _run in range(3):
        result = run_script(code)
        assert result.returncode != 0
        assert "KeyboardInterrupt" in result.stderr
        name = result.stdout.split()[0]
        assert "leaked shared_memory" not in result.stderr, result.stderr
        assert not segment_exists(name), result.stderr
