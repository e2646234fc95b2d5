"""The ``big`` workload: a large object bound to the function, many tiny items (issue 12).

``python -m benchmarks.big [--backends processes,ray] [--mb 100] [--items 200] [--reps 3]``

For each backend, in a child process of its own: a warm executor with ``max_workers=2`` runs
``list(ex.map(partial(touch, big), range(items)))`` with a fresh ``partial`` each repetition (so
each repetition ships the object again, as a new function would), once with ``big`` a
``bytes`` object and once a NumPy array of the same size. Beside it, in the same child and
alternating with it:

- ``raw``: the reference, "pickle it once and copy it through a pipe to each worker": two warm
  processes each receive the pickled function once and run half of the items;
- the engine's own idiom: ``multiprocessing.Pool(initializer=..., initargs=(big,))`` (pool start
  included; with the default ``fork`` the workers inherit ``big`` instead of receiving it),
  ``ray.put`` + one task per worker's share of items, Dask ``scatter(broadcast=True)`` +
  ``client.map``, joblib ``Parallel`` (arrays memmapped; ``bytes`` in one task per worker).

Reported per backend and kind: median seconds, the ratio anyexec/raw, and the largest growth of
a worker's unique memory (USS, psutil) during anyexec's map, against the object's size.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("processes", "joblib", "pathos", "loky", "mpi", "ray", "dask")
KINDS = ("bytes", "numpy")

# -- the task (importable by reference from every worker) -----------------------------------

_HELD: Any = None


def touch(big: Any, x: int) -> int:
    """A tiny task that needs the big object: read one element."""
    return int(big[x % len(big)]) + x


def pid_of(_x: Any = None) -> int:
    return os.getpid()


def _hold(big: Any) -> None:
    global _HELD
    _HELD = big


def _touch_held(x: int) -> int:
    return touch(_HELD, x)


def _touch_many(big: Any, xs: list[int]) -> int:
    return sum(touch(big, x) for x in xs)


def _raw_worker(conn: Any) -> None:
    """Receive one pickled function, then run the items sent; repeat until told to stop."""
    import cloudpickle  # noqa: F401

    while True:
        data = conn.recv_bytes()
        if not data:
            return
        fn = pickle.loads(data)
        xs = conn.recv()
        conn.send(sum(fn(x) for x in xs))
        del fn


# -- the measured sides -----------------------------------------------------------------------


def make_big(kind: str, megabytes: int) -> Any:
    size = megabytes * 1_000_000
    if kind == "bytes":
        return os.urandom(size)
    import numpy as np

    return np.random.default_rng(0).random(size // 8)


class Raw:
    """Two warm processes; each gets the function pickled once, through its own pipe."""

    def __init__(self, workers: int = 2) -> None:
        ctx = multiprocessing.get_context("fork")
        self.conns = []
        self.procs = []
        for _ in range(workers):
            here, there = ctx.Pipe()
            proc = ctx.Process(target=_raw_worker, args=(there,), daemon=True)
            proc.start()
            self.conns.append(here)
            self.procs.append(proc)

    def run(self, fn: Callable[[int], int], items: int) -> int:
        import cloudpickle

        data = cloudpickle.dumps(fn, protocol=5)
        share = [list(range(items))[i::len(self.conns)] for i in range(len(self.conns))]
        for conn in self.conns:
            conn.send_bytes(data)
        for conn, xs in zip(self.conns, share, strict=True):
            conn.send(xs)
        return sum(conn.recv() for conn in self.conns)

    def close(self) -> None:
        for conn in self.conns:
            conn.send_bytes(b"")
        for proc in self.procs:
            proc.join(5)


def idiom(backend: str, big: Any, items: int) -> tuple[str, Callable[[], int]] | None:
    """The engine's own way to give every worker a big object once."""
    if backend in ("processes", "pathos", "loky"):
        def pool_initializer() -> int:
            with multiprocessing.Pool(2, initializer=_hold, initargs=(big,)) as pool:
                return sum(pool.map(_touch_held, range(items)))
        return "Pool(initializer) incl. start", pool_initializer
    if backend == "joblib":
        from joblib import Parallel, delayed

        if not isinstance(big, bytes):
            def memmapped() -> int:
                # joblib memmaps arrays over 1 MB given as arguments: one file, every task.
                return sum(Parallel(n_jobs=2)(delayed(touch)(big, x) for x in range(items)))
            return "Parallel(delayed(f)(array, x)), memmapped", memmapped

        def batched() -> int:
            # bytes are not memmapped: one task per worker, each carrying the object once.
            xs = list(range(items))
            return sum(Parallel(n_jobs=2)(delayed(_touch_many)(big, xs[i::2]) for i in range(2)))
        return "Parallel, 2 tasks of 100 items", batched
    if backend == "ray":
        import ray

        remote = ray.remote(_touch_many)

        def put() -> int:
            ref = ray.put(big)
            xs = list(range(items))
            return sum(ray.get([remote.remote(ref, xs[i::2]) for i in range(2)]))
        return "ray.put + 2 tasks", put
    if backend == "dask":
        import distributed

        # The Dask user's own cluster, as benchmarks/engines.py gives every Dask idiom.
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                           dashboard_address=None)
        client = distributed.Client(cluster, set_as_default=False)

        def scatter() -> int:
            ref = client.scatter(big, broadcast=True)
            xs = list(range(items))
            futures = client.map(_touch_many, [ref, ref], [xs[0::2], xs[1::2]], pure=False)
            return sum(client.gather(futures))
        return "scatter(broadcast) + client.map", scatter
    return None


