"""Dask collections computed with an anyexec executor as the scheduler, on the built-in backends.

``dask.compute(..., scheduler=executor)`` runs Dask's local scheduler and hands each ready task
to ``executor.submit``; every built-in backend must compute the same values as Dask's own
synchronous scheduler.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import dask
import dask.array as da
import dask.bag as db
import pytest

import anyexec

BACKENDS = ["serial", "threads", "processes", "joblib", "pathos", "ray", "dask"]


@pytest.fixture(scope="module", params=BACKENDS)
def ex(request: pytest.FixtureRequest) -> Iterator[anyexec.Executor]:
    executor = anyexec.get_executor(request.param, max_workers=2)
    yield executor
    executor.shutdown(wait=True)


def _increment(v: int) -> int:
    return v + 1


def _fail_on_7(v: int) -> int:
    if v == 7:
        raise ValueError(f"cannot take {v}")
    return v


def test_array_reduction_matches_the_synchronous_scheduler(ex: anyexec.Executor) -> None:
    x = da.arange(10_000, chunks=1_000)
    graph = ((x**2).sum(), (x.reshape(100, 100).T @ x.reshape(100, 100)).trace())
    assert dask.compute(*graph, scheduler=ex) == dask.compute(*graph, scheduler="sync")


def test_bag_pipeline_matches_the_synchronous_scheduler(ex: anyexec.Executor) -> None:
    bag = db.from_sequence(range(1_000), npartitions=8).map(_increment).filter(
        lambda v: v % 3 == 0)
    expected = dask.compute(bag.sum(), bag.count(), scheduler="sync")
    assert dask.compute(bag.sum(), bag.count(), scheduler=ex) == expected


def test_dask_config_scheduler_accepts_the_executor(ex: anyexec.Executor) -> None:
    with dask.config.set(scheduler=ex):
        assert da.ones(100, chunks=10).sum().compute() == 100


def test_persist_keeps_the_computed_chunks(ex: anyexec.Executor) -> None:
    (persisted,) = dask.persist(da.arange(100, chunks=10) * 2, scheduler=ex)
    assert int(persisted.sum().compute(scheduler="sync")) == 9_900


def test_a_failing_task_raises_its_own_exception(ex: anyexec.Executor) -> None:
    bag = db.from_sequence(range(10), npartitions=5).map(_fail_on_7)
    with pytest.raises(ValueError, match="cannot take 7"):
        dask.compute(bag.sum(), scheduler=ex)


def test_dask_runs_as_many_tasks_at_once_as_the_executor_has_workers() -> None:
    # Tasks that can only finish together: a barrier with more parties than this machine has
    # CPUs (Dask's fallback window), and as many executor workers.
    parties = (os.cpu_count() or 1) + 2
    barrier = threading.Barrier(parties, timeout=10)

    def meet(v: int) -> int:
        barrier.wait()
        return v

    with anyexec.get_executor("threads", max_workers=parties) as ex:
        parts = [dask.delayed(meet)(i) for i in range(parties)]
        assert dask.compute(*parts, scheduler=ex) == tuple(range(parties))


def test_dask_config_num_workers_sets_the_window_meanwhile() -> None:
    # The workaround documented for older anyexec versions still works.
    parties = (os.cpu_count() or 1) + 2
    barrier = threading.Barrier(parties, timeout=10)

    def meet(v: int) -> int:
        barrier.wait()
        return v

    with anyexec.get_executor("threads", max_workers=parties) as ex, \
            dask.config.set(num_workers=ex.max_workers):
        parts = [dask.delayed(meet)(i) for i in range(parties)]
        assert dask.compute(*parts, scheduler=ex) == tuple(range(parties))
