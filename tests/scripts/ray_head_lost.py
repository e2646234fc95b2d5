"""Lose the head node of a Ray cluster in the middle of a map, as a user's script would.

Usage: ``python ray_head_lost.py NODES``. Starts a cluster of NODES nodes (one CPU each) on
127.0.0.1 with ``ray.cluster_utils.Cluster`` (its GCS server, raylets and helpers are separate
processes started by this script), maps 0.3 s calls on it through ``anyexec`` with
``chunksize=1``, SIGKILLs every process of the head node by PID after the first result, and
prints one JSON line: what the map raised, seconds from the kill to the error and for
``shutdown()``. Then it stops the rest of the cluster (by its handles) and ends by itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from typing import Any

# Every Ray process on 127.0.0.1 (read by Ray at import).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import psutil

import anyexec


def nap(x: int) -> int:
    time.sleep(0.3)
    return x


def kill_with_children(processes: list[Any]) -> None:
    """SIGKILL these processes and every process they started (Ray's agents), by PID."""
    pids: list[int] = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            pids += [process.pid, *(c.pid for c in psutil.Process(process.pid).children(True))]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for process in processes:
        process.wait()


def main(nodes: int) -> None:
    from ray.cluster_utils import Cluster

    cluster: Any = Cluster(initialize_head=True,
                           head_node_args={"num_cpus": 1, "include_dashboard": False})
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=1)
    report: dict[str, Any] = {"nodes": nodes, "address": cluster.address}
    try:
        ex = anyexec.get_executor(f"ray://{cluster.address}")
        try:
            results = ex.map(nap, range(40), chunksize=1)
            report["first"] = next(results)
            kill_with_children([p for _kind, p in cluster.head_node.live_processes()])
            killed = time.monotonic()
            report["killed_at"] = time.time()  # the test times the script's end from here
            try:
                report["results"] = len(list(results))
            except Exception as exc:
                report["error"] = f"{type(exc).__name__}: {exc}"
                report["cause"] = type(exc.__cause__).__name__
                report["item_specific"] = getattr(exc.__cause__, "item_specific", None)
            report["error_after"] = round(time.monotonic() - killed, 2)
        finally:
            began = time.monotonic()
            ex.shutdown()
            report["shutdown"] = round(time.monotonic() - began, 2)
    finally:
        print(json.dumps(report), flush=True)
        # The other nodes' processes, by their handles (Cluster.shutdown() would call
        # ray.shutdown(), which blocks until Ray ends this process).
        kill_with_children([p for node in cluster.list_all_nodes()
                            for _kind, p in node.live_processes()])


if __name__ == "__main__":
    main(int(sys.argv[1]))
