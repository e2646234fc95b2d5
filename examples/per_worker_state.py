"""Per-worker state: load a model once in each worker, then apply it to many items.

    python examples/per_worker_state.py [--backend processes] [--items 1000] [--workers 2]

Works the same on every backend (``serial``, ``threads``, ``processes``, ``joblib``,
``pathos``, ``ray``, ``dask``, plugins): ``initializer`` runs once in each worker process
(once per thread on ``threads``) before its first task, and again in a worker that replaces
one that died.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time

# The worker-side functions come from an importable module (see model_worker.py for why).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import model_worker

import anyexec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="processes")
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    started = time.perf_counter()
    with anyexec.get_executor(args.backend, max_workers=args.workers,
                              initializer=model_worker.load_model,
                              initargs=("weights.bin", 0.5)) as ex:
        results = list(ex.map(model_worker.predict, range(args.items)))
    took = time.perf_counter() - started

    loads = collections.Counter(pid for _value, pid, _loads in results)
    print(f"{args.items} predictions on {args.backend} in {took:.2f} s")
    print(f"answered by {len(loads)} worker process(es); initializer runs seen per process: "
          f"{sorted({n for _v, _p, n in results})}")
    assert results[3][0] == 3 * len("weights.bin") + 0.5


if __name__ == "__main__":
    main()
