"""The pathos backend: the conformance kit on each pool kind, plus pool ownership and options."""

from __future__ import annotations

import os
from typing import ClassVar

import pytest

import anyexec
from anyexec.testing import BackendConformance, tasks

pytest.importorskip("pathos")


class TestPathosProcess(BackendConformance):
    backend = "pathos"
    options: ClassVar[dict[str, object]] = {"max_workers": 2}


class TestPathosThread(BackendConformance):
    backend = "pathos"
    options: ClassVar[dict[str, object]] = {"max_workers": 4, "pool": "thread"}


class TestPathosParallel(BackendConformance):
    """Parallel Python (ppft) local servers: functions travel by source, calls as dill blobs."""

    backend = "pathos"
    options: ClassVar[dict[str, object]] = {"max_workers": 2, "pool": "parallel"}
    slow_task_seconds: ClassVar[float] = 0.5


def test_each_executor_owns_its_pool_and_leaves_other_pathos_pools_alone() -> None:
    from pathos.pools import ProcessPool

    theirs = ProcessPool(nodes=2)  # pathos' shared pool for 2 nodes
    try:
        with anyexec.get_executor("pathos", max_workers=2) as ex:
            ours = set(ex.map(tasks.pid, range(6), chunksize=1))
        their_pids = set(theirs.map(tasks.pid, range(6)))
        assert not ours & their_pids
        assert theirs.map(tasks.square, [1, 2, 3]) == [1, 4, 9]  # still open after our shutdown
    finally:
        theirs.close()
        theirs.join()
        theirs.clear()


def test_shutdown_stops_the_pool_workers() -> None:
    psutil = pytest.importorskip("psutil")
    ex = anyexec.get_executor("pathos", max_workers=2)
    pids = set(ex.map(tasks.pid, range(6), chunksize=1))
    ex.shutdown(wait=True)
    alive = {p for p in pids if psutil.pid_exists(p)
             and psutil.Process(p).status() != psutil.STATUS_ZOMBIE}
    assert not alive


def test_options_parse_from_a_spec_string() -> None:
    with anyexec.get_executor("pathos?pool=thread&max_workers=3") as ex:
        assert ex.backend == "pathos"
        assert ex.max_workers == 3
        assert set(ex.map(tasks.pid, range(4), chunksize=1)) == {os.getpid()}
        assert "isolated" not in ex.capabilities


def test_an_unknown_pool_kind_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="processes"):
        anyexec.get_executor("pathos?pool=processes")


def test_cancelled_submission_never_runs(tmp_path: os.PathLike[str]) -> None:
    from functools import partial
    from pathlib import Path

    with anyexec.get_executor("pathos", max_workers=1) as ex:
        blocker = ex.submit(tasks.sleep_then_return, 0, 1.0)
        fn = partial(tasks.record_and_sleep, folder=str(tmp_path), seconds=0)
        queued = [ex.submit(fn, i) for i in range(5)]
        cancelled = [f.cancel() for f in queued]
        assert blocker.result(timeout=60) == 0
    # One call may already wait in the pool's queue behind the blocker (one per worker is
    # handed over ahead); every call still in the backend's queue is cancelled and never runs.
    assert sum(cancelled) >= len(queued) - 1
    ran = {int(p.stem) for p in Path(tmp_path).glob("*.started")}
    assert not ran & {i for i, c in enumerate(cancelled) if c}
    assert ran == {i for i, c in enumerate(cancelled) if not c}


