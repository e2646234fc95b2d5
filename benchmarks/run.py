"""The benchmark command: ``python -m benchmarks [--quick | --smoke] [--backends a,b]``.

Every workload runs on every backend installed here: one child process per (workload,
backend), bounded by a timeout, in which anyexec and the engine used directly alternate.
Start-up costs run in a fresh interpreter per measurement. Prints a table and the targets'
verdicts; writes ``results.json``, ``summary.md`` and one PNG per workload into
``benchmarks/results/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import coldstart
from benchmarks.report import plot, table, verdicts
from benchmarks.workloads import SIZES

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
WORKLOADS = ("tiny", "cpu", "sleep", "stream")
# serial at 10-way sleep is 5 s of nothing and has no engine to compare with.
_SKIP = {("sleep", "serial")}
_TIMEOUT = {"smoke": 60.0, "quick": 120.0, "full": 420.0}


def installed_backends() -> list[str]:
    """Backends that can run here, in a fixed order (built-ins first)."""
    import anyexec

    order = ["serial", "threads", "processes", "joblib", "pathos", "ray", "dask"]
    usable = [name for name, info in anyexec.available_backends().items() if info.available]
    return sorted(usable, key=lambda n: (order.index(n) if n in order else len(order), n))


def run_group(workloads: list[str], backend: str, mode: str,
              timeout: float) -> list[dict[str, Any]]:
    """Run workloads on one backend in a child process in its own session; kill that session
    when done. The engine starts once for the whole group."""
    def failed(error: str) -> list[dict[str, Any]]:
        return [{"workload": w, "backend": backend, "error": error} for w in workloads]

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cases.json"
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        # Output goes to a file, not a pipe: engines' helper processes (loky's resource
        # tracker, Ray's raylet) inherit it and would keep a pipe open after the child exits.
        with open(Path(tmp) / "stderr.txt", "w+") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.case", "--workloads", ",".join(workloads),
                 "--backend", backend, "--mode", mode, "--out", str(out)],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True,
                start_new_session=True)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                coldstart.kill_session(proc)
                return failed(f"timed out after {timeout:g} s")
            coldstart.kill_session(proc)
            err.seek(0)
            tail = err.read().strip().splitlines()[-3:]
        if not out.exists():
            return failed(f"exit {proc.returncode}: {' / '.join(tail)}")
        return list(json.loads(out.read_text()))


def run_case(workload: str, backend: str, mode: str, timeout: float) -> dict[str, Any]:
    """One workload on one backend (see ``run_group``)."""
    return run_group([workload], backend, mode, timeout)[0]


def run_starts(backends: list[str], reps: int, timeout: float,
               budget: float | None = None) -> list[dict[str, Any]]:
    """Import time and time to first result, each in a fresh interpreter, alternating.

    With a ``budget`` (seconds), a backend stops repeating once it has used it: a Ray start
    takes 3-12 s, and quick mode has five minutes for everything."""
    jobs: list[tuple[str, str, dict[str, str]]] = [
        ("import", "anyexec", coldstart.import_scripts)]
    jobs += [("first result", b, coldstart.first_result_scripts(b))
             for b in backends if b != "serial"]
    results = []
    for workload, backend, scripts in jobs:
        times: dict[str, list[float]] = {label: [] for label in scripts}
        record: dict[str, Any] = {"workload": workload, "backend": backend}
        began = time.monotonic()
        for _ in range(reps):
            if budget is not None and time.monotonic() - began > budget:
                break
            for label, script in scripts.items():
                got = coldstart.run_script(script, timeout)
                if "error" in got:
                    record["error"] = f"{label}: {got['error']}"
                    break
                times[label].append(got["seconds"])
                if got.get("extra") is not None:
                    record["engines"] = got["extra"]
            if "error" in record:
                break
        record["medians"] = {k: statistics.median(v) for k, v in times.items() if v}
        results.append(record)
        print(f"  {workload} {backend}: " + ", ".join(
            f"{k} {v:.3f}s" for k, v in record["medians"].items()) +
            (f" ERROR {record['error']}" if "error" in record else ""), flush=True)
    return results


def _groups(workloads: list[str], backend: str) -> list[list[str]]:
    same = [w for w in workloads if w != "sleep" and (w, backend) not in _SKIP]
    sleep = [w for w in workloads if w == "sleep" and (w, backend) not in _SKIP]
    return [g for g in (same, sleep) if g]


def machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "load": load,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_const", dest="mode", const="quick",
                       help="smaller sizes, 3 repetitions: under 5 minutes")
    group.add_argument("--smoke", action="store_const", dest="mode", const="smoke",
                       help="every path once at the smallest size (CI); no meaningful times")
    parser.add_argument("--backends", help="comma-separated subset of the installed backends")
    parser.add_argument("--workloads", help=f"comma-separated subset of {', '.join(WORKLOADS)}"
                                            ", start")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    args = parser.parse_args(argv)
    mode = args.mode or "full"
    sizes = SIZES[mode]
    backends = installed_backends()
    if args.backends:
        wanted = args.backends.split(",")
        backends = [b for b in backends if b in wanted]
    workloads = args.workloads.split(",") if args.workloads else [*WORKLOADS, "start"]
    timeout = _TIMEOUT[mode]
    info = machine()
    print(f"anyexec benchmarks, mode {mode}, backends {', '.join(backends)}; {info}", flush=True)
    cases = []
    for backend in backends:
        # Workloads sharing max_workers share one process, so the engine starts once.
        for batch in _groups([w for w in WORKLOADS if w in workloads], backend):
            began = time.monotonic()
            got = run_group(batch, backend, mode, timeout * len(batch))
            for case in got:
                status = str(case.get("error", "ok")).splitlines()[0][:160]
                print(f"  {case['workload']} {backend}: {status}", flush=True)
            print(f"    ({backend}: {time.monotonic() - began:.1f} s)", flush=True)
            cases.extend(got)
    cases.sort(key=lambda c: WORKLOADS.index(c["workload"]))
    # Fresh-interpreter start-ups of Ray take seconds each: quick mode takes two of each.
    start_reps = sizes.reps if mode == "full" else min(2, sizes.reps)
    budget = None if mode == "full" else 15.0
    starts = run_starts(backends, start_reps, timeout, budget) if "start" in workloads else []
    info["load_after"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    text = table(cases, starts)
    lines = verdicts(cases, starts)
    print()
    print(text)
    print()
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(
        {"mode": mode, "machine": info, "cases": cases, "starts": starts}, indent=1))
    (args.out / "summary.md").write_text(
        f"Mode `{mode}`; {info}\n\n{text}\n\n```\n" + "\n".join(lines) + "\n```\n")
    if not args.no_plots:
        for path in plot(cases, starts, args.out):
            print(f"wrote {path}")
    return 0
