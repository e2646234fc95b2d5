"""Start-up costs, each measured in a fresh interpreter: ``import anyexec`` and time to the
first result of a new executor, against the engine used directly, alternating A B A B.

Every script times itself from its first line (so interpreter start-up, equal for both, is
left out) and prints one JSON object.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any

__all__ = ["ENGINE_MODULES", "first_result_scripts", "import_scripts", "run_script"]

#: Modules that ``import anyexec`` must not import.
ENGINE_MODULES = ("ray", "dask", "distributed", "joblib", "pathos", "multiprocess", "loky",
                  "mpire", "numpy", "concurrent.futures.process", "multiprocessing.pool")

_PRELUDE = "import time; _t0 = time.perf_counter()\n"
_REPORT = "import json, sys; print(json.dumps({'seconds': _t1 - _t0, 'extra': _extra}))\n"

import_scripts = {
    "anyexec": _PRELUDE + (
        "import anyexec\n_t1 = time.perf_counter()\nimport sys\n"
        f"_extra = sorted(m for m in {ENGINE_MODULES!r} if m in sys.modules)\n") + _REPORT,
    "import concurrent.futures": _PRELUDE + (
        "import concurrent.futures\n_t1 = time.perf_counter()\n_extra = None\n") + _REPORT,
}

_ANYEXEC_FIRST = _PRELUDE + """\
import anyexec
from benchmarks.workloads import inc
ex = anyexec.get_executor(BACKEND)
assert ex.submit(inc, 1).result() == 2
_t1 = time.perf_counter()
_extra = None
""" + _REPORT + "ex.shutdown()\n"

_DIRECT_FIRST = {
    "processes": """\
from concurrent.futures import ProcessPoolExecutor
from benchmarks.workloads import inc
pool = ProcessPoolExecutor()
assert pool.submit(inc, 1).result() == 2
""",
    "threads": """\
from concurrent.futures import ThreadPoolExecutor
from benchmarks.workloads import inc
pool = ThreadPoolExecutor()
assert pool.submit(inc, 1).result() == 2
""",
    "joblib": """\
from joblib import Parallel, delayed
from benchmarks.workloads import inc
assert Parallel(n_jobs=-1)([delayed(inc)(1)]) == [2]
""",
    "pathos": """\
from pathos.pools import ProcessPool
from benchmarks.workloads import inc
pool = ProcessPool()
assert pool.pipe(inc, 1) == 2
""",
    "ray": """\
import ray
from benchmarks.workloads import inc
ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
assert ray.get(ray.remote(inc).remote(1)) == 2
""",
    "dask": """\
from distributed import Client, LocalCluster
from benchmarks.workloads import inc
client = Client(LocalCluster(dashboard_address=None))
assert client.submit(inc, 1).result() == 2
""",
}


def first_result_scripts(backend: str) -> dict[str, str]:
    """{label: script} for time-to-first-result on ``backend``: anyexec and the engine."""
    scripts = {"anyexec": _ANYEXEC_FIRST.replace("BACKEND", repr(backend))}
    direct = _DIRECT_FIRST.get(backend)
    if direct is not None:
        body = direct + "_t1 = time.perf_counter()\n_extra = None\n"
        scripts[f"{backend} directly"] = _PRELUDE + body + _REPORT
    return scripts


def run_script(script: str, timeout: float) -> dict[str, Any]:
    """Run ``script`` in a fresh interpreter in its own session; kill that session after."""
    env = dict(os.environ, PYTHONPATH=_root())
    # Files, not pipes: the engine's helper processes inherit them and outlive the script.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=out, stderr=err,
                                text=True, env=env, cwd=_root(), start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_session(proc)
            return {"error": f"timed out after {timeout:g} s"}
        # The engine's helper processes (Ray's raylet, Dask's nanny) belong to this session.
        kill_session(proc)
        out.seek(0)
        err.seek(0)
        lines = out.read().splitlines()
        problem = err.read().strip().splitlines()[-1:] or ["no output"]
    for line in reversed(lines):
        if line.startswith("{"):
            return dict(json.loads(line))
    return {"error": f"exit {proc.returncode}: {problem[0]}"}


def kill_session(proc: subprocess.Popen[str]) -> None:
    """Stop what is left of the session we started for ``proc`` (its own process group id)."""
    import contextlib
    import signal

    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
