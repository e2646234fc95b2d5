"""A backend's optional hooks, read and checked once, when its executor is created.

The core reads every optional hook of ``anyexec.Backend`` through the ``BackendHooks`` record
built here, never with ``getattr`` of its own: a hook of the wrong type is an error naming the
backend class and the hook, and an attribute whose name is a near miss of a hook's
(``task_overheads``, ``pickle``) gets an ``AnyexecWarning`` instead of being silently ignored,
as pluggy does for a misspelled hook implementation.

``max_workers`` is the one hook read live (``BackendHooks.max_workers()``): on Ray and Dask it is
a property that follows the cluster's size. Its type is checked once, here.

Imported with the executor, so it imports neither ``typing`` nor ``difflib`` at module level.
"""

from __future__ import annotations

from anyexec._record import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["CAPABILITIES", "HOOK_NAMES", "BackendHooks", "read_hooks"]

#: Behaviours a backend may declare in its ``capabilities`` attribute; the conformance kit
#: checks the declared ones and states that the others are not promised.
CAPABILITIES = frozenset({
    # A task that already started stops when its future is cancelled (not only queued ones).
    "cancel_running",
    # After a worker dies, the same executor starts fresh workers and keeps working.
    "recovers_from_worker_death",
    # The task runs in another process, so a crash there cannot take the caller down.
    "isolated",
    # Workers outlive a task: later maps and submits on the same executor run in the same
    # processes (module-level caches and imports stay warm) until a worker dies.
    "reuses_workers",
    # Tasks run in the main thread of a worker process, where map(task_timeout=...) can
    # interrupt an over-long call; elsewhere the call runs to its end and is then failed.
    "interrupts_tasks",
})

#: Every optional hook the core reads (see ``anyexec.Backend``).
HOOK_NAMES = ("max_workers", "pickles", "task_overhead", "share", "capabilities",
              "runs_in_caller", "terminate", "engine")

#: The engine's cost of one task when the backend does not say (seconds).
DEFAULT_TASK_OVERHEAD = 2e-4

# Names a backend has for its own reasons that are close to a hook's name: never a typo.
_REQUIRED = frozenset({"submit", "shutdown", "map"})
# How similar (difflib's ratio) an attribute's name must be to a hook's to be a likely typo.
_CUTOFF = 0.8


class BackendHooks:
    """The optional hooks of one backend object, checked; absent ones hold their defaults."""

    __slots__ = ("_backend", "_has_max_workers", "capabilities", "engine", "pickles",
                 "runs_in_caller", "share", "task_overhead", "terminate")

    def __init__(self, backend: object, *, has_max_workers: bool, pickles: bool,
                 task_overhead: float, share: Callable[[Any], Any] | None,
                 capabilities: frozenset[str], runs_in_caller: bool,
                 terminate: Callable[[], object] | None, engine: str | None) -> None:
        self._backend = backend
        self._has_max_workers = has_max_workers
        #: Tasks cross a process boundary: the core pickles the function and items itself.
        self.pickles = pickles
        #: The engine's cost of one task, in seconds (sizes automatic chunks).
        self.task_overhead = task_overhead
        #: Puts an object into the engine's store once (``ray.put``), or None.
        self.share = share
        #: Names from ``CAPABILITIES`` (and any newer ones the backend declares).
        self.capabilities = capabilities
        #: ``submit`` runs the task in the caller before it returns (serial).
        self.runs_in_caller = runs_in_caller
        #: Stops every worker at once (Ctrl-C), or None.
        self.terminate = terminate
        #: The distribution whose version ``anyexec check`` shows, or None.
        self.engine = engine

    def max_workers(self) -> int | None:
        """The backend's current ``max_workers``, read now (a cluster may grow or shrink);
        None when it has none or reports fewer than one."""
        if not self._has_max_workers:
            return None
        workers = getattr(self._backend, "max_workers", None)
        if isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1:
            return workers
        return None

    def interrupt(self) -> None:
        """Ctrl-C: stop the workers now rather than wait for running tasks, if possible."""
        if self.terminate is not None:
            self.terminate()


def _flag(owner: str, hook: str, value: Any) -> bool | None:
    """A boolean hook's value, None when absent; any other type is the plugin's mistake."""
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"{owner}: {hook} must be True or False, got "
                        f"{type(value).__name__} {value!r}")
    return value


