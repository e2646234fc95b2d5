# distributed's Client has no annotations.
# mypy: disable-error-code="no-untyped-call"
"""The ``dask`` backend: the conformance kit on a LocalCluster, and a real running cluster.

The LocalCluster tests start clusters the executor owns. The ``cluster`` tests start a
``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1 once for the module, connect
to them as a user would (``ANYEXEC_BACKEND=dask://HOST:PORT``), and stop them by their handles.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("distributed")

import cloudpickle
from distributed import Client

import anyexec
from anyexec.testing import BackendConformance, tasks
from anyexec.testing import _payload_tasks as pt

# pytest imports this file under a name the workers cannot import (--import-mode=importlib):
# its task functions travel by value instead.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

HERE = Path(__file__).parent


class TestDask(BackendConformance):
    backend = "dask"
    options = {"max_workers": 2}
    slow_task_seconds = 0.5


# -- task functions ------------------------------------------------------------------------


def record_interval(x: int, folder: str, seconds: float) -> int:
    """Sleep, and leave a file with when this call started and ended."""
    began = time.time()
    time.sleep(seconds)
    Path(folder, f"{x}.interval").write_text(f"{began} {time.time()}")
    return x


def most_at_once(folder: Path) -> int:
    """The largest number of recorded calls that overlapped."""
    events = []
    for path in folder.glob("*.interval"):
        began, ended = map(float, path.read_text().split())
        events += [(began, 1), (ended, -1)]
    running = peak = 0
    for _when, step in sorted(events):  # an end sorts before a start at the same instant
        running += step
        peak = max(peak, running)
    return peak


def echo(value: Any) -> Any:
    return value


def workers_of(ex: anyexec.Executor) -> dict[str, Any]:
    info: dict[str, Any] = ex._backend._client.scheduler_info()
    return info["workers"]  # type: ignore[no-any-return]


# -- a LocalCluster owned by the executor -----------------------------------------------------


@pytest.fixture(scope="module")
def local() -> Iterator[anyexec.Executor]:
    ex = anyexec.get_executor("dask", max_workers=2)
    yield ex
    ex.shutdown(wait=True)


@pytest.fixture(scope="module")
def from_spec() -> Iterator[anyexec.Executor]:
    """Three tasks at once on workers of two threads: two workers, one thread kept idle."""
    ex = anyexec.get_executor("dask?threads_per_worker=2&max_workers=3")
    yield ex
    ex.shutdown(wait=True)


def test_options_from_a_spec_string_shape_the_local_cluster(from_spec: anyexec.Executor) -> None:
    workers = workers_of(from_spec)
    assert from_spec.max_workers == 3
    assert len(workers) == 2
    assert [w["nthreads"] for w in workers.values()] == [2, 2]


def test_max_workers_bounds_running_tasks_even_with_idle_threads(
    from_spec: anyexec.Executor, tmp_path: Path
) -> None:
    results = from_spec.map(record_interval, range(9), [str(tmp_path)] * 9, [0.4] * 9,
                            chunksize=1)
    assert list(results) == list(range(9))
    assert most_at_once(tmp_path) == 3  # four threads, but max_workers=3


def test_more_tasks_than_cpus_spread_threads_over_one_worker_per_cpu(tmp_path: Path) -> None:
    cpus = os.cpu_count() or 1
    with anyexec.get_executor("dask", max_workers=2 * cpus) as ex:
        workers = workers_of(ex)
        assert [w["nthreads"] for w in workers.values()] == [2] * cpus
        n = 4 * cpus
        results = ex.map(record_interval, range(n), [str(tmp_path)] * n, [0.4] * n,
                         chunksize=1)
        assert list(results) == list(range(n))
    assert most_at_once(tmp_path) == 2 * cpus


def test_local_cluster_runs_max_workers_tasks_at_once(local: anyexec.Executor,
                                                      tmp_path: Path) -> None:
    assert len(workers_of(local)) == 2
    results = local.map(record_interval, range(6), [str(tmp_path)] * 6, [0.4] * 6, chunksize=1)
    assert list(results) == list(range(6))
    assert most_at_once(tmp_path) == 2


@pytest.mark.parametrize(("spec", "options", "error", "match"), [
    ("dask?threads_per_worker=two", {}, ValueError, r"threads_per_worker='two'.*whole number"),
    ("dask?threads_per_worker=0", {}, ValueError, r"threads_per_worker must be >= 1"),
    ("dask?max_workers=0", {}, ValueError, r"max_workers must be a positive int"),
    ("dask?resources=GPU", {}, ValueError, r"resources='GPU'.*JSON"),
    ("dask?resources={\"GPU\": -1}", {}, ValueError, r"resources\['GPU'\] must be >= 0"),
    ("dask?start_method=thread", {}, ValueError, r"start_method"),
    ("dask://127.0.0.1:1?memory_limit=2GiB", {}, ValueError,
     r"memory_limit only shape the local cluster"),
    ("dask", {"address": "127.0.0.1:1", "scheduler_file": "x.json"}, ValueError,
     "at most one of address, scheduler_file and client"),
    ("dask?thread_per_worker=2", {}, TypeError, r"did you mean 'threads_per_worker'"),
], ids=["not-a-number", "zero-threads", "zero-workers", "resources-not-json",
        "negative-resource", "bad-start-method", "local-option-with-address", "two-targets",
        "misspelt-option"])
def test_bad_option_values_are_rejected_naming_the_option(
    spec: str, options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        anyexec.get_executor(spec, **options)


def test_unreachable_scheduler_fails_with_a_connection_error_naming_it() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionError, match=rf"127\.0\.0\.1:{port}.*dask scheduler"):
        anyexec.get_executor(f"dask://127.0.0.1:{port}?connect_timeout=1")


@pytest.fixture(scope="module")
def remote(cluster: str) -> Iterator[anyexec.Executor]:
    """An executor on the outside cluster: its workers may be on other machines."""
    ex = anyexec.get_executor(f"dask://{cluster}")
    yield ex
    ex.shutdown(wait=True)


def test_map_scatters_its_function_once_and_every_task_refers_to_it(
    remote: anyexec.Executor, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = remote  # the body below predates the remote fixture
    client = local._backend._client
    scattered: list[Any] = []
    sent_args: list[Any] = []
    real_scatter, real_submit = client.scatter, client.submit

    def scatter(*args: Any, **kwargs: Any) -> Any:
        futures = real_scatter(*args, **kwargs)
        scattered.extend(futures)
        return futures

    def submit(fn: Any, *args: Any, **kwargs: Any) -> Any:
        sent_args.append(args[0])
        return real_submit(fn, *args, **kwargs)

    monkeypatch.setattr(client, "scatter", scatter)
    monkeypatch.setattr(client, "submit", submit)
    table = list(range(100_000))  # a large object the function carries

    assert list(local.map(lambda i: table[i], range(30), chunksize=1)) == list(range(30))
    assert len(scattered) == 1
    assert len(sent_args) == 30
    assert {arg.key for arg in sent_args} == {scattered[0].key}
    # A small function travels inside each task: nothing to scatter.
    assert list(local.map(tasks.square, range(3), chunksize=1)) == [0, 1, 4]
    assert len(scattered) == 1


def test_shared_object_arrives_in_the_task_as_the_value(remote: anyexec.Executor) -> None:
    backend: Any = remote._backend
    # A builtin: the outside scheduler cannot import this test module's functions.
    obj = {"weights": list(range(100_000))}
    ref = backend.share(obj)
    assert ref is not obj  # large: scattered
    assert backend.submit(dict, ref).result(timeout=60) == obj
    # A plain Dask future passed as a top-level argument arrives as its value too.
    [future] = backend._client.scatter([obj], hash=False)
    assert backend.submit(dict, future).result(timeout=60) == obj


def test_our_local_process_cluster_uses_shared_memory_not_scatter(
    local: anyexec.Executor,
) -> None:
    # Its workers run on this machine: the payload is written once to shared memory, which
    # every worker maps, instead of being scattered (a copy per worker through Dask).
    from anyexec._shm import THRESHOLD

    assert local._backend.share is None
    blob = bytes(range(256)) * (2 * THRESHOLD // 256)
    with_blob = functools.partial(pt.byte_at, blob)
    assert list(local.map(with_blob, range(200, 204))) == [200, 201, 202, 203]
    last = local._last_payload
    assert last is not None
    assert last[1].shared is not None


def test_keyword_arguments_named_like_dask_options_reach_the_function(
    local: anyexec.Executor,
) -> None:
    backend: Any = local._backend
    future = backend.submit(dict, priority=1, key="mine", pure=True, workers=None)
    assert future.result(timeout=60) == {"priority": 1, "key": "mine", "pure": True,
                                         "workers": None}


def test_module_on_a_sys_path_entry_added_at_run_time_imports_on_workers(
    local: anyexec.Executor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"anyexec_dask_probe_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text("def probe(x):\n    return x + 1000\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # after the workers started
    module = importlib.import_module(name)
    try:
        assert list(local.map(module.probe, range(3))) == [1000, 1001, 1002]
    finally:
        sys.modules.pop(name, None)


@contextlib.contextmanager
def _user_module(folder: Path, monkeypatch: pytest.MonkeyPatch,
                 body: str) -> Iterator[tuple[Any, Path]]:
    """Import a new module written to ``folder`` (the user's own code); forget it after."""
    name = f"anyexec_dask_user_{uuid.uuid4().hex}"
    source = folder / f"{name}.py"
    source.write_text(body)
    monkeypatch.syspath_prepend(str(folder))
    try:
        yield importlib.import_module(name), source
    finally:
        sys.modules.pop(name, None)


def _delete_source(source: Path) -> None:
    """Leave the module importable only where it was already loaded (or uploaded)."""
    source.unlink()
    shutil.rmtree(source.parent / "__pycache__", ignore_errors=True)


def test_function_whose_module_workers_cannot_import_is_reported_with_the_fix(
    local: anyexec.Executor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _user_module(tmp_path, monkeypatch, "def probe(x):\n    return x\n") as (module, src):
        _delete_source(src)  # as on a remote worker that lacks the user's code
        # The worker-side runner reports it per item, naming the module and the fix.
        with pytest.raises(anyexec.SerializationError,
                           match=rf"could not load the function.*{module.__name__}.*ship the code"):
            list(local.map(module.probe, range(3)))
    assert list(local.map(tasks.square, range(3))) == [0, 1, 4]


def test_cancelling_a_queued_task_keeps_it_from_ever_running(local: anyexec.Executor,
                                                            tmp_path: Path) -> None:
    # Four tasks reach Dask (two per one-thread worker); the rest wait in anyexec's queue.
    futures = [local.submit(tasks.record_and_sleep, i, str(tmp_path), 0.4) for i in range(6)]
    assert futures[5].cancel()
    assert not futures[0].cancel()  # handed to Dask: it may already run
    assert [f.result(timeout=60) for f in futures[:5]] == [0, 1, 2, 3, 4]
    assert futures[5].cancelled()
    assert sorted(p.name for p in tmp_path.glob("*.started")) == [f"{i}.started" for i in range(5)]


def test_local_cluster_with_exact_slots_keeps_two_tasks_per_slot_in_dask(
    local: anyexec.Executor, tmp_path: Path
) -> None:
    backend: Any = local._backend
    futures = [local.submit(tasks.record_and_sleep, i, str(tmp_path), 0.4) for i in range(8)]
    assert len(backend._sent) + sum(f.done() for f in futures) >= 4
    assert len(backend._sent) <= 4
    assert [f.result(timeout=60) for f in futures] == list(range(8))


def test_connected_style_gate_is_kept_when_threads_outnumber_max_workers(
    from_spec: anyexec.Executor,
) -> None:
    assert from_spec._backend._in_flight == 3


def test_task_waiting_behind_one_that_kills_its_worker_runs_and_only_the_killer_fails(
    tmp_path: Path,
) -> None:
    # One one-thread worker, two tasks in Dask: task 1 waits on the worker that task 0 kills.
    # Dask fails both with KilledWorker; task 1 never started, so it must run again.
    with anyexec.get_executor("dask", max_workers=1) as ex:
        assert ex._backend._in_flight == 2
        killer = ex.submit(tasks.kill_worker, 3)
        bystander = ex.submit(tasks.record_and_sleep, 1, str(tmp_path), 0.0)
        with pytest.raises(anyexec.WorkerCrashedError, match="KilledWorker"):
            killer.result(timeout=120)
        assert bystander.result(timeout=120) == 1
        assert (tmp_path / "1.started").exists()


def test_threads_instead_of_processes_run_tasks_in_this_process() -> None:
    with anyexec.get_executor("dask?processes=false&max_workers=2") as ex:
        assert ex.capabilities == frozenset()
        assert set(ex.map(tasks.pid, range(4), chunksize=1)) == {os.getpid()}


def test_terminate_kills_the_local_workers_and_fails_their_tasks(tmp_path: Path) -> None:
    ex = anyexec.get_executor("dask", max_workers=2)
    try:
        futures = [ex.submit(tasks.record_and_sleep, i, str(tmp_path), 120) for i in range(6)]
        _wait_for(lambda: len(list(tmp_path.glob("*.started"))) >= 2, "two tasks to start")
        ex._backend.terminate()
        assert all(f.cancelled() for f in futures[4:])  # still in anyexec's queue: dropped
        _done, not_done = concurrent.futures.wait(futures[:4], timeout=60)
        assert not not_done, "terminate() left tasks running or waiting in Dask"
        # Two ran, two waited on their workers: killed (KilledWorker) or cancelled, whichever
        # came first; none is sent again after terminate().
        for future in futures[:4]:
            with pytest.raises(anyexec.WorkerCrashedError, match=r"KilledWorker|cancelled"):
                future.result()
    finally:
        ex.shutdown(wait=True)


def test_shutdown_closes_the_local_cluster_it_started() -> None:
    ex = anyexec.get_executor("dask", max_workers=1)
    backend: Any = ex._backend
    cluster = backend._cluster
    assert ex.submit(tasks.square, 4).result(timeout=60) == 16
    ex.shutdown(wait=True)
    assert cluster.status.name == "closed"
    assert backend._client.status == "closed"


# -- a running cluster: dask scheduler + two dask workers ----------------------------------


def _wait_for(condition: Any, what: str, limit: float = 90.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()  # dask's CLIs close cleanly on SIGTERM (a nanny takes its worker)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


_scheduler_files: dict[str, Path] = {}  # address -> the file the scheduler wrote


@contextlib.contextmanager
def _running_cluster(folder: Path, workers: int = 2,
                     threads: int = 2) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """A ``dask scheduler`` and ``workers`` ``dask worker`` processes on 127.0.0.1.

    Yields the address and the processes (the scheduler first); stops them all at the end.
    """
    scheduler_file = folder / "scheduler.json"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
             "--port", "0", "--no-dashboard", "--dashboard-address", "127.0.0.1:0",
             "--scheduler-file", str(scheduler_file)], **_quiet(folder)))
        _wait_for(lambda: scheduler_file.exists() and scheduler_file.stat().st_size > 0,
                  "the scheduler to write its address")
        address = json.loads(scheduler_file.read_text())["address"]
        _scheduler_files[address] = scheduler_file
        for _ in range(workers):
            processes.append(_start_worker(folder, address, threads))
        with Client(address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=120)
        yield address, processes
    finally:
        for process in reversed(processes):  # workers first, then the scheduler
            _stop(process)


