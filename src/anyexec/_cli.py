"""The ``anyexec`` command: ``anyexec backends`` lists every backend and what it needs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from anyexec._registry import available_backends

__all__ = ["main"]


def _backends_table() -> str:
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``anyexec`` and ``python -m anyexec``."""
    parser = argparse.ArgumentParser(prog="anyexec", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("backends", help="list every backend, whether it runs here, and why not")
    args = parser.parse_args(argv)
    if args.command == "backends":
        print(_backends_table())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
