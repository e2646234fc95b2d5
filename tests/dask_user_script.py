"""A user's script: the backend comes from ANYEXEC_BACKEND (for example dask://HOST:PORT).

Prints one JSON line with what it saw, for tests/test_backend_dask.py.
"""

from __future__ import annotations

import json
import os

import anyexec
from dask_user_helpers import weigh


def cube(x: int) -> int:
    # Defined in __main__: sent by value, so workers need not import this script.
    return x**3


def main() -> None:
    with anyexec.get_executor() as ex:
        weighed = list(ex.map(weigh, range(20), chunksize=1))
        report = {
            "backend": ex.backend,
            "max_workers": ex.max_workers,
            "cubes": list(ex.map(cube, range(10))),
            "tripled": [value for value, _pid in weighed],
            "worker_pids": sorted({pid for _value, pid in weighed}),
            "my_pid": os.getpid(),
        }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
