"""Make the MPICH wheel's ``mpiexec`` the one MPI finds when it spawns workers.

A plain ``python script.py`` is an MPI "singleton". To spawn workers, MPICH runs ``mpiexec``
found on ``PATH``, and pip puts the wheel's ``mpiexec`` in the environment's ``bin/`` directory,
which is not on ``PATH`` unless the environment is activated. Without it the spawn fails with
"PMII_singinit: execv failed" and MPI aborts. A different MPI's ``mpiexec`` earlier on ``PATH``
(a system Open MPI) cannot start MPICH processes either, so the wheel's one must come first.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import shutil
from pathlib import Path

__all__ = ["mpich_wheel_bin", "put_mpiexec_on_path"]


def mpich_wheel_bin() -> Path | None:
    """The directory holding the ``mpich`` distribution's ``mpiexec``, if it is installed."""
    try:
        dist = metadata.distribution("mpich")
    except metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if file.name == "mpiexec":
            path = Path(str(dist.locate_file(file))).resolve()
            if path.is_file():
                return path.parent
    return None


def put_mpiexec_on_path(library_version: str) -> str | None:
    """Prepend the wheel's ``bin`` to this process's ``PATH`` when MPI would not find it.

    Only for MPICH (``library_version`` is ``MPI.Get_library_version()``); returns the
    directory added, or None when nothing changed.
    """
    if "MPICH" not in library_version:
        return None
    folder = mpich_wheel_bin()
    if folder is None:
        return None
    found = shutil.which("mpiexec")
    if found is not None and Path(found).resolve().parent == folder:
        return None
    os.environ["PATH"] = os.pathsep.join([str(folder), os.environ.get("PATH", "")])
    return str(folder)