def _quiet(folder: Path) -> Any:
    # As docs/backends.md advises: a task that kills its worker fails at once instead of
    # being rerun on (and killing) up to three more workers.
    env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
    return {"cwd": folder, "env": env, "stdout": subprocess.DEVNULL,
            "stderr": subprocess.DEVNULL}


def _start_worker(folder: Path, address: str, threads: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_worker", address, "--host", "127.0.0.1",
         "--nthreads", str(threads), "--no-dashboard"], **_quiet(folder))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A scheduler and two workers (two threads each) on 127.0.0.1; yields the address."""
    with _running_cluster(tmp_path_factory.mktemp("dask-cluster")) as (address, _processes):
        yield address


def _live_workers(address: str) -> int:
    with Client(address, timeout=30, set_as_default=False) as client:
        return len(client.scheduler_info()["workers"])


@pytest.mark.cluster
def test_user_script_maps_over_a_running_cluster_from_the_environment(cluster: str) -> None:
    port = cluster.rsplit(":", 1)[1]
    env = {**os.environ, "ANYEXEC_BACKEND": f"dask://127.0.0.1:{port}"}
    done = subprocess.run([sys.executable, str(HERE / "dask_user_script.py")], env=env,
                          capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["backend"] == "dask"
    assert report["max_workers"] == 4  # the cluster's threads
    assert report["cubes"] == [x**3 for x in range(10)]
    assert report["tripled"] == [3 * x for x in range(20)]
    assert report["my_pid"] not in report["worker_pids"]
    assert _live_workers(cluster) == 2, "the script's executor closed a cluster it did not start"


@pytest.mark.cluster
def test_max_workers_bounds_tasks_in_flight_on_a_running_cluster(
    cluster: str, tmp_path: Path
) -> None:
    with anyexec.get_executor(f"dask://{cluster}?max_workers=2") as ex:  # tcp://HOST:PORT
        assert ex.capabilities == {"isolated", "recovers_from_worker_death"}  # nannies
        results = ex.map(record_interval, range(8), [str(tmp_path)] * 8, [0.4] * 8,
                         chunksize=1)
        assert list(results) == list(range(8))
    assert most_at_once(tmp_path) == 2  # four threads, but max_workers=2
    assert _live_workers(cluster) == 2


@pytest.mark.cluster
def test_scheduler_file_option_connects_to_the_running_cluster(cluster: str) -> None:
    with anyexec.get_executor("dask", scheduler_file=str(_scheduler_files[cluster])) as ex:
        assert ex.max_workers == 4
        assert list(ex.map(tasks.square, range(5))) == [0, 1, 4, 9, 16]
    assert _live_workers(cluster) == 2


@pytest.mark.cluster
def test_an_existing_client_is_used_and_left_open(cluster: str) -> None:
    with Client(cluster, timeout=30, set_as_default=False) as client:
        with anyexec.get_executor("dask", client=client) as ex:
            assert ex.max_workers == 4
            assert list(ex.map(tasks.square, range(5))) == [0, 1, 4, 9, 16]
        assert client.status == "running"
        assert client.submit(tasks.square, 3).result(timeout=60) == 9


@pytest.mark.cluster
def test_module_uploaded_with_the_client_runs_on_a_running_cluster(
    cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _user_module(tmp_path, monkeypatch, "def probe(x):\n    return -x\n") as (module, src), \
            Client(cluster, timeout=30, set_as_default=False) as client:
        client.upload_file(str(src))
        _delete_source(src)  # from now on only the uploaded copies exist
        with anyexec.get_executor("dask", client=client) as ex:
            assert list(ex.map(module.probe, range(4))) == [0, -1, -2, -3]


@pytest.mark.cluster
def test_task_killing_its_worker_on_a_running_cluster_fails_and_the_cluster_recovers(
    cluster: str,
) -> None:
    # Last in the module: it kills a worker (its nanny restarts it). One task at a time, as
    # the other tasks running in a worker that dies fail with it.
    with anyexec.get_executor(f"dask://{cluster}?max_workers=1") as ex:
        with pytest.raises(anyexec.WorkerCrashedError, match=r"item 3 .*KilledWorker"):
            list(ex.map(tasks.exit_worker, range(6), chunksize=1))
        assert list(ex.map(tasks.square, range(5))) == [0, 1, 4, 9, 16]
    with Client(cluster, timeout=30, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=120)


# -- exit, tracebacks, faults on a running cluster (issues 13 and 14) ---------------------


def test_shutdown_waiting_after_one_without_waiting_waits_for_every_call(
    tmp_path: Path,
) -> None:
    # What the interpreter's exit does after shutdown(wait=False): every call submitted
    # before, the two still in anyexec's queue included, finishes before it returns.
    ex = anyexec.get_executor("dask", max_workers=1)
    backend: Any = ex._backend
    paths = [str(tmp_path / f"{i}.out") for i in range(4)]
    futures = [ex.submit(tasks.write_after, path, 0.3) for path in paths]
    ex.shutdown(wait=False)
    backend.shutdown(wait=True)
    assert all(Path(path).read_text() == "done" for path in paths)
    assert [f.result(timeout=0) for f in futures] == paths
    assert backend._client.status == "closed"


def test_a_failing_call_has_the_worker_traceback_as_its_cause(local: anyexec.Executor) -> None:
    with pytest.raises(ValueError, match="item 3 is bad") as info:
        local.submit(tasks.fail_on, 3).result(timeout=60)
    cause = info.value.__cause__
    assert isinstance(cause, anyexec.RemoteTraceback)
    assert "in fail_on" in str(cause)
    assert "ValueError: item 3 is bad" in str(cause)
    with pytest.raises(ValueError, match="item 3 is bad") as info:
        list(local.map(tasks.fail_on, range(6), chunksize=2))
    assert isinstance(info.value.__cause__, anyexec.RemoteTraceback)
    assert "in fail_on" in str(info.value.__cause__)


@pytest.mark.cluster
def test_losing_the_scheduler_fails_the_map_saying_so_and_shutdown_is_prompt(
    tmp_path: Path,
) -> None:
    from anyexec.backends.dask import DaskSchedulerLostError

    with _running_cluster(tmp_path, workers=1) as (address, processes):
        ex = anyexec.get_executor(f"dask://{address}")
        try:
            results = ex.map(tasks.sleep_then_return, range(20), [0.5] * 20, chunksize=1)
            assert next(results) == 0
            processes[0].kill()  # the scheduler, by its PID
            processes[0].wait(timeout=30)
            killed = time.monotonic()
            with pytest.raises(anyexec.WorkerCrashedError,
                               match="lost its connection to the scheduler") as info:
                list(results)
            failed_after = time.monotonic() - killed
            assert isinstance(info.value.__cause__, DaskSchedulerLostError)
        finally:
            began = time.monotonic()
            ex.shutdown()
            took = time.monotonic() - began
        # Dask's client tries to reconnect for connect_timeout (30 s): shutdown must not wait.
        assert took < 15, f"shutdown took {took:.1f} s after the scheduler was lost"
        print(f"error {failed_after:.2f} s after the scheduler was killed; shutdown {took:.2f} s")


def wait_for_two_workers(x: int, folder: str) -> int:
    """Note this worker's PID; wait (at most 90 s) until two workers have run a call."""
    Path(folder, str(os.getpid())).touch()
    deadline = time.monotonic() + 90
    while len(list(Path(folder).iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    return os.getpid()


@pytest.mark.cluster
def test_a_worker_that_joins_mid_map_gets_work(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    with _running_cluster(tmp_path, workers=1, threads=1) as (address, processes), \
            anyexec.get_executor(f"dask://{address}") as ex:
        assert ex.max_workers == 1
        # The first call holds the only thread until a second worker runs a call.
        results = ex.map(wait_for_two_workers, range(6), [str(pids)] * 6, chunksize=1)
        _wait_for(lambda: any(pids.iterdir()), "the first call to start")
        processes.append(_start_worker(tmp_path, address, 1))  # stopped with the others
        ran_on = set(results)
        assert len(ran_on) == 2, "the worker that joined ran nothing"
        # What the core reads (as Executor.max_workers) to size its window.
        assert ex._backend.max_workers == 2


def nap_or_die(x: int, bad: int) -> int:
    time.sleep(0.3)
    if x == bad:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


@pytest.mark.cluster
def test_a_worker_killed_mid_map_fails_only_its_own_item_and_keeps_every_other(
    cluster: str,
) -> None:
    # Four threads on two worker processes: item 7's worker dies with another item running
    # beside it and more waiting on it. Only item 7 is reported; every other result comes
    # back once, in order.
    with anyexec.get_executor(f"dask://{cluster}") as ex:
        results = list(ex.map(nap_or_die, range(16), [7] * 16, chunksize=1,
                              on_error="return"))
    assert isinstance(results[7], anyexec.WorkerCrashedError)
    assert results[:7] + results[8:] == [*range(7), *range(8, 16)]
    with Client(cluster, timeout=30, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=120)


def test_on_the_local_cluster_only_the_item_that_killed_a_shared_worker_fails(
    tmp_path: Path,
) -> None:
    # One worker process with two threads: item 3 dies with the item running beside it.
    with anyexec.get_executor("dask?threads_per_worker=2&max_workers=2") as ex:
        results = list(ex.map(nap_or_die, range(8), [3] * 8, chunksize=1, on_error="return"))
    assert isinstance(results[3], anyexec.WorkerCrashedError)
    assert results[:3] + results[4:] == [0, 1, 2, 4, 5, 6, 7]


def map_inside(x: int, address: str) -> int:
    with anyexec.get_executor(f"dask://{address}") as inner:
        return sum(inner.map(tasks.square, range(x + 3), chunksize=1))


@pytest.mark.cluster
def test_a_task_mapping_on_its_own_cluster_does_not_deadlock(cluster: str) -> None:
    # Six outer tasks on four threads: without seceding, the inner maps wait forever.
    with anyexec.get_executor(f"dask://{cluster}") as ex:
        sums = list(ex.map(map_inside, range(6), [cluster] * 6, chunksize=1, timeout=120))
    assert sums == [sum(i * i for i in range(x + 3)) for x in range(6)]


def test_a_task_mapping_on_the_local_cluster_running_it_does_not_deadlock(
    local: anyexec.Executor,
) -> None:
    address = local._backend._client.scheduler.address
    sums = list(local.map(map_inside, range(4), [address] * 4, chunksize=1, timeout=120))
    assert sums == [sum(i * i for i in range(x + 3)) for x in range(4)]


def _start_nested_local_cluster(_: int) -> str:
    try:
        anyexec.get_executor("dask", max_workers=1)
    except RuntimeError as exc:
        return str(exc)
    return "started"


def test_a_local_cluster_inside_a_daemonic_worker_says_why_it_cannot_start() -> None:
    # Dask's worker processes are daemonic (the stdlib pool's are not, and can start one).
    with anyexec.get_executor("dask", max_workers=1) as ex:
        message = ex.submit(_start_nested_local_cluster, 0).result(timeout=120)
    assert "daemonic processes cannot have children" in message, message
    assert "__main__" not in message, message