def read_hooks(backend: object, *, name: str) -> BackendHooks:
    """Read and check the optional hooks of ``backend`` (made by backend ``name``).

    Raises ``TypeError`` naming the backend class and the hook when a hook has the wrong type;
    warns (``AnyexecWarning``) about attributes whose names look like a misspelled hook.
    """
    owner = f"backend {name!r} ({type(backend).__qualname__})"

    def read(hook: str) -> Any:
        return getattr(backend, hook, None)

    workers = read("max_workers")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)):
        raise TypeError(f"{owner}: max_workers must be an int >= 1, got "
                        f"{type(workers).__name__} {workers!r}")
    pickles = _flag(owner, "pickles", read("pickles"))
    overhead = read("task_overhead")
    if overhead is not None and (isinstance(overhead, bool)
                                 or not isinstance(overhead, (int, float))
                                 or not 0 < overhead < float("inf")):
        raise TypeError(f"{owner}: task_overhead must be a positive number of seconds, got "
                        f"{type(overhead).__name__} {overhead!r}")
    runs_in_caller = _flag(owner, "runs_in_caller", read("runs_in_caller"))
    share, terminate = read("share"), read("terminate")
    for hook, value in (("share", share), ("terminate", terminate)):
        if value is not None and not callable(value):
            raise TypeError(f"{owner}: {hook} must be a method, got "
                            f"{type(value).__name__} {value!r}")
    engine = read("engine")
    hooks = BackendHooks(
        backend,
        has_max_workers=workers is not None,
        pickles=True if pickles is None else pickles,
        task_overhead=DEFAULT_TASK_OVERHEAD if overhead is None else float(overhead),
        share=share,
        capabilities=_capabilities(read("capabilities"), owner),
        runs_in_caller=bool(runs_in_caller),
        terminate=terminate,
        # Read for `anyexec check` only: an engine attribute that is not a name is not ours.
        engine=engine if isinstance(engine, str) else None,
    )
    _warn_near_misses(backend, owner)
    return hooks


def _capabilities(declared: object, owner: str) -> frozenset[str]:
    if declared is None:
        return frozenset()
    if isinstance(declared, (str, bytes)) or not hasattr(declared, "__iter__"):
        raise TypeError(f"{owner}: capabilities must be a set of names from "
                        f"anyexec.CAPABILITIES, got {type(declared).__name__} {declared!r}")
    names = frozenset(declared)
    if not all(isinstance(n, str) for n in names):
        raise TypeError(f"{owner}: capabilities must be names (str) from anyexec.CAPABILITIES, "
                        f"got {sorted(map(repr, names))}")
    unknown = names - CAPABILITIES
    if unknown:
        # A warning, not an error: a plugin written for a newer anyexec may declare a newer one.
        import difflib

        for n in sorted(unknown):
            close = difflib.get_close_matches(n, sorted(CAPABILITIES), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            _warn(f"{owner} declares the capability {n!r}, which anyexec does not know{hint} "
                  f"Known capabilities: {', '.join(sorted(CAPABILITIES))}.")
    return names


def _warn_near_misses(backend: object, owner: str) -> None:
    """Warn about public attributes whose names look like a misspelled, absent hook."""
    # Private names are the backend's own business (a stdlib pool's _max_workers).
    names = {n for n in dir(backend) if not n.startswith("_")} - _REQUIRED
    missing = [h for h in HOOK_NAMES if h not in names]
    candidates = [(n, h) for n in sorted(names - set(HOOK_NAMES)) for h in missing
                  if _maybe_close(n, h)]
    if not candidates:
        return
    # Only now: difflib costs an import that a correct backend never pays.
    import difflib

    for attribute, hook in candidates:
        if difflib.SequenceMatcher(None, attribute, hook).ratio() >= _CUTOFF:
            _warn(f"{owner} has an attribute {attribute!r}, which anyexec does not read: did "
                  f"you mean the hook {hook!r}? (See anyexec.Backend for the hooks.)")


def _maybe_close(a: str, b: str) -> bool:
    """An upper bound of difflib's ratio, as its ``real_quick_ratio`` and ``quick_ratio``."""
    total = len(a) + len(b)
    if 2 * min(len(a), len(b)) < _CUTOFF * total:
        return False
    common = sum(min(a.count(c), b.count(c)) for c in set(a))
    return 2 * common >= _CUTOFF * total


def _warn(text: str) -> None:
    import warnings

    from anyexec._errors import AnyexecWarning

    # stacklevel: warn -> read_hooks's helper -> read_hooks -> Executor.__init__ -> _create ->
    # get_executor -> the user's call.
    warnings.warn(text, AnyexecWarning, stacklevel=7)
