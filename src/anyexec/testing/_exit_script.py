"""A user's script about exit, run in a fresh interpreter by the conformance kit.

Usage: python -m anyexec.testing._exit_script BACKEND OPTIONS_JSON CASE PATH [REGISTER_FILE]

- ``no-shutdown``: submit a call that writes PATH after 1 s, then end without shutdown().
- ``shutdown-nowait``: the same, calling ``shutdown(wait=False)`` before the end.
- ``backend-shutdown-at-exit``: the same, and then what the core's exit hook does, by hand:
  the backend's own ``shutdown(wait=True)``, run where that hook runs (before ``atexit``
  handlers, while daemon threads still live). The backend must finish the call there.
- ``submit-at-exit``: an ``atexit`` handler submits to a live executor; it must be refused.

REGISTER_FILE, when given, is run first: it registers a backend that has no entry point.
"""

from __future__ import annotations

import atexit
import json
import runpy
import sys
import threading

import anyexec
from anyexec.testing import tasks


def main() -> None:
    backend, options, case, path = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
    if len(sys.argv) > 5:
        runpy.run_path(sys.argv[5])
    ex = anyexec.get_executor(backend, **options)
    if case == "submit-at-exit":
        assert ex.submit(tasks.square, 3).result(timeout=120) == 9

        def late_submit() -> None:
            for what, call in (("submit", lambda: ex.submit(tasks.square, 2)),
                               ("map", lambda: ex.map(tasks.square, [2])),
                               ("get_executor", lambda: anyexec.get_executor(backend))):
                try:
                    call()
                    print(f"{what}: accepted", flush=True)
                except RuntimeError as exc:
                    print(f"{what}: refused: {type(exc).__name__}", flush=True)

        atexit.register(late_submit)
        return
    ex.submit(tasks.write_after, path, 1.0)
    if case in ("shutdown-nowait", "backend-shutdown-at-exit"):
        ex.shutdown(wait=False)
    if case == "backend-shutdown-at-exit":
        threading._register_atexit(  # type: ignore[attr-defined]
            lambda: ex._backend.shutdown(wait=True))
    print("submitted", flush=True)


if __name__ == "__main__":
    main()
