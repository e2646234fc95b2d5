"""The ``ray`` backend at exit and under faults: calls left running when the script ends, a
worker killed mid-map, a map inside a task on the same Ray, a cluster that grows mid-map, the
head node lost mid-map.

Each test starts (and stops) its own Ray: the executor's local Ray, or a cluster on 127.0.0.1
built with ``ray.cluster_utils.Cluster`` (in a fresh interpreter where Ray may end the process).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import anyexec
from anyexec.testing import tasks
from anyexec.testing.scripts import run_script, stray_output

ray = pytest.importorskip("ray")

# How long a task waits for a condition before giving up; only reached when a test fails.
LIMIT = 90.0


@pytest.fixture(autouse=True)
def _own_ray(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # RAY_ADDRESS makes the backend join that cluster; these tests choose their Ray.
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert not ray.is_initialized(), "another test left Ray running"
    yield
    assert not ray.is_initialized(), "the executor left its Ray running"


# -- task functions (pickled by value into the Ray workers) ---------------------------------


def nap_or_die(x: int, bad: int) -> int:
    time.sleep(0.2)
    if x == bad:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def map_inside(x: int) -> int:
    with anyexec.get_executor("ray") as inner:  # the Ray that runs this task
        return sum(inner.map(tasks.square, range(x + 3), chunksize=1))


def node_once_two_ran(x: int, folder: str) -> str:
    """Note this task's node; wait (at most LIMIT s) until tasks ran on two nodes."""
    node = str(ray.get_runtime_context().get_node_id())
    Path(folder, node).touch()
    deadline = time.monotonic() + LIMIT
    while len(list(Path(folder).iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    return node


# -- exit ----------------------------------------------------------------------------------


def test_shutdown_waiting_after_one_without_waiting_waits_for_every_call(
    tmp_path: Path,
) -> None:
    # What the interpreter's exit does after shutdown(wait=False): every call submitted
    # before, those still in anyexec's queue included, finishes before it returns, and the
    # executor's own Ray is stopped after them.
    ex = anyexec.get_executor("ray", max_workers=1)
    backend: Any = ex._backend
    paths = [str(tmp_path / f"{i}.out") for i in range(4)]
    futures = [ex.submit(tasks.write_after, path, 0.3) for path in paths]
    ex.shutdown(wait=False)
    backend.shutdown(wait=True)
    assert all(Path(path).read_text() == "done" for path in paths)
    assert [f.result(timeout=0) for f in futures] == paths
    assert not ray.is_initialized()


# -- faults --------------------------------------------------------------------------------


def test_a_worker_killed_mid_map_fails_only_its_own_item_and_keeps_every_other() -> None:
    with anyexec.get_executor("ray", max_workers=2) as ex:
        results = list(ex.map(nap_or_die, range(12), [7] * 12, chunksize=1,
                              on_error="return"))
        assert isinstance(results[7], anyexec.WorkerCrashedError)
        assert results[:7] + results[8:] == [*range(7), *range(8, 12)]
        assert ex.submit(tasks.square, 3).result(timeout=60) == 9  # a fresh worker


def test_a_task_mapping_on_the_ray_that_runs_it_does_not_deadlock() -> None:
    # Four outer tasks on two CPUs: the two running hold both CPUs while their inner maps
    # wait; inner tasks needing a CPU would never start.
    with anyexec.get_executor("ray", max_workers=2) as ex:
        try:
            sums = list(ex.map(map_inside, range(4), chunksize=1, timeout=120))
        except TimeoutError:
            ex._backend.terminate()  # do not wait for them
            raise
    assert sums == [sum(i * i for i in range(x + 3)) for x in range(4)]


@pytest.mark.cluster
def test_a_node_that_joins_mid_map_gets_work(tmp_path: Path) -> None:
    from ray.cluster_utils import Cluster

    # tests/conftest.py keeps every Ray process on 127.0.0.1.
    cluster: Any = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        with anyexec.get_executor(f"ray://{cluster.address}") as ex:
            assert ex.max_workers == 1
            # The first call holds the only CPU until a task has run on a second node.
            results = ex.map(node_once_two_ran, range(4), [str(tmp_path)] * 4, chunksize=1)
            deadline = time.monotonic() + LIMIT
            while not any(tmp_path.iterdir()) and time.monotonic() < deadline:
                time.sleep(0.05)
            cluster.add_node(num_cpus=1)
            nodes = set(results)
            assert len(nodes) == 2, "the node that joined ran nothing"
            # What the core reads (as Executor.max_workers) to size its window.
            assert ex._backend.max_workers == 2
    finally:
        cluster.shutdown()  # stops exactly the processes it started, by their handles


HEAD_LOST = Path(__file__).parent / "scripts" / "ray_head_lost.py"


@pytest.mark.cluster
@pytest.mark.parametrize("nodes", [1, 2])
def test_losing_the_head_node_fails_the_map_saying_so_and_the_script_ends(nodes: int) -> None:
    # In a fresh interpreter: after losing the GCS, Ray ends the whole driver process 60 s
    # later (gcs_rpc_server_reconnect_timeout_s) unless it disconnected first. With two nodes
    # the calls running on the surviving node never fail by themselves.
    run = run_script([str(HEAD_LOST), str(nodes)], timeout=150, grace=10)
    ended = time.time()
    assert run.returncode == 0, run.describe()
    assert not run.leftovers, run.describe()
    assert not stray_output(run.stderr), run.describe()
    report = json.loads(run.stdout.splitlines()[-1])
    assert report["cause"] == "RayClusterLostError", report
    assert report["item_specific"] is False
    assert f"head node (the GCS at {report['address']}) stopped answering" in report["error"]
    assert "Likely causes" not in report["error"]
    print(f"{nodes} node(s): error {report['error_after']:.2f} s after the head was killed; "
          f"shutdown {report['shutdown']:.2f} s; script ended "
          f"{ended - report['killed_at']:.1f} s after the kill")
