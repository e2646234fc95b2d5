"""One rule for the BLAS/OpenMP threads inside workers (issue 12 item 3).

Read inside real workers: every process backend sets the common thread variables to
``inner_threads``, by default the CPUs shared out between the workers (at least 1), so
N workers do not each start one native thread per core.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

import anyexec
from anyexec._worker_setup import THREAD_VARIABLES
from anyexec.testing import _setup_tasks as setup_tasks

PROCESS_BACKENDS = [
    ("processes", {}),
    ("processes", {"start_method": "spawn"}),
    ("joblib", {}),
    ("pathos", {}),
    ("loky", {}),
]
IDS = ["processes", "processes-spawn", "joblib", "pathos", "loky"]


def variables_in_workers(backend: str, **options: Any) -> list[dict[str, str | None]]:
    with anyexec.get_executor(backend, **options) as ex:
        return list(ex.map(setup_tasks.thread_variables, range(8), chunksize=1))


@pytest.mark.parametrize(("backend", "options"), PROCESS_BACKENDS, ids=IDS)
def test_default_shares_the_cpus_between_the_workers(backend: str,
                                                      options: dict[str, Any]) -> None:
    for workers in (1, 2):
        expected = str(max(1, (os.cpu_count() or 1) // workers))
        for seen in variables_in_workers(backend, max_workers=workers, **options):
            assert seen == dict.fromkeys(THREAD_VARIABLES, expected), (workers, seen)


@pytest.mark.parametrize(("backend", "options"), PROCESS_BACKENDS, ids=IDS)
def test_explicit_inner_threads_is_set_in_every_worker(backend: str,
                                                       options: dict[str, Any]) -> None:
    for seen in variables_in_workers(backend, max_workers=2, inner_threads=3, **options):
        assert seen == dict.fromkeys(THREAD_VARIABLES, "3"), seen


def test_inner_threads_in_a_spec_string() -> None:
    seen = variables_in_workers("processes?max_workers=2&inner_threads=5")
    assert {v["OMP_NUM_THREADS"] for v in seen} == {"5"}


@pytest.mark.cluster
@pytest.mark.parametrize("backend", ["ray", "dask"])
def test_engines_get_the_same_rule(backend: str) -> None:
    expected = str(max(1, (os.cpu_count() or 1) // 2))
    for seen in variables_in_workers(backend, max_workers=2):
        assert seen == dict.fromkeys(THREAD_VARIABLES, expected), seen


@pytest.mark.parametrize("backend", ["threads", "serial"])
def test_in_process_backends_leave_the_callers_threads_alone(backend: str) -> None:
    before = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    with anyexec.get_executor(backend) as ex:
        assert list(ex.map(setup_tasks.thread_variables, range(2))) == [before, before]
    with pytest.raises(ValueError, match=r"inner_threads=2 .* runs tasks inside this process"):
        anyexec.get_executor(backend, inner_threads=2)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_inner_threads_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="inner_threads must be a positive int"):
        anyexec.get_executor("processes", inner_threads=bad)


def test_unknown_option_error_lists_the_executor_options() -> None:
    with pytest.raises(TypeError, match=r"Accepted options: .*initargs, initializer, "
                                        r"inner_threads.*max_workers"):
        anyexec.get_executor("processes", inner_thread=2)


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads /proc (Linux)")
def test_numpy_loaded_by_the_first_items_gets_the_limit() -> None:
    """Set before the chunk's items are unpickled: an array argument loads NumPy (and its
    OpenBLAS) in a fresh spawned worker, which must already see inner_threads."""
    np = pytest.importorskip("numpy")
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one CPU: every limit is 1")
    with anyexec.get_executor("processes", max_workers=1, start_method="spawn",
                              inner_threads=1) as ex:
        counts = list(ex.map(setup_tasks.openblas_threads, [np.zeros(3)] * 2))
    if counts[0] is None:
        pytest.skip("this NumPy does not use OpenBLAS")
    assert counts == [1, 1]
