"""The joblib backend: the conformance kit on loky and threading, plus pool reuse and options."""

from __future__ import annotations

import os

import pytest

import anyexec
from anyexec.testing import BackendConformance, tasks

pytest.importorskip("joblib")


class TestJoblibLoky(BackendConformance):
    backend = "joblib"
    options = {"max_workers": 2}


class TestJoblibThreading(BackendConformance):
    backend = "joblib"
    options = {"max_workers": 4, "backend": "threading"}


class TestJoblibLokySingleWorker(BackendConformance):
    """joblib runs n_jobs=1 inline; the backend keeps one call at a time in a worker process."""

    backend = "joblib"
    options = {"max_workers": 1}


def test_threading_backend_runs_in_the_callers_process() -> None:
    with anyexec.get_executor("joblib?backend=threading&max_workers=3") as ex:
        assert ex.max_workers == 3
        assert set(ex.map(tasks.pid, range(6), chunksize=1)) == {os.getpid()}
        assert "isolated" not in ex.capabilities


def test_options_parse_from_a_spec_string() -> None:
    with anyexec.get_executor("joblib?backend=threading&max_workers=2") as ex:
        assert ex.backend == "joblib"
        assert ex.max_workers == 2
        assert list(ex.map(tasks.square, range(4))) == [0, 1, 4, 9]


def test_an_unknown_joblib_backend_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="dask"):
        anyexec.get_executor("joblib?backend=dask")


def test_multiprocessing_backend_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match=r"main thread.*loky"):
        anyexec.get_executor("joblib", backend="multiprocessing")


@pytest.mark.parametrize("spec", ["joblib?backend=dask", "joblib?backend=multiprocessing"])
def test_the_accepted_joblib_backends_listed_are_the_ones_that_work(spec: str) -> None:
    # The list in the error used to include 'multiprocessing', which is then refused.
    with pytest.raises(ValueError, match=r"expected one of 'loky', 'threading'$"):
        anyexec.get_executor(spec)


def test_cancelled_submission_never_runs(tmp_path: os.PathLike[str]) -> None:
    from functools import partial

    with anyexec.get_executor("joblib", max_workers=1) as ex:
        blocker = ex.submit(tasks.sleep_then_return, 0, 1.0)
        queued = [ex.submit(partial(tasks.record_and_sleep, folder=str(tmp_path), seconds=0), i)
                  for i in range(5)]
        cancelled = [f.cancel() for f in queued]
        assert blocker.result(timeout=60) == 0
    assert any(cancelled)
    ran = {int(p.stem) for p in tmp_path.glob("*.started")}  # type: ignore[attr-defined]
    assert not ran & {i for i, c in enumerate(cancelled) if c}


def test_two_loky_executors_survive_a_worker_crash_in_one_of_them() -> None:
    # loky's pool is process-wide: a crash in one executor's round must not deadlock a round
    # of another executor running at the same time.
    import threading

    with anyexec.get_executor("joblib", max_workers=2) as busy, \
            anyexec.get_executor("joblib", max_workers=2) as crashing:
        results: list[int] = []
        worker = threading.Thread(
            target=lambda: results.extend(busy.map(tasks.sleep_then_return, range(40),
                                                   [0.02] * 40, chunksize=1, retries=2)))
        worker.start()
        with pytest.raises(anyexec.WorkerCrashedError):
            list(crashing.map(tasks.exit_worker, range(6), chunksize=1))
        worker.join(timeout=120)
        assert not worker.is_alive(), "the other executor's map never finished"
        assert results == list(range(40))
        assert list(crashing.map(tasks.square, range(4))) == [0, 1, 4, 9]


def test_a_script_that_never_closes_its_executor_exits_without_tracebacks(
    tmp_path: os.PathLike[str],
) -> None:
    # joblib keeps dispatching park tasks it took from the feed after the map's last result;
    # at interpreter exit loky refuses them and logs a traceback, which must not reach users.
    import subprocess
    import sys
    from pathlib import Path

    script = Path(tmp_path) / "never_closed.py"
    script.write_text(
        "import anyexec\n"
        "from anyexec.testing import tasks\n"
        "if __name__ == '__main__':\n"
        "    ex = anyexec.get_executor('joblib', max_workers=10)\n"
        "    items = range(40)\n"
        "    print(sum(ex.map(tasks.sleep_then_return, items, [0.05] * 40, chunksize=4)))\n"
    )
    for _ in range(2):
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              timeout=120, start_new_session=True)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == str(sum(range(40)))
        assert "Traceback" not in proc.stderr, proc.stderr
