"""The classic file pipeline, run serially and then on every installed backend.

Each file is read, preprocessed and processed; every step sleeps a little (standing in for disk,
network and CPU work, as in the tutorials this project grew from) and the processing step also
does some real CPU work. The same ``pipeline`` function runs on each backend; only the name
passed to ``get_executor`` changes. Run it with ``./scripts/demo`` (or ``python
examples/file_pipeline.py --files 40``).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

import anyexec


def read(path: Path) -> bytes:
    time.sleep(0.01)  # disk latency
    return path.read_bytes()


def preprocess(data: bytes) -> bytes:
    time.sleep(0.01)  # e.g. decoding
    return data.lower()


def process(data: bytes) -> str:
    time.sleep(0.02)  # e.g. a remote call
    digest = data
    for _ in range(2_000):  # and some pure-Python CPU work
        digest = hashlib.sha256(digest).digest()
    return digest.hex()[:12]


def pipeline(path: Path) -> tuple[str, str]:
    return path.name, process(preprocess(read(path)))


def make_files(folder: Path, count: int) -> list[Path]:
    paths = []
    for i in range(count):
        path = folder / f"file_{i:03d}.txt"
        path.write_bytes(f"Record {i}\n".encode() * 200)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=40, help="how many files (default 40)")
    parser.add_argument("--workers", type=int, default=4, help="max_workers (default 4)")
    parser.add_argument("--backends", nargs="*", help="backends to run (default: all installed)")
    args = parser.parse_args(argv)

    infos = anyexec.available_backends()
    names = args.backends or [n for n, info in infos.items() if info.available]
    names = ["serial"] + [n for n in names if n != "serial"]
    skipped = {n: i.reason for n, i in infos.items() if not i.available}

    with tempfile.TemporaryDirectory() as tmp:
        files = make_files(Path(tmp), args.files)
        reference: list[tuple[str, str]] | None = None
        rows = []
        for name in names:
            started = time.perf_counter()
            try:
                with anyexec.get_executor(name, max_workers=args.workers) as ex:
                    first = time.perf_counter()
                    results = list(ex.map(pipeline, files))
                    ran = time.perf_counter() - first
            except anyexec.AnyexecError as exc:
                print(f"{name}: skipped ({exc})", file=sys.stderr)
                continue
            total = time.perf_counter() - started
            reference = reference or results
            assert results == reference, f"{name} returned different results"
            rows.append((name, total, ran))
            print(f"  {name:<10} done in {total:6.2f} s", file=sys.stderr, flush=True)

    serial_time = rows[0][2]
    print(f"\n{args.files} files, read -> preprocess -> process, max_workers={args.workers}\n")
    print(f"{'backend':<12}{'wall (s)':>10}{'map only (s)':>14}{'speed-up':>10}")
    for name, total, ran in rows:
        print(f"{name:<12}{total:>10.2f}{ran:>14.2f}{serial_time / ran:>9.1f}x")
    print("\n'wall' includes starting the engine; 'speed-up' compares the map itself to serial.")
    for name, reason in skipped.items():
        print(f"not installed: {name} ({reason})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
