"""joblib's ``Parallel`` and scikit-learn on anyexec backends via ``backend="anyexec"``."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import joblib
import pytest
from joblib.parallel import get_active_backend
from sklearn.datasets import load_iris
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.svm import SVC

import anyexec
import anyexec.integrations.joblib  # registers backend="anyexec"

# One real engine per kind: a local process pool, Ray, a Dask LocalCluster, and two plugins.
SPECS = ["processes", "ray", "dask", "loky", "mpi"]
GRID = {"C": [0.1, 1, 10], "gamma": ["scale", 0.1]}


@pytest.fixture(scope="module", params=SPECS)
def ex(request: pytest.FixtureRequest) -> Iterator[anyexec.Executor]:
    executor = anyexec.get_executor(request.param, max_workers=2)
    yield executor
    executor.shutdown(wait=True)


@pytest.fixture(scope="module")
def serial_scores() -> dict[str, object]:
    X, y = load_iris(return_X_y=True)
    search = GridSearchCV(SVC(), GRID, cv=3, n_jobs=1).fit(X, y)
    return {
        "cv": list(cross_val_score(SVC(), X, y, cv=5, n_jobs=1)),
        "grid": list(search.cv_results_["mean_test_score"]),
        "best": search.best_params_,
    }


def test_scikit_learn_scores_are_identical_to_serial(
        ex: anyexec.Executor, serial_scores: dict[str, object]) -> None:
    X, y = load_iris(return_X_y=True)
    with joblib.parallel_config(backend="anyexec", executor=ex):
        cv = list(cross_val_score(SVC(), X, y, cv=5, n_jobs=-1))
        search = GridSearchCV(SVC(), GRID, cv=3, n_jobs=-1).fit(X, y)
    assert cv == serial_scores["cv"]
    assert list(search.cv_results_["mean_test_score"]) == serial_scores["grid"]
    assert search.best_params_ == serial_scores["best"]


def test_parallel_calls_run_on_the_engine_workers(ex: anyexec.Executor) -> None:
    with joblib.parallel_config(backend="anyexec", executor=ex):
        pids = joblib.Parallel(n_jobs=-1)(joblib.delayed(os.getpid)() for _ in range(20))
    assert os.getpid() not in pids


def test_a_failing_call_raises_its_own_exception_naming_the_backend(
        ex: anyexec.Executor) -> None:
    def invert(x: int) -> float:
        return 1 / x

    with joblib.parallel_config(backend="anyexec", executor=ex), \
            pytest.raises(ZeroDivisionError) as info:
        joblib.Parallel(n_jobs=2)(joblib.delayed(invert)(i) for i in range(-3, 3))
    assert any(ex.backend in note for note in getattr(info.value, "__notes__", []))


def test_a_spec_creates_the_executor_and_reuses_it_across_parallel_calls() -> None:
    with joblib.parallel_config(backend="anyexec", spec="processes", max_workers=2):
        first = set(joblib.Parallel()(joblib.delayed(os.getpid)() for _ in range(8)))
        second = set(joblib.Parallel()(joblib.delayed(os.getpid)() for _ in range(8)))
    assert os.getpid() not in first
    # The same two worker processes served both calls (a new pool per call would add PIDs).
    assert len(first | second) <= 2


def test_the_executor_made_from_a_spec_is_shut_down_once_the_block_is_collected() -> None:
    with joblib.parallel_config(backend="anyexec", spec="processes", max_workers=1):
        joblib.Parallel()(joblib.delayed(abs)(-i) for i in range(3))
        ex = get_active_backend()[0].executor
    gc.collect()
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(abs, 1)


def test_a_one_worker_executor_still_runs_the_calls_on_its_worker() -> None:
    # joblib runs a call whose n_jobs comes to 1 in the caller; the backend must not say 1.
    with joblib.parallel_config(backend="anyexec", spec="processes", max_workers=1):
        pids = set(joblib.Parallel()(joblib.delayed(os.getpid)() for _ in range(4)))
    assert len(pids) == 1
    assert os.getpid() not in pids


def test_an_explicit_n_jobs_of_one_runs_here_as_joblib_documents() -> None:
    with joblib.parallel_config(backend="anyexec", spec="processes", max_workers=2):
        pids = joblib.Parallel(n_jobs=1)(joblib.delayed(os.getpid)() for _ in range(2))
    assert pids == [os.getpid()] * 2


def test_an_executor_passed_in_is_left_open() -> None:
    with anyexec.get_executor("threads", max_workers=2) as ex:
        with joblib.parallel_config(backend="anyexec", executor=ex):
            assert joblib.Parallel()(joblib.delayed(abs)(-i) for i in range(3)) == [0, 1, 2]
        assert list(ex.map(abs, [-1])) == [1]


def test_executor_and_spec_together_are_rejected() -> None:
    with anyexec.get_executor("threads") as ex, \
            pytest.raises(TypeError, match=r"either executor= .* or spec="):
        joblib.parallel_config(backend="anyexec", executor=ex, spec="processes")


def test_calls_requiring_shared_memory_run_in_this_process_as_joblib_decides() -> None:
    with joblib.parallel_config(backend="anyexec", spec="processes", max_workers=1):
        pids = joblib.Parallel(require="sharedmem")(joblib.delayed(os.getpid)() for _ in "ab")
    assert pids == [os.getpid()] * 2


def test_importing_anyexec_does_not_register_or_import_joblib() -> None:
    code = (
        "import sys, anyexec; "
        "assert 'joblib' not in sys.modules and 'anyexec.integrations.joblib' not in "
        "sys.modules, sorted(m for m in sys.modules if 'joblib' in m)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


SCRIPT = """
import joblib, os
import anyexec.integrations.joblib
from sklearn.datasets import load_iris
from sklearn.model_selection import cross_val_score
from sklearn.svm import SVC

