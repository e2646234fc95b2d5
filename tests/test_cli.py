"""The ``anyexec`` command, run as a user runs it: a subprocess."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import anyexec

BIN = Path(sys.executable).parent


def anyexec_cmd(*args: str, timeout: float = 120,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "anyexec", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {seconds} s")


def stop(proc: subprocess.Popen[str]) -> None:
    """Stop a process we started and every process it started, by PID."""
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    _gone, alive = psutil.wait_procs(children, timeout=15)
    for child in alive:
        child.kill()
    assert not alive, f"processes left running after their parent stopped: {alive}"


# -- version and help --------------------------------------------------------------------------


def test_version_prints_anyexec_and_python_versions() -> None:
    proc = anyexec_cmd("--version")
    assert proc.returncode == 0
    assert proc.stdout.startswith(f"anyexec {anyexec.__version__} (Python ")


def test_the_installed_command_is_the_same_program() -> None:
    proc = subprocess.run([str(BIN / "anyexec"), "--version"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0
    assert anyexec.__version__ in proc.stdout


@pytest.mark.parametrize("args", [("--help",), ("backends", "--help"), ("check", "--help")])
def test_help_is_plain_text_without_markup(args: tuple[str, ...]) -> None:
    proc = anyexec_cmd(*args)
    assert proc.returncode == 0
    assert "usage: anyexec" in proc.stdout
    for markup in ("``", ":func:", ":class:", ":meth:", ".. "):
        assert markup not in proc.stdout


def test_no_command_is_a_usage_error() -> None:
    proc = anyexec_cmd()
    assert proc.returncode == 2
    assert "COMMAND" in proc.stderr


def test_backends_lists_the_built_in_backends() -> None:
    proc = anyexec_cmd("backends")
    assert proc.returncode == 0
    for name in ("serial", "threads", "processes", "ray", "dask"):
        assert re.search(rf"^{name}\b", proc.stdout, re.MULTILINE)


# -- check -----------------------------------------------------------------------------------


def test_check_probes_every_local_worker_and_times_a_round_trip() -> None:
    proc = anyexec_cmd("check", "processes?max_workers=2")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "max_workers:  2" in out
    assert "answered by 2 worker process(es) on 1 host(s)" in out
    rows = re.findall(r"^  \S+\s+(\d+)\s+(\d+\.\d+\.\d+)\s+(\S+)", out, re.MULTILINE)
    assert len(rows) == 2
    assert all(python == ".".join(map(str, sys.version_info[:3])) for _pid, python, _ in rows)
    assert all(version == anyexec.__version__ for _pid, _python, version in rows)
    assert re.search(r"round trip:\s+\d+\.\d+ ms best", out)
    assert out.rstrip().endswith("OK")


@pytest.mark.parametrize(("spec", "message"), [
    ("nosuch", "nosuch"),
    ("processes?max_workers=0", "max_workers"),
])
def test_check_of_a_bad_spec_fails_with_the_reason_and_no_traceback(spec: str,
                                                                     message: str) -> None:
    proc = anyexec_cmd("check", spec)
    assert proc.returncode == 1
    assert "FAILED" in proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_check_of_an_address_nobody_answers_gives_up_at_the_timeout() -> None:
    start = time.monotonic()
    proc = anyexec_cmd("check", f"dask://127.0.0.1:{free_port()}", "--timeout", "3")
    assert proc.returncode == 1
    assert "no answer within 3 s" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - start < 60


@pytest.fixture
def dask_cluster() -> Iterator[str]:
    """A Dask scheduler and two single-thread workers, each its own process, on 127.0.0.1."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen(
        [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
         "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)]
    try:
        wait_for_port(port)
        for _ in range(2):
            procs.append(subprocess.Popen(
                [str(BIN / "dask"), "worker", address, "--nthreads", "1", "--host", "127.0.0.1",
                 "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                text=True))
        yield address
    finally:
        for proc in reversed(procs):
            stop(proc)


@pytest.mark.cluster
def test_check_reaches_a_running_dask_cluster_and_lists_each_worker(dask_cluster: str) -> None:
    # Workers may still be joining: the check waits for them through max_workers.
    deadline = time.monotonic() + 60
    while True:
        proc = anyexec_cmd("check", dask_cluster.replace("tcp://", "dask://"))
        if "answered by 2 worker process(es)" in proc.stdout or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert proc.returncode == 0, proc.stderr
    assert "answered by 2 worker process(es) on 1 host(s)" in proc.stdout
    assert re.search(r"^  host\s+pid\s+python\s+anyexec\s+dask\b", proc.stdout, re.MULTILINE)


TOKEN = "anyexec-test-token-0123456789abcdefghijklmnopqrstuvwxyz"


@pytest.fixture
def ray_head_with_token() -> Iterator[int]:
    port = free_port()
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=TOKEN)
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
         "--num-cpus=1", "--include-dashboard=false", "--disable-usage-stats", "--block"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    try:
        wait_for_port(port)
        yield port
    finally:
        stop(head)


@pytest.mark.cluster
def test_check_without_the_token_of_a_ray_cluster_says_which_variables_to_set(
        ray_head_with_token: int) -> None:
    spec = f"ray?address=127.0.0.1:{ray_head_with_token}"
    without = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    proc = anyexec_cmd("check", spec, "--timeout", "90", env=without)
    assert proc.returncode == 1
    assert "RAY_AUTH_MODE=token" in proc.stderr
    assert "RAY_AUTH_TOKEN" in proc.stderr
    assert "Traceback" not in proc.stderr

    with_token = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=TOKEN)
    proc = anyexec_cmd("check", spec, "--timeout", "90", env=with_token)
    assert proc.returncode == 0, proc.stderr
    assert "answered by 1 worker process(es)" in proc.stdout


def test_ctrl_c_during_a_check_exits_130_without_a_traceback() -> None:
    # A check that waits on an address nobody answers, interrupted as a user would.
    proc = subprocess.Popen([sys.executable, "-m", "anyexec", "check",
                             f"dask://127.0.0.1:{free_port()}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("anyexec check")  # the check has started
        time.sleep(1)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 130
    assert "interrupted" in err
    assert "Traceback" not in err


def test_ctrl_c_while_a_local_dask_cluster_starts_leaves_no_process_behind() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "anyexec", "check", "dask?max_workers=2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Interrupt once the cluster's processes exist, before the check can finish.
        deadline = time.monotonic() + 60
        children: list[psutil.Process] = []
        while not children and proc.poll() is None and time.monotonic() < deadline:
            children = psutil.Process(proc.pid).children(recursive=True)
            time.sleep(0.05)
        assert children, "the local cluster never started a process"
        time.sleep(0.3)
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    _gone, alive = psutil.wait_procs(children, timeout=15)
    for child in alive:
        child.kill()
    assert not alive, f"left running after Ctrl-C: {[p.pid for p in alive]}"