def uss(pids: set[int]) -> dict[int, int]:
    import psutil

    out = {}
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            out[pid] = psutil.Process(pid).memory_full_info().uss
    return out


def child(backend: str, kind: str, megabytes: int, items: int, reps: int) -> dict[str, Any]:
    import anyexec

    big = make_big(kind, megabytes)
    expected = sum(touch(big, x) for x in range(items))
    ex = anyexec.get_executor(backend, max_workers=2)
    raw = Raw()
    times: dict[str, list[float]] = {"anyexec": [], "raw": []}
    growth: list[int] = []
    try:
        pids = set(ex.map(pid_of, range(20), chunksize=1))  # warm: workers started
        own = idiom(backend, big, items)
        if own is not None:
            times[own[0]] = []
            own[1]()  # warm
        raw.run(partial(touch, b"x" * 10), 4)
        for rep in range(reps):
            sides: list[tuple[str, Callable[[], int]]] = [
                ("anyexec", lambda: sum(ex.map(partial(touch, big), range(items)))),
                ("raw", lambda: raw.run(partial(touch, big), items)),
            ]
            if own is not None:
                sides.append(own)
            shift = rep % len(sides)
            for label, run in sides[shift:] + sides[:shift]:
                before = uss(pids) if label == "anyexec" else {}
                started = time.perf_counter()
                total = run()
                times[label].append(time.perf_counter() - started)
                if total != expected:
                    raise AssertionError(f"{label} returned {total}, expected {expected}")
                if label == "anyexec":
                    pids |= set(ex.map(pid_of, range(8), chunksize=1))
                    after = uss(pids)
                    growth.append(max((after[p] - before.get(p, after[p]) for p in after),
                                      default=0))
    finally:
        raw.close()
        ex.shutdown()
    return {"backend": backend, "kind": kind, "mb": megabytes, "items": items,
            "times": times, "uss_growth": growth}


def run_child(backend: str, kind: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (os.environ.get("PYTHONPATH"), str(ROOT)) if p))
        with open(Path(tmp) / "err.txt", "w+") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.big", "--child", backend, "--kind", kind,
                 "--mb", str(args.mb), "--items", str(args.items), "--reps", str(args.reps),
                 "--out", str(out)],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err,
                start_new_session=True)
            try:
                proc.wait(timeout=args.timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
                return {"backend": backend, "kind": kind, "error": "timeout"}
            finally:
                # The child's own session: engines' helpers it left behind.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
            if not out.exists():
                err.seek(0)
                return {"backend": backend, "kind": kind, "error": err.read()[-2000:]}
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| backend | object | anyexec (s) | raw once-per-worker copy (s) | anyexec / raw "
             "| engine idiom (s) | worker USS growth (MB) |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['backend']} | {r['kind']} | error: "
                         f"{r['error'].strip().splitlines()[-1][:80]} | | | | |")
            continue
        med = {k: statistics.median(v) for k, v in r["times"].items()}
        ratios = [a / b for a, b in zip(r["times"]["anyexec"], r["times"]["raw"], strict=True)]
        others = [f"{k}: {v:.2f}" for k, v in med.items() if k not in ("anyexec", "raw")]
        lines.append(
            f"| {r['backend']} | {r['mb']} MB {r['kind']} | {med['anyexec']:.2f} "
            f"| {med['raw']:.2f} | {statistics.median(ratios):.2f}x "
            f"| {'; '.join(others) or '-'} "
            f"| {max(r['uss_growth']) / 1e6:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--child")
    parser.add_argument("--kind")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    if args.child:
        result = child(args.child, args.kind, args.mb, args.items, args.reps)
        Path(args.out).write_text(json.dumps(result))
        sys.stdout.flush()
        os._exit(0)  # engines leave non-daemon threads behind; the result is written
    results = []
    for backend in args.backends.split(","):
        for kind in args.kinds.split(","):
            results.append(run_child(backend, kind, args))
            print(table(results[-1:]).splitlines()[-1], flush=True)
    print()
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
