"""The ``anyexec`` command: list backends, check that one runs (or is reachable) from here."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Sequence

__all__ = ["main"]

# Plain text: argparse prints it as is (the module docstring's reST markup would show raw).
_DESCRIPTION = """\
Run a function over many items on any execution engine. This command lists the
backends anyexec can use here, and checks that one of them starts or that a
cluster is reachable from here."""
_EPILOG = """examples:
  anyexec backends                      which backends run here, and what to install if not
  anyexec check processes               start a local process pool and probe its workers
  anyexec check dask://10.0.0.5:8786    reach a running Dask cluster and probe every worker
  anyexec check "ray?address=auto"      join the local Ray cluster (ray start --head)
"""


def _backends_table() -> str:
    from anyexec._registry import available_backends

    infos = available_backends()
    rows = [("backend", "available", "version", "source", "reason / install hint")]
    for name, info in infos.items():
        rows.append((
            name + (f" ({', '.join(info.aliases)})" if info.aliases else ""),
            "yes" if info.available else "no",
            info.version or "-",
            info.source,
            info.reason or "",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for row in rows:
        cells = [row[i].ljust(widths[i]) for i in range(4)] + [row[4]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    import anyexec

    parser = argparse.ArgumentParser(
        prog="anyexec", description=_DESCRIPTION, epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--version", action="version",
        version=f"anyexec {anyexec.__version__} (Python {platform.python_version()})")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("backends", help="list every backend, whether it runs here, and why not",
                   description="List every backend, whether it runs here, its engine version, "
                               "and what to install when it cannot run.")
    check = sub.add_parser(
        "check", help="start or reach a backend, probe every worker, time a round trip",
        description="Start the backend SPEC (or connect to its cluster), run a probe on each "
                    "worker slot, print the workers with their Python, anyexec and engine "
                    "versions, and time a submit -> result round trip. Exits 0 when all of "
                    "that worked, 1 with the reason (and what to do) when it did not.")
    check.add_argument("spec", metavar="SPEC",
                       help="a backend spec: a name, NAME://ADDRESS, or NAME?option=value&...")
    check.add_argument("--timeout", type=_positive_seconds, default=120.0, metavar="SECONDS",
                       help="give up after this long (default: 120)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``anyexec`` and ``python -m anyexec``."""
    args = _parser().parse_args(argv)
    if args.command == "backends":
        print(_backends_table())
        return 0
    from anyexec._check import run_check

    try:
        return run_check(args.spec, timeout=args.timeout)
    except KeyboardInterrupt:
        # The executor, if the check had one, has already stopped its workers (its Ctrl-C
        # path). What may be left is an engine interrupted half-built: a Dask client still
        # connecting waits forever in its finaliser at interpreter exit (seen in tests).
        # Stop the child processes this command started (a local cluster's workers would
        # also notice their parent is gone, only later) and leave now.
        print("anyexec check: interrupted", file=sys.stderr, flush=True)
        _stop_children()
        sys.stdout.flush()
        os._exit(130)


def _stop_children() -> None:
    import multiprocessing

    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    for child in children:
        child.join(5)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
