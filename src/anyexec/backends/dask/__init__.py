"""``dask``: tasks on a Dask cluster (``dask.distributed``), local or remote.

Without an address the executor starts its own ``LocalCluster`` (worker processes on
127.0.0.1, no dashboard) and closes it on shutdown. With an address (``dask://HOST:PORT``) it
connects a ``Client`` to a running scheduler and never closes that cluster.

Tasks do not go to Dask as soon as they are submitted: this adapter keeps them in a local queue
and sends a bounded number to the scheduler at a time. On a cluster it connected to, that bound
is ``max_workers``: it makes ``max_workers`` mean "tasks running at once" on a cluster of any
size, and there it is the cluster's current thread count (capped by the value given), so that
workers joining later get work. On the local cluster it started with exactly ``max_workers``
threads, Dask itself never runs more than that, so it sends twice as many: each thread finds
its next task waiting on its worker instead of idling for a round trip through this process.
Either way cancelling a queued task is exact: it never reached Dask, so it cannot start.

::

    submit(fn, *args)                                       | Dask
      _dispatch.Dispatcher.put: queue a Job                 |
      fill(): while the window (Window.in_flight) has room, |
        send a suspect (_recovery), else the next Job  -----+--> client.submit(...)
                                                            |      (task leaves marker
    collector thread (_backend.DaskBackend._collect):       |       files, _recovery)
      Dispatcher.finished(): a batch Dask finished  <-------+--- as_completed
      fill() again; _outcome.gather: results in one trip    |
      each job: result lost        -> watch it again        |
                died innocent      -> send again (_recovery)|
                otherwise          -> settle (_outcome)     |

``_options`` checks the options, ``_cluster`` starts, joins and closes the cluster.
"""

from __future__ import annotations

from anyexec.backends.dask._backend import DaskBackend
from anyexec.backends.dask._outcome import DaskSchedulerLostError, DaskTaskLostError

__all__ = ["DaskBackend", "DaskSchedulerLostError", "DaskTaskLostError"]

# Tracebacks and pickles name them where users import them from, not the private modules.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
