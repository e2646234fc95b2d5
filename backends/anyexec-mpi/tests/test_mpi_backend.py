"""anyexec-mpi passes the conformance kit, and works both ways MPI users run a script.

The kit runs in this process with spawned workers (``MPIPoolExecutor``); the ``mpiexec``
launch, a plain ``python script.py`` without the environment on ``PATH``, and a dying worker
run in subprocesses, each in its own session so that a hang stops every process it started.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from anyexec_mpi import MPIBackend
from anyexec_mpi._launcher import mpich_wheel_bin

import anyexec
from anyexec.testing import BackendConformance

BIN = mpich_wheel_bin()


class TestMPI(BackendConformance):
    backend = "mpi"
    options = {"max_workers": 2}


def _run(argv: list[str], tmp_path: Path, *, env: dict[str, str] | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in its own session; on a hang, stop that session (only ours) and fail."""
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{argv} hung; output:\n{out}\n{err}")
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _env_without_venv_on_path() -> dict[str, str]:
    """The environment of a user who runs the venv's python without activating the venv."""
    env = dict(os.environ)
    folders = env.get("PATH", "").split(os.pathsep)
    env["PATH"] = os.pathsep.join(f for f in folders if BIN is None or Path(f).resolve() != BIN)
    env.pop("VIRTUAL_ENV", None)
    env.pop("ANYEXEC_BACKEND", None)
    return env


SCRIPT = textwrap.dedent("""
    import json, os
    import anyexec

    def square(x):
        return x * x

    if __name__ == "__main__":
        report = {"caller": os.getpid(), "rounds": []}
        for _ in range(2):  # a second executor reuses the launched workers
            with anyexec.get_executor("mpi") as ex:
                pids = set(ex.map(lambda _: os.getpid(), range(12), chunksize=1))
                report["rounds"].append({
                    "workers": ex.max_workers,
                    "squares": list(ex.map(square, range(6))),
                    "pids": sorted(pids),
                })
        try:
            anyexec.get_executor("mpi", max_workers=1)
        except ValueError as exc:
            report["refused"] = str(exc)
        print(json.dumps(report))
""")


def test_the_backend_is_registered_by_the_installed_distribution():
    info = anyexec.available_backends()["mpi"]
    assert info.available, info.reason
    assert info.source == "anyexec-mpi"
    assert info.version == metadata.version("mpi4py")
    assert "mpi4py" in info.aliases
    direct = json.loads(metadata.distribution("anyexec-mpi").read_text("direct_url.json") or "{}")
    assert not direct.get("dir_info", {}).get("editable", False)


def test_listing_backends_does_not_import_mpi4py(tmp_path: Path):
    code = "import anyexec, sys; anyexec.available_backends(); print('mpi4py' in sys.modules)"
    out = _run([sys.executable, "-c", code], tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_mpiexec_launch_uses_the_other_ranks_as_workers(tmp_path: Path):
    assert BIN is not None, "the mpich wheel's mpiexec was not found"
    (tmp_path / "job.py").write_text(SCRIPT)
    argv = [str(BIN / "mpiexec"), "-n", "3", sys.executable, "-m", "mpi4py.futures", "job.py"]
    out = _run(argv, tmp_path, env=_env_without_venv_on_path())
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    first, second = report["rounds"]
    assert first["workers"] == second["workers"] == 2
    assert first["squares"] == [0, 1, 4, 9, 16, 25]
    assert report["caller"] not in first["pids"]
    assert first["pids"] == second["pids"], "the second executor did not reuse the ranks"
    assert "mpiexec -n 2" in report["refused"]


def test_plain_python_script_spawns_workers_without_mpiexec_on_path(tmp_path: Path):
    script = SCRIPT.replace('get_executor("mpi")', 'get_executor("mpi", max_workers=2)')
    (tmp_path / "job.py").write_text(script)
    env = _env_without_venv_on_path()
    assert BIN is None or all(Path(f).resolve() != BIN for f in env["PATH"].split(os.pathsep))
    out = _run([sys.executable, "job.py"], tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    for round_ in report["rounds"]:
        assert round_["workers"] == 2
        assert round_["squares"] == [0, 1, 4, 9, 16, 25]
        assert report["caller"] not in round_["pids"]
    assert "refused" not in report  # spawned pools are sized by max_workers


def test_a_dying_worker_ends_the_whole_job_so_no_recovery_is_declared(tmp_path: Path):
    # MPI's fault model: mpiexec stops every process of a job when one exits abnormally, the
    # caller included. That is why the backend declares neither "isolated" nor
    # "recovers_from_worker_death"; this pins the behaviour the docs describe.
    (tmp_path / "job.py").write_text(textwrap.dedent("""
        import os
        import anyexec

        if __name__ == "__main__":
            with anyexec.get_executor("mpi", max_workers=2) as ex:
                list(ex.map(lambda x: os._exit(13) if x == 3 else x, range(6), chunksize=1))
            print("survived")
    """))
    out = _run([sys.executable, "job.py"], tmp_path, env=_env_without_venv_on_path())
    assert out.returncode != 0
    assert "survived" not in out.stdout
    assert not {"isolated", "recovers_from_worker_death"} & MPIBackend.capabilities
