"""Progress display for ``map(progress=True)``: tqdm when installed, else a line on stderr."""

from __future__ import annotations

import sys
import time

from anyexec._record import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any, Protocol

    class Progress(Protocol):
        def update(self, n: int) -> None: ...
        def close(self) -> None: ...

__all__ = ["Progress", "make_progress"]


class _PlainProgress:
    """A single self-rewriting stderr line, refreshed at most five times a second."""

    def __init__(self, total: int | None, desc: str) -> None:
        self._total = total
        self._desc = desc
        self._count = 0
        self._start = time.monotonic()
        self._last = 0.0
        self._stream = sys.stderr
        self._render()

    def _render(self) -> None:
        elapsed = time.monotonic() - self._start
        if self._total:
            pct = 100.0 * self._count / self._total
            text = f"{self._desc}: {self._count}/{self._total} ({pct:3.0f}%) {elapsed:6.1f}s"
        else:
            text = f"{self._desc}: {self._count} {elapsed:6.1f}s"
        self._stream.write("\r" + text)
        self._stream.flush()

    def update(self, n: int) -> None:
        self._count += n
        now = time.monotonic()
        if now - self._last >= 0.2 or (self._total is not None and self._count >= self._total):
            self._last = now
            self._render()

    def close(self) -> None:
        self._render()
        self._stream.write("\n")
        self._stream.flush()


class _TqdmProgress:
    def __init__(self, total: int | None, desc: str) -> None:
        from tqdm.auto import tqdm

        self._bar: Any = tqdm(total=total, desc=desc, unit="item")

    def update(self, n: int) -> None:
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()


def make_progress(total: int | None, desc: str) -> Progress:
    """A progress display counting items as their results arrive."""
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return _PlainProgress(total, desc)
    return _TqdmProgress(total, desc)
