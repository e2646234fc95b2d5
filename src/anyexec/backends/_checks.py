"""Checks of a backend's options, with errors that say what was wrong and how to fix it.

Every message names the option, what it accepts, what it got, and ``origin`` (who set it, for
example "the dask backend"), in the same words on every backend.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

from anyexec._record import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

__all__ = ["check_amount", "check_amounts", "check_choice", "check_int", "worker_count"]


def worker_count(max_workers: object, *, origin: str, default: int | None = None) -> int:
    """``max_workers`` checked (a positive int or None), then resolved: None gives ``default``,
    else the machine's CPU count."""
    from anyexec._selection import check_max_workers

    check_max_workers(max_workers, origin=origin)
    if isinstance(max_workers, int):
        return max_workers
    return default or os.cpu_count() or 1


def check_choice(name: str, value: object, choices: Any, *, origin: str) -> Any:
    """``value`` if it is one of ``choices`` (a ``Literal[...]`` type, or a tuple), else
    ``ValueError`` listing them. Reading the choices from the option's ``Literal`` annotation
    keeps the message, the type checker and the spec-string conversion in agreement."""
    import typing  # here: the process backends import this module, and typing is slow to load

    accepted = typing.get_args(choices) if typing.get_origin(choices) is typing.Literal \
        else tuple(choices)
    if value in accepted and not isinstance(value, bool):
        return value
    raise ValueError(f"{name} must be one of {', '.join(map(repr, accepted))} (from {origin}), "
                     f"got {value!r}")


def check_int(name: str, value: object, *, origin: str, minimum: int | None = None,
              optional: bool = False) -> int | None:
    """``value`` if it is an int (not a bool) of at least ``minimum`` (or None, if
    ``optional``); else ``TypeError``/``ValueError`` saying what is accepted."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        kind = "an int or None" if optional else "an int"
        raise TypeError(f"{name} must be {kind} (from {origin}), got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum} (from {origin}), got {value}")
    return value


def check_amount(name: str, value: object, *, origin: str, optional: bool = True,
                 positive: bool = False) -> float | None:
    """``value`` as a float if it is a finite number >= 0 (> 0 with ``positive``), or None
    if ``optional``; else an error saying what is accepted (CPUs, memory, seconds)."""
    if value is None and optional:
        return None
    bound = "> 0" if positive else ">= 0"
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        kind = f"a number {bound}" + (" or None" if optional else "")
        raise TypeError(f"{name} must be {kind} (from {origin}), got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {bound} (from {origin}), got {value}")
    return float(value)


def check_amounts(name: str, value: object, *, origin: str) -> dict[str, float] | None:
    """A mapping of resource names to amounts >= 0 (``{"GPU": 1}``), or None."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
        raise ValueError(f"{name} must map resource names to amounts >= 0, for example "
                         f"{{\"GPU\": 1}} (from {origin}); got {value!r}")
    amounts: dict[str, float] = {}
    for key, amount in value.items():
        check_amount(f"{name}[{key!r}]", amount, origin=origin, optional=False)
        amounts[key] = float(amount)
    return amounts
