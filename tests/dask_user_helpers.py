"""A module the Dask user script imports from its own folder (not installed anywhere).

Workers find it because anyexec ships the caller's ``sys.path`` with the function; that works
when the workers share this file system, as on one machine or a cluster with a shared home.
"""

from __future__ import annotations

import os


def weigh(x: int) -> tuple[int, int]:
    """Return the item tripled and the PID of the process that ran it."""
    return 3 * x, os.getpid()
