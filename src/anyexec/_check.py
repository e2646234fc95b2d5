"""``anyexec check SPEC``: start or reach a backend, probe its workers, time a round trip.

The probe functions live here, in an importable module, so every engine sends them by
reference; this module imports only the standard library at the top.
"""

from __future__ import annotations

import os
import platform
import re
import socket
import statistics
import sys
import threading
import time
from typing import Any, TextIO

__all__ = ["probe", "run_check"]


def probe(engine: str | None, hold: float) -> dict[str, str]:
    """Runs on a worker: who it is and what it runs. Holds the slot so the next probe moves on."""
    from importlib import metadata

    import anyexec

    engine_version = "-"
    if engine:
        try:
            engine_version = metadata.version(engine)
        except metadata.PackageNotFoundError:
            engine_version = "not installed"
    time.sleep(hold)
    return {
        "host": socket.gethostname(),
        "pid": str(os.getpid()),
        "python": platform.python_version(),
        "anyexec": anyexec.__version__,
        "engine": engine_version,
    }


def echo(value: Any) -> Any:
    """The round-trip task."""
    return value


def _hint(spec: str, error: BaseException) -> str:
    """What to do about a failure to start or reach ``spec``, when we can tell."""
    text = f"{type(error).__name__}: {error}"
    lowered = text.lower()
    if not spec.lower().startswith("ray") and "ray" not in lowered:
        return ""
    if any(word in lowered for word in ("auth", "token", "unauthenticated")):
        return _RAY_TOKEN_HINT
    address = re.search(r"(\d{1,3}(?:\.\d{1,3}){3}|localhost|[\w.-]+\.[a-z]+):(\d+)", text)
    if isinstance(error, ConnectionError) and address and _port_answers(
            address.group(1), int(address.group(2))):
        # Ray reports only "Failed to connect" (the reason is in its C++ log lines); a port
        # that accepts connections yet refuses Ray is, most often, token authentication.
        if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
            return ("The address answers but refused this process. The cluster may use another "
                    "token: compare RAY_AUTH_TOKEN (or the file RAY_AUTH_TOKEN_PATH names) "
                    "with 'ray get-auth-token' on the head node; and check that the Ray "
                    "versions match.")
        return ("The address answers but refused this process. " + _RAY_TOKEN_HINT
                + " (Otherwise: check that the Ray versions match.)")
    if "timed out" in lowered or "connect" in lowered or "gcs" in lowered:
        return ("Is a Ray head node running at that address? Start one with 'ray start --head', "
                "and check the host and port ('ray status' on the head prints them).")
    return ""


_RAY_TOKEN_HINT = (
    "If the Ray cluster uses token authentication, this process needs the token: set "
    "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN=<token> (or RAY_AUTH_TOKEN_PATH=<file>) in this "
    "environment; 'ray get-auth-token' on the head node prints the token."
)


def _port_answers(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        return False
    return True


class _Lines:
    """Prints each line as soon as it is known, so a later hang still shows what worked."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def append(self, line: str) -> None:
        print(line, file=self._stream, flush=True)


class _Result:
    """Where the check got to, and what went wrong or looks suspicious."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.stage = "starting or connecting"
        self.warnings: list[str] = []


def _check(spec: str, hold: float, result: _Result, stdout: TextIO) -> None:
    import anyexec

    started = time.perf_counter()
    ex = anyexec.get_executor(spec)
    # As a context manager: on Ctrl-C the executor stops its workers instead of waiting.
    with ex:
        connect_seconds = time.perf_counter() - started
        engine = ex.hooks.engine
        here = {info.name: info for info in anyexec.available_backends().values()}
        info = here.get(ex.backend)
        out = _Lines(stdout)
        out.append(f"backend:      {ex.backend} (engine {info.version if info else '?'} here; "
                   f"ready in {connect_seconds:.2f} s)")
        out.append(f"max_workers:  {ex.max_workers}")

        result.stage = "probing the workers"
        slots = ex.max_workers
        answers = [f.result() for f in [ex.submit(probe, engine, hold) for _ in range(slots)]]
        workers = sorted({(a["host"], a["pid"]): a for a in answers}.values(),
                         key=lambda a: (a["host"], int(a["pid"])))
        hosts = {a["host"] for a in workers}
        out.append(f"workers:      {slots} probe(s) answered by {len(workers)} worker "
                   f"process(es) on {len(hosts)} host(s)")
        header = ("host", "pid", "python", "anyexec", engine or "engine")
        rows = [header] + [(a["host"], a["pid"], a["python"], a["anyexec"], a["engine"])
                           for a in workers]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        for row in rows:
            cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            out.append(("  " + "  ".join(cells)).rstrip())
        mine = platform.python_version()
        for a in workers:
            if a["python"].rsplit(".", 1)[0] != mine.rsplit(".", 1)[0]:
                result.warnings.append(
                    f"worker {a['host']}:{a['pid']} runs Python {a['python']}, this process "
                    f"{mine}: pickled functions may fail to load there")
            if a["anyexec"] != anyexec.__version__:
                result.warnings.append(
                    f"worker {a['host']}:{a['pid']} has anyexec {a['anyexec']}, this process "
                    f"{anyexec.__version__}")

        result.stage = "timing a round trip"
        trips = []
        for i in range(10):
            start = time.perf_counter()
            ex.submit(echo, i).result()
            trips.append(time.perf_counter() - start)
        out.append(f"round trip:   {min(trips) * 1e3:.2f} ms best, "
                   f"{statistics.median(trips) * 1e3:.2f} ms median (10 submit -> result)")
        result.stage = "shutting down"


def run_check(spec: str, *, timeout: float, hold: float = 0.2,
              stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Print what ``spec`` reaches; 0 when every step worked, 1 otherwise."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    result = _Result()

    print(f"anyexec check {spec}", file=stdout, flush=True)

    def give_up() -> None:
        stdout.flush()
        hint = _hint(spec, TimeoutError("timed out"))
        print(f"anyexec check: FAILED: no answer within {timeout:g} s while {result.stage} "
              f"for {spec!r}. {hint + ' ' if hint else ''}Raise the limit with --timeout "
              "SECONDS.", file=stderr)
        stderr.flush()
        # The engine's own threads may be stuck in a connect call that ignores us: leave now
        # rather than wait for them at interpreter exit.
        os._exit(1)

    # The check runs in the main thread (engines such as Ray install signal handlers there);
    # a timer thread ends the command if an engine never answers.
    watchdog = threading.Timer(timeout, give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        _check(spec, hold, result, stdout)
    except Exception as exc:  # reported below, whatever the engine raised
        result.error = exc
    finally:
        watchdog.cancel()
    if result.error is not None:
        error = result.error
        message = f"{type(error).__name__}: {error}".strip()
        hint = _hint(spec, error)
        print(f"anyexec check: FAILED while {result.stage} for {spec!r}: {message}"
              + (f"\n{hint}" if hint else ""), file=stderr)
        return 1
    for warning in result.warnings:
        print(f"warning: {warning}", file=stdout)
    print("OK", file=stdout)
    return 0
