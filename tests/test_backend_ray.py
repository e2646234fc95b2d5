"""The ``ray`` backend on a real Ray: its own local Ray, a Ray the user started, a cluster.

Starting Ray takes seconds, so the tests are grouped by the Ray they need, in file order: the
first class starts and stops its own, the conformance class shares one Ray initialised by a
fixture, and the cluster class joins a two-node cluster on 127.0.0.1 through its address.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

import anyexec
from anyexec.testing import BackendConformance, tasks

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

# How long a task waits for its peers before giving up; only reached when a test fails.
MEETING_LIMIT = 90.0


@pytest.fixture(autouse=True)
def _no_ray_address_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # RAY_ADDRESS makes the backend join that cluster; the tests choose their Ray themselves.
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


# -- task functions (pickled by value into the Ray workers) ---------------------------------


def meet(x: int, folder: str, expected: int) -> int:
    """Record start and end times; in between, wait until ``expected`` tasks have started.

    If fewer than ``expected`` tasks can run at once the waiting ones give up after
    ``MEETING_LIMIT`` and the recorded intervals show the shortfall.
    """
    Path(folder, f"{x}.start").write_text(repr(time.time()))
    deadline = time.monotonic() + MEETING_LIMIT
    while len(list(Path(folder).glob("*.start"))) < expected and time.monotonic() < deadline:
        time.sleep(0.02)
    Path(folder, f"{x}.end").write_text(repr(time.time()))
    return x


def node_after_meeting(x: int, folder: str, expected: int) -> str:
    import ray

    meet(x, folder, expected)
    return str(ray.get_runtime_context().get_node_id())


def wait_for_file(path: str) -> str:
    deadline = time.monotonic() + MEETING_LIMIT
    while not Path(path).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return "released"


def hold(x: int, folder: str, release: str) -> int:
    """Record start and end times; in between, wait for the ``release`` file."""
    Path(folder, f"{x}.start").write_text(repr(time.time()))
    wait_for_file(release)
    Path(folder, f"{x}.end").write_text(repr(time.time()))
    return x


def interrupt_inside(ex: anyexec.Executor) -> None:
    """Leave the executor's ``with`` block by Ctrl-C."""
    with ex:
        raise KeyboardInterrupt


def peak_overlap(folder: Path) -> int:
    """The most tasks that were running at the same moment, from their recorded intervals."""
    events = []
    for start in folder.glob("*.start"):
        end = start.with_suffix(".end")
        events.append((float(start.read_text()), 1))
        events.append((float(end.read_text()), -1))
    running = peak = 0
    for _, step in sorted(events):  # at equal times an end (-1) sorts before a start
        running += step
        peak = max(peak, running)
    return peak


def wait_until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + MEETING_LIMIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting: {what}")
        time.sleep(0.05)


def process_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # type: ignore[no-any-return]
    except psutil.NoSuchProcess:
        return True


def ray_node_pids() -> list[int]:
    """PIDs of the Ray processes (GCS, raylet, ...) this process started with ray.init."""
    node = ray._private.worker._global_node
    return [info.process.pid for infos in node.all_processes.values() for info in infos]


# -- option checking (no Ray started) -------------------------------------------------------


def test_bad_option_values_are_rejected_before_ray_starts():
    with pytest.raises(ValueError, match="num_cpus must be >= 0"):
        anyexec.get_executor("ray?num_cpus=-1")
    with pytest.raises(TypeError, match="runtime_env must be a dict"):
        anyexec.get_executor("ray", runtime_env="working_dir=.")
    with pytest.raises(ValueError, match="max_workers"):
        anyexec.get_executor("ray?max_workers=0")
    with pytest.raises(TypeError, match="no option 'num_cpu'"):
        anyexec.get_executor("ray?num_cpu=1")
    assert not ray.is_initialized()


# -- a local Ray started by the executor itself ---------------------------------------------


