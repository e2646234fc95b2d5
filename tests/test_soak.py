"""A million tiny items through ``processes``: flat parent memory, nothing leaked."""

from __future__ import annotations

import gc
import itertools
import time
from typing import Any

import psutil
import pytest

import anyexec
from anyexec.testing import tasks


def test_a_million_items_stream_with_flat_memory_and_no_leaks() -> None:
    me = psutil.Process()
    children_before = {p.pid for p in me.children(recursive=True)}
    fds_before = me.num_fds()
    with anyexec.get_executor("processes", max_workers=2) as ex:
        assert sum(ex.map(tasks.square, range(1000))) == sum(x * x for x in range(1000))
        gc.collect()
        rss_before = me.memory_info().rss
        peak = rss_before
        total = 0
        count = 0
        source = (x for x in range(1_000_000))
        for count, value in enumerate(ex.map(tasks.square, source), 1):
            total += value
            if count % 50_000 == 0:
                peak = max(peak, me.memory_info().rss)
        assert count == 1_000_000
        assert total == sum(x * x for x in range(1_000_000))
        growth_mb = (peak - rss_before) / 1e6
        # Materialising the input or the results would cost well over 100 MB.
        assert growth_mb < 40, f"parent memory grew by {growth_mb:.1f} MB"
    gc.collect()
    leaked = {p.pid for p in me.children(recursive=True)} - children_before
    assert not leaked, f"worker processes left behind: {leaked}"
    assert me.num_fds() <= fds_before, "file descriptors leaked"


def test_a_stalled_consumer_stops_the_input() -> None:
    pulled = itertools.count()

    def source() -> itertools.count[int]:
        for x in itertools.count():
            next(pulled)
            yield x

    with anyexec.get_executor("processes", max_workers=2) as ex:
        results = ex.map(tasks.square, source())
        assert [next(results) for _ in range(10)] == [x * x for x in range(10)]

        time.sleep(0.5)
        first = next(pulled)
        time.sleep(0.5)
        assert next(pulled) == first + 1, "input kept being pulled while nobody consumed"
        results.close()


@pytest.mark.parametrize("spec", ["processes", "pathos"])
def test_many_single_item_tasks_do_not_fill_the_workers_report_pipe(spec: str) -> None:
    # Each task reports which worker started it; 5,000 one-item chunks exceed what a pipe holds
    # unless the reports are read as tasks finish, and the table of which worker runs which
    # task must forget tasks that settled, or it grows for the life of the executor.
    if spec == "pathos":
        pytest.importorskip("pathos")
    with anyexec.get_executor(spec, max_workers=2) as ex:
        assert sum(ex.map(abs, range(5_000), chunksize=1, timeout=120)) == sum(range(5_000))
        backend: Any = ex._backend
        pool = backend._pool if spec == "processes" else backend._generation
        table = pool._started if spec == "processes" else pool.started
        reports = pool._reports if spec == "processes" else pool.reports
        assert len(table) <= 2, f"{len(table)} settled tasks still in the report table"
        # Read as tasks settle, not left to fill the pipe (on pathos a full pipe stalls the
        # workers until a 50 ms health poll reads it; on processes it hangs).
        time.sleep(0.2)  # let the callbacks of the last tasks finish
        assert reports.empty()