X, y = load_iris(return_X_y=True)
with joblib.parallel_config(backend="anyexec", spec="processes", max_workers=2):
    print(cross_val_score(SVC(), X, y, cv=3).round(3).tolist(), flush=True)
"""


@pytest.mark.parametrize("attempt", range(2))
def test_a_script_using_a_spec_exits_by_itself_and_stops_its_workers(attempt: int) -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=90)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith("[")
    assert "Traceback" not in proc.stderr, proc.stderr


def _nested_sum(n: int) -> int:
    return sum(joblib.Parallel(n_jobs=2)(joblib.delayed(abs)(-j) for j in range(n)))


def test_a_parallel_call_inside_a_task_runs_on_the_worker() -> None:
    # joblib gives nested calls its threading backend inside the worker, as for its own
    # backends; the anyexec backend object is never needed there.
    with joblib.parallel_config(backend="anyexec", spec="processes", max_workers=2):
        assert joblib.Parallel()(joblib.delayed(_nested_sum)(n) for n in range(5)) == [
            0, 0, 1, 3, 6]


@pytest.fixture
def dask_scheduler_address() -> Iterator[str]:
    """A ``dask scheduler`` and one ``dask worker``, each its own process, on 127.0.0.1."""
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bin_dir = Path(sys.executable).parent
    procs = [subprocess.Popen([str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        procs.append(subprocess.Popen(
            [str(bin_dir / "dask"), "worker", f"tcp://127.0.0.1:{port}", "--nthreads", "2",
             "--host", "127.0.0.1", "--no-dashboard"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        yield f"dask://127.0.0.1:{port}"
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@pytest.mark.cluster
def test_a_spec_naming_a_running_dask_cluster_runs_the_search_there(
        dask_scheduler_address: str, serial_scores: dict[str, object]) -> None:
    X, y = load_iris(return_X_y=True)
    with joblib.parallel_config(backend="anyexec", spec=dask_scheduler_address):
        cv = list(cross_val_score(SVC(), X, y, cv=5, n_jobs=-1))
        pids = set(joblib.Parallel()(joblib.delayed(os.getpid)() for _ in range(8)))
        ex = get_active_backend()[0].executor
    gc.collect()  # the block's executor disconnects before the fixture stops the cluster
    assert repr(ex).endswith("shut down>")
    assert cv == serial_scores["cv"]
    assert os.getpid() not in pids