class TestLocalRayStartedByTheExecutor:
    def test_it_runs_max_workers_tasks_at_once_beyond_the_cores_and_stops_its_ray(
        self, tmp_path: Path
    ):
        assert not ray.is_initialized(), "another test left Ray running"
        meeting, release = tmp_path / "meeting", tmp_path / "release"
        meeting.mkdir()
        ex = anyexec.get_executor("ray", max_workers=6)
        try:
            assert ray.is_initialized()
            assert ex.max_workers == 6
            assert ray.cluster_resources()["CPU"] == 6  # on a 2-core machine too
            pids = ray_node_pids()
            assert pids
            # A second executor while the first is open reuses its Ray.
            second = anyexec.get_executor("ray", max_workers=2)
            # All 12 calls are handed to Ray at once (the map's window allows 14); Ray's own
            # scheduler, on the 6 CPUs it was given, must still run only 6 at a time.
            fn = partial(meet, folder=str(meeting), expected=6)
            assert sorted(ex.map(fn, range(12), chunksize=1)) == list(range(12))
            assert peak_overlap(meeting) == 6
            # Ctrl-C in the second executor's block abandons its running call, but the Ray
            # stays up for the first executor.
            abandoned = second.submit(wait_for_file, str(release))
            with pytest.raises(KeyboardInterrupt):
                interrupt_inside(second)
            with pytest.raises(anyexec.WorkerCrashedError, match="terminated"):
                abandoned.result(timeout=60)
            assert ray.is_initialized()
            assert ex.submit(tasks.square, 4).result(timeout=60) == 16
        finally:
            release.touch()
            ex.shutdown()
        # Ray stops with the last executor that uses it.
        assert not ray.is_initialized()
        wait_until(lambda: all(process_gone(pid) for pid in pids), "Ray's processes to exit")

    def test_it_hands_ray_twice_max_workers_calls_and_queues_the_rest_cancellably(
        self, tmp_path: Path
    ) -> None:
        # On its own Ray, sized to max_workers, the executor lets Ray queue a second round of
        # calls so that workers never wait for this process between tasks.
        assert not ray.is_initialized(), "another test left Ray running"
        folder, release = tmp_path / "held", tmp_path / "release"
        folder.mkdir()
        ex = anyexec.get_executor("ray", max_workers=2)
        try:
            held = [ex.submit(hold, x, str(folder), str(release)) for x in range(4)]
            queued = ex.submit(tasks.record_and_sleep, 9, folder=str(tmp_path), seconds=0)
            assert all(future.running() for future in held)  # all four are Ray's now
            assert not queued.running()
            assert queued.cancel()
            wait_until(lambda: len(list(folder.glob("*.start"))) >= 2, "two calls to start")
            release.touch()
            assert sorted(future.result(timeout=120) for future in held) == [0, 1, 2, 3]
            assert peak_overlap(folder) == 2  # Ray ran only max_workers at a time
        finally:
            release.touch()
            ex.shutdown()
        assert not ray.is_initialized()
        assert not (tmp_path / "9.started").exists()


# -- a Ray initialised by the user, shared by the conformance kit and the tests below -----


class TestRay(BackendConformance):
    backend = "ray"
    options = {"max_workers": 2}
    slow_task_seconds = 1.0

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def shared_ray(cls) -> Iterator[None]:
        """One Ray for the class, started here so that executors find it and reuse it."""
        assert not ray.is_initialized(), "another test left Ray running"
        ray.init(address="local", num_cpus=4, include_dashboard=False,
                 logging_level=logging.WARNING)
        try:
            yield
        finally:
            ray.shutdown()

    def test_a_ray_initialised_by_the_user_is_used_and_left_running(self):
        ex = anyexec.get_executor("ray")
        assert ex.max_workers == 4  # the cluster's CPUs, one per task
        assert ex.submit(tasks.square, 5).result(timeout=60) == 25
        ex.shutdown()
        assert ray.is_initialized()
        assert ray.get(ray.put(7)) == 7

    def test_max_workers_bounds_the_tasks_in_flight_on_an_existing_ray(self, tmp_path: Path):
        # The Ray has 4 CPUs; the executor must still run only 2 tasks at a time.
        with anyexec.get_executor("ray", max_workers=2) as ex:
            fn = partial(meet, folder=str(tmp_path), expected=2)
            assert list(ex.map(fn, range(8), chunksize=1)) == list(range(8))
        assert peak_overlap(tmp_path) == 2

    def test_options_from_a_spec_string_reach_the_tasks(self):
        with anyexec.get_executor("ray?num_cpus=2&max_workers=3") as ex:
            assert ex.max_workers == 3
            assigned = ex.submit(lambda: ray.get_runtime_context().get_assigned_resources())
            assert assigned.result(timeout=60).get("CPU") == 2.0

    def test_the_function_is_shared_once_per_map_not_once_per_chunk(
            self, monkeypatch: pytest.MonkeyPatch):
        from anyexec.backends.ray import RayBackend

        big = bytes(2_000_000)
        real_share = RayBackend.share
        shared: list[object] = []

        def counting_share(backend: RayBackend, obj: object) -> object:
            shared.append(obj)
            return real_share(backend, obj)

        # The executor reads its backend's hooks once, when it is created.
        monkeypatch.setattr(RayBackend, "share", counting_share)
        with anyexec.get_executor("ray", max_workers=2) as ex:
            fn = partial(tasks.add, y=len(big))
            assert list(ex.map(fn, range(30), chunksize=1)) == [x + 2_000_000 for x in range(30)]
        assert len(shared) == 1

    def test_an_object_ref_passed_as_an_argument_arrives_resolved(self):
        with anyexec.get_executor("ray") as ex:
            backend: Any = ex._backend
            ref = backend.share({"weights": [1, 2, 3]})
            future = backend.submit(tasks.sleep_then_return, ref, 0)
            assert future.result(timeout=60) == {"weights": [1, 2, 3]}

    def test_a_call_handed_to_ray_reports_running_and_cannot_be_cancelled(
        self, tmp_path: Path
    ):
        release = tmp_path / "release"
        with anyexec.get_executor("ray", max_workers=1) as ex:
            future = ex.submit(wait_for_file, str(release))
            assert future.running()
            assert not future.cancel()
            release.touch()
            assert future.result(timeout=120) == "released"

    def test_terminate_drops_queued_calls_and_stops_waiting_for_running_ones(
        self, tmp_path: Path
    ):
        release = tmp_path / "release"
        ex = anyexec.get_executor("ray", max_workers=1)
        try:
            running = ex.submit(wait_for_file, str(release))
            queued = ex.submit(tasks.record_and_sleep, 1, folder=str(tmp_path), seconds=0)
            ex._backend.terminate()  # type: ignore[attr-defined]
            assert queued.cancelled()
            with pytest.raises(anyexec.WorkerCrashedError, match="terminated"):
                running.result(timeout=60)
        finally:
            release.touch()  # let the abandoned task end
            ex.shutdown()
        assert ray.is_initialized(), "terminate() stopped a Ray the executor did not start"
        assert not (tmp_path / "1.started").exists()

    def test_cancelling_a_queued_call_means_it_never_starts(self, tmp_path: Path):
        release = tmp_path / "release"
        with anyexec.get_executor("ray", max_workers=1) as ex:
            blocker = ex.submit(wait_for_file, str(release))
            queued = ex.submit(tasks.record_and_sleep, 1, folder=str(tmp_path), seconds=0)
            assert queued.cancel()
            release.touch()
            assert blocker.result(timeout=120) == "released"
            assert ex.submit(tasks.square, 2).result(timeout=60) == 4
        assert not (tmp_path / "1.started").exists()

    def test_a_module_on_a_sys_path_entry_added_at_run_time_imports_on_the_workers(
        self, tmp_path: Path
    ):
        (tmp_path / "anyexec_ray_runtime_mod.py").write_text("def triple(x):\n    return 3 * x\n")
        sys.path.insert(0, str(tmp_path))
        try:
            import anyexec_ray_runtime_mod  # type: ignore[import-not-found]

            with anyexec.get_executor("ray") as ex:
                assert list(ex.map(anyexec_ray_runtime_mod.triple, range(4))) == [0, 3, 6, 9]
        finally:
            sys.path.remove(str(tmp_path))
            sys.modules.pop("anyexec_ray_runtime_mod", None)

    def test_joining_another_cluster_while_connected_is_refused(self):
        with pytest.raises(RuntimeError, match="can join only one Ray cluster"):
            anyexec.get_executor("ray://127.0.0.1:1")


