"""A small ``GridSearchCV`` through anyexec's joblib backend vs Ray's and Dask's own, side by side.

Run: ``.venv/bin/python -m benchmarks.joblib_gridsearch`` (from the repository root; about a
minute). For each engine, one cluster is started (Ray with 2 CPUs; a Dask LocalCluster of 2
single-thread workers) and both backends run on it, alternating, ``REPS`` times each; the
scores must match and the best time of each is printed, with the ratio anyexec / engine's own.

The search: an SVC on scikit-learn's digits data set (1,797 images), 4 x 3 parameters x 3 folds
= 36 fits of ~30-80 ms each, the kind of search a user parallelises.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import joblib
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC

import anyexec
import anyexec.integrations.joblib  # registers backend="anyexec"

REPS = 5
GRID = {"C": [0.1, 1, 10, 100], "gamma": ["scale", 0.001, 0.0001]}


def search() -> list[float]:
    X, y = load_digits(return_X_y=True)
    fitted = GridSearchCV(SVC(), GRID, cv=3, n_jobs=-1).fit(X, y)
    return list(fitted.cv_results_["mean_test_score"])


def timed(config: Callable[[], Any]) -> tuple[float, list[float]]:
    start = time.perf_counter()
    with config():
        scores = search()
    return time.perf_counter() - start, scores


def compare(engine: str, own: Callable[[], Any], ours: Callable[[], Any]) -> None:
    timed(own)  # warm both paths: worker imports of scikit-learn, first-task costs
    timed(ours)
    t_own, t_ours = [], []
    for _ in range(REPS):
        t, own_scores = timed(own)
        t_own.append(t)
        t, our_scores = timed(ours)
        t_ours.append(t)
        if own_scores != our_scores:
            raise AssertionError(f"{engine}: scores differ between backends")
    best_own, best_ours = min(t_own), min(t_ours)
    print(f"{engine}: own joblib backend {best_own:.3f} s, anyexec {best_ours:.3f} s "
          f"(best of {REPS}); anyexec / own = {best_ours / best_own:.2f}", flush=True)


def ray_side_by_side() -> None:
    import ray
    from ray.util.joblib import register_ray

    # address="local": always a new cluster of our own, never one another process started.
    ray.init(address="local", num_cpus=2, logging_level="ERROR")
    try:
        register_ray()
        with anyexec.get_executor("ray") as ex:
            compare("ray",
                    lambda: joblib.parallel_config(backend="ray"),
                    lambda: joblib.parallel_config(backend="anyexec", executor=ex))
    finally:
        ray.shutdown()


def dask_side_by_side() -> None:
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster) as client, \
            anyexec.get_executor("dask", client=client) as ex:
        compare("dask",
                lambda: joblib.parallel_config(backend="dask"),
                lambda: joblib.parallel_config(backend="anyexec", executor=ex))


if __name__ == "__main__":
    X, y = load_digits(return_X_y=True)
    start = time.perf_counter()
    serial = GridSearchCV(SVC(), GRID, cv=3, n_jobs=1).fit(X, y)
    print(f"serial (n_jobs=1): {time.perf_counter() - start:.3f} s", flush=True)
    dask_side_by_side()
    ray_side_by_side()
