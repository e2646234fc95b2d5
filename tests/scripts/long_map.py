"""A user script with a long map, interrupted with SIGINT by tests/test_interrupt.py."""

import sys

import anyexec
from anyexec.testing import tasks

if __name__ == "__main__":
    backend = sys.argv[1]
    seconds = float(sys.argv[2])
    with anyexec.get_executor(backend, max_workers=2) as ex:
        results = ex.map(tasks.sleep_then_return, range(1000), [seconds] * 1000, chunksize=1)
        print("started", flush=True)
        for _ in results:
            pass