# -- a two-node cluster joined through its address ----------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    from ray.cluster_utils import Cluster

    assert not ray.is_initialized(), "another test left Ray running"
    # tests/conftest.py keeps every Ray process on 127.0.0.1 (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0).
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        yield cluster
    finally:
        # Stops exactly the processes the harness started (by their handles).
        cluster.shutdown()


@pytest.mark.cluster
class TestCluster:
    def test_tasks_run_on_every_node_and_the_cluster_outlives_the_executor(
        self, cluster: Any, tmp_path: Path
    ):
        ex = anyexec.get_executor(f"ray://{cluster.address}")
        try:
            assert ex.max_workers == 2  # one CPU on each of the two nodes
            fn = partial(node_after_meeting, folder=str(tmp_path), expected=2)
            nodes = set(ex.map(fn, range(2), chunksize=1))
        finally:
            ex.shutdown()
        assert len(nodes) == 2
        assert not ray.is_initialized(), "the executor did not disconnect its driver"
        assert cluster.remaining_processes_alive(), "shutting the executor down hurt the cluster"

    def test_ray_address_in_the_environment_joins_that_cluster(
        self, cluster: Any, monkeypatch: pytest.MonkeyPatch
    ):
        monkeypatch.setenv("RAY_ADDRESS", cluster.address)
        with anyexec.get_executor("ray") as ex:
            assert ray.get_runtime_context().gcs_address == cluster.address
            assert ex.max_workers == 2
            assert ex.submit(tasks.square, 6).result(timeout=60) == 36
        assert not ray.is_initialized()
        assert cluster.remaining_processes_alive()


def test_a_local_ray_started_by_the_executor_listens_on_loopback_only() -> None:
    import subprocess
    import textwrap

    code = textwrap.dedent("""
        import json, psutil, anyexec
        with anyexec.get_executor("ray", max_workers=1) as ex:
            assert ex.submit(abs, -3).result(timeout=120) == 3
            seen = set()
            for proc in psutil.Process().children(recursive=True):
                try:
                    conns = proc.net_connections(kind="inet")
                except psutil.Error:
                    continue
                seen.update(c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN)
        print(json.dumps(sorted(seen)))
    """)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=170, env=env, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    addresses = json.loads(result.stdout.strip().splitlines()[-1])
    assert addresses, "found no listening Ray process"
    assert all(a in ("127.0.0.1", "::ffff:127.0.0.1") for a in addresses), addresses
