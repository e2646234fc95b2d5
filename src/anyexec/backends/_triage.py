"""After a pool broke: find which lost call crashed it by running each suspect alone."""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

__all__ = ["RerunAlone"]

C = TypeVar("C")


class RerunAlone(Generic[C]):
    """The calls that were running when a worker died, when the engine cannot tell which.

    Some engines (loky) kill every worker when one dies and fail every call in flight alike.
    Each such call is a suspect: it runs again alone, with nothing beside it, and only a call
    whose worker dies while it runs alone is the culprit. The others keep their results. While
    suspects wait or run, the owner starts nothing else (see :attr:`blocking`).

    Not thread-safe: the owner calls it under its own lock.
    """

    def __init__(self) -> None:
        self._suspects: deque[C] = deque()
        #: The suspect now running alone, if any.
        self.alone: C | None = None

    def lost(self, call: C) -> bool:
        """``call`` was lost when a worker died; True if it is the culprit (it ran alone),
        else it becomes a suspect, to run again alone."""
        if call is self.alone:
            self.alone = None
            return True
        self._suspects.append(call)
        return False

    def returned(self, call: C) -> None:
        """``call`` finished (its worker survived it): if it ran alone, it was innocent."""
        if call is self.alone:
            self.alone = None

    @property
    def blocking(self) -> bool:
        """Whether other calls must wait: a suspect waits or runs alone."""
        return self.alone is not None or bool(self._suspects)

    def next_alone(self, *, busy: bool) -> C | None:
        """The suspect to run now, alone; None while another call runs (``busy``) or none waits.

        The suspect returned must be started at once: it is now :attr:`alone`.
        """
        if self.alone is not None or busy or not self._suspects:
            return None
        self.alone = self._suspects.popleft()
        return self.alone

    def drain(self) -> list[C]:
        """Forget every suspect (the owner stops) and return those not yet rerun."""
        waiting = list(self._suspects)
        self._suspects.clear()
        self.alone = None
        return waiting
