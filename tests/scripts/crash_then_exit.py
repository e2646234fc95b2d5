"""A user's script whose task crashes its worker: run by tests/test_crash_exit.py.

Usage: crash_then_exit.py BACKEND HOW OPTIONS_JSON SECONDS ARG_BYTES

One item of a map crashes its worker (HOW: raise, os-exit, sigkill, segfault); the script
reports what it got, maps again on the same executor keeping every good result, maps on a
second executor, and ends. It must end by itself, print only its own lines, and leave no
process behind, in every run.
"""

import json
import os
import signal
import sys
import time

import anyexec

BAD = 5


def work(item, how, seconds):
    x, _payload = item
    if x == BAD:
        if how == "raise":
            raise ValueError(f"item {x} is bad")
        if how == "os-exit":
            os._exit(3)
        if how == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        if how == "segfault":
            import ctypes

            ctypes.string_at(0)
    time.sleep(seconds)
    return x


def main():
    backend, how, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    seconds, arg_bytes = float(sys.argv[4]), int(sys.argv[5])
    items = [(x, b"x" * arg_bytes) for x in range(20)]

    def fn(item):
        return work(item, how, seconds)

    with anyexec.get_executor(backend, **options) as ex:
        try:
            list(ex.map(fn, items))
            print("first: no error")
        except Exception as exc:
            print(f"first: {type(exc).__name__}")
        results = list(ex.map(fn, items, on_error="return"))
        failed = [i for i, value in enumerate(results) if isinstance(value, Exception)]
        kept = [value for value in results if not isinstance(value, Exception)]
        print(f"failed: {failed}")
        print(f"kept in order: {kept == [x for x in range(20) if x not in failed]}")
    with anyexec.get_executor(backend, **options) as ex:
        print(f"second: {list(ex.map(abs, range(-2, 1)))}")


if __name__ == "__main__":
    main()
