"""The backend registry: names to factories, loaded lazily from the ``anyexec.backends`` group.

Entry points are scanned on the first lookup, not at import, and a backend's module is imported
only when that backend is asked for. A plugin whose import fails is kept with its error, shown
by ``anyexec backends`` and raised when that backend is requested; the others keep working.
"""

from __future__ import annotations

import _thread
import importlib
import warnings
from collections.abc import Callable, Iterable

from anyexec._errors import BackendUnavailableError, UnknownBackendError
from anyexec._record import TYPE_CHECKING, Record

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint
    from typing import Any

    from anyexec._protocol import BackendFactory

# importlib.metadata, importlib.util, difflib and platform are imported where they are used;
# _thread stands in for threading, whose import costs a fifth of `import anyexec`. Together they
# cost more than the rest of `import anyexec`, and most programs never list backends.

__all__ = [
    "ENTRY_POINT_GROUP",
    "BackendConflictWarning",
    "BackendInfo",
    "available_backends",
    "register_backend",
    "registry",
]

ENTRY_POINT_GROUP = "anyexec.backends"
_OWN_DISTRIBUTION = "anyexec"

# anyexec's own backends, as its pyproject.toml declares them in ENTRY_POINT_GROUP (a test keeps
# the two equal). Selecting one of these needs no entry-point scan: reading every installed
# distribution's metadata costs more than starting a process pool, and anyexec's own always win
# a name conflict anyway.
_BUILTINS = {
    "serial": "anyexec.backends.serial:SerialBackend",
    "threads": "anyexec.backends.threads:ThreadsBackend",
    "processes": "anyexec.backends.processes:ProcessesBackend",
    "joblib": "anyexec.backends.joblib:JoblibBackend",
    "pathos": "anyexec.backends.pathos:PathosBackend",
    "ray": "anyexec.backends.ray:RayBackend",
    "dask": "anyexec.backends.dask:DaskBackend",
}

# The spellings people type for the built-ins. Plugins add theirs with an ``aliases`` attribute.
_BUILTIN_ALIASES = {
    "sequential": "serial",
    "thread": "threads",
    "threading": "threads",
    "threadpool": "threads",
    "process": "processes",
    "multiprocessing": "processes",
    "processpool": "processes",
}


class BackendConflictWarning(UserWarning):
    """Two installed distributions register the same backend name."""


class BackendInfo(Record):
    """What anyexec knows about one backend, without starting it."""

    name: str
    available: bool
    #: Why the backend cannot run here and what to install; None when available.
    reason: str | None
    #: The engine's version (for built-ins on the standard library, Python's).
    version: str | None
    #: Where it comes from: "anyexec", a plugin's distribution name, or "register_backend".
    source: str
    aliases: tuple[str, ...] = ()


class _Entry:
    """One registered name: where it comes from and, once loaded, its factory or error."""

    def __init__(self, name: str, source: str, target: str,
                 loader: Callable[[], Any]) -> None:
        self.name = name
        self.source = source
        self.target = target  # "module:attr", or a description for run-time registrations
        self.loader = loader
        self.factory: Any = None
        self.error: BaseException | None = None
        self.loaded = False
        self.shadowed: list[str] = []

    def load(self) -> Any:
        if not self.loaded:
            try:
                self.factory = self.loader()
            except (Exception, SystemExit) as exc:  # a plugin calling sys.exit() at import, too
                # Kept, not swallowed: shown in the table and raised when asked for.
                self.error = exc
                import logging

                logging.getLogger("anyexec").debug(
                    "loading backend %r from %s failed: %r", self.name, self.source, exc)
            self.loaded = True
        return self.factory


def _entry_point_loader(ep: EntryPoint) -> Callable[[], Any]:
    return ep.load


def _builtin_loader(target: str) -> Callable[[], Any]:
    def load() -> Any:
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)

    return load


class Registry:
    """Lock-guarded name -> backend table, filled from entry points on first use."""

    def __init__(self) -> None:
        self._lock = _thread.RLock()
        self._entries: dict[str, _Entry] | None = None
        self._runtime: dict[str, _Entry] = {}
        self._builtins: dict[str, _Entry] = {}  # built-ins loaded before any scan

    # -- discovery -----------------------------------------------------------------------

    def _scan(self) -> dict[str, _Entry]:
        if self._entries is not None:
            return self._entries
        with self._lock:
            if self._entries is not None:
                return self._entries
            from importlib import metadata

            claims: dict[str, list[tuple[str, EntryPoint]]] = {}
            seen: set[tuple[str, str, str]] = set()
            for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
                dist = ep.dist.name if ep.dist is not None else "unknown"
                key = (ep.name, ep.value, dist)
                if key in seen:  # the same distribution found twice on sys.path
                    continue
                seen.add(key)
                claims.setdefault(ep.name.lower(), []).append((dist, ep))
            entries: dict[str, _Entry] = {}
            for name, options in claims.items():
                # anyexec's own built-ins win; among plugins the distribution name decides, so
                # the choice never depends on sys.path order.
                options.sort(key=lambda pair: (pair[0] != _OWN_DISTRIBUTION, pair[0].lower()))
                dist, ep = options[0]
                entry = _Entry(name, dist, ep.value, _entry_point_loader(ep))
                entry.shadowed = [f"{d} ({e.value})" for d, e in options[1:]]
                if entry.shadowed:
                    warnings.warn(
                        f"backend name {name!r} is registered by several distributions; using "
                        f"{dist} ({ep.value}) and ignoring {', '.join(entry.shadowed)}. "
                        "Uninstall one, or pick one explicitly with "
                        "anyexec.register_backend(name, factory, replace=True).",
                        BackendConflictWarning,
                        stacklevel=4,
                    )
                entries[name] = entry
            self._entries = entries
            return entries

    def _all(self) -> dict[str, _Entry]:
        merged = dict(self._scan())
        merged.update(self._runtime)
        return merged

    def _builtin(self, key: str) -> _Entry | None:
        """anyexec's own entry for ``key`` without a scan, unless a run-time registration or
        an earlier scan decides instead."""
        if self._entries is not None or key in self._runtime or key not in _BUILTINS:
            return None
        with self._lock:
            entry = self._builtins.get(key)
            if entry is None:
                target = _BUILTINS[key]
                entry = _Entry(key, _OWN_DISTRIBUTION, target, _builtin_loader(target))
                self._builtins[key] = entry
            return entry

    def names(self) -> list[str]:
        return sorted(self._all())

    # -- registration --------------------------------------------------------------------

    def register(self, name: str, factory: Callable[..., Any], *, replace: bool) -> None:
        if not isinstance(name, str) or not name.strip():
            raise TypeError(f"backend name must be a non-empty string, got {name!r}")
        if not callable(factory):
            raise TypeError(
                f"factory for backend {name!r} must be callable (a class or function taking "
                f"keyword options), got {type(factory).__name__}"
            )
        key = name.strip().lower()
        with self._lock:
            if not replace and key in self._all():
                raise ValueError(
                    f"backend {key!r} is already registered (from {self._all()[key].source}); "
                    "pass replace=True to replace it"
                )
            target = getattr(factory, "__qualname__", repr(factory))
            entry = _Entry(key, "register_backend", target, lambda: factory)
            self._runtime[key] = entry

    def unregister(self, name: str) -> None:
        """Remove a run-time registration (used by tests and by plugin authors' fixtures)."""
        with self._lock:
            self._runtime.pop(name.lower(), None)

    # -- lookup --------------------------------------------------------------------------

    def canonical(self, name: str, *, origin: str) -> str:
        """Resolve aliases; raise UnknownBackendError with a suggestion if nothing matches."""
        key = name.lower()
        if self._builtin(key) is not None:  # aliases take the scan: a plugin may own "thread"
            return key
        entries = self._all()
        if key in entries:
            return key
        if key in _BUILTIN_ALIASES:
            return _BUILTIN_ALIASES[key]
        aliases = self._plugin_aliases(entries.values())
        if key in aliases:
            return aliases[key]
        known = sorted(set(entries) | set(_BUILTIN_ALIASES) | set(aliases))
        import difflib

        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        installed = [n for n in sorted(entries) if self.info(n).available]
        suggestion = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownBackendError(
            f"unknown backend {name!r} (from {origin}).{suggestion} Installed backends: "
            f"{', '.join(installed) or 'none'}. Run 'anyexec backends' to see every known "
            "backend and what each needs."
        )

    def _plugin_aliases(self, entries: Iterable[_Entry]) -> dict[str, str]:
        aliases: dict[str, str] = {}
        for entry in entries:
            factory = entry.load()
            for alias in getattr(factory, "aliases", ()) or ():
                aliases.setdefault(str(alias).lower(), entry.name)
        return aliases

    def factory(self, name: str) -> BackendFactory:
        """The loaded factory of canonical ``name``; BackendUnavailableError if it cannot run."""
        entry = self._builtin(name) or self._all()[name]
        factory: BackendFactory = entry.load()
        reason = self._unavailable_reason(entry)
        if reason is not None:
            raise BackendUnavailableError(f"backend {name!r} cannot be used: {reason}") from (
                entry.error
            )
        return factory

    def _unavailable_reason(self, entry: _Entry) -> str | None:
        factory = entry.load()
        if entry.error is not None:
            err = entry.error
            return (
                f"its plugin {entry.target!r} from {entry.source} failed to import "
                f"({type(err).__name__}: {err}). Reinstall or fix that distribution."
            )
        if not callable(factory):
            return (
                f"its plugin {entry.target!r} from {entry.source} resolved to "
                f"{type(factory).__name__} {factory!r:.40}, not a backend factory: the entry "
                "point must name a class or function that takes keyword options and returns an "
                "object with submit() and shutdown(). Fix or uninstall that distribution."
            )
        missing = [m for m in getattr(factory, "requires", ()) or () if not _importable(m)]
        if missing:
            hint = getattr(factory, "install_hint", None) or f"pip install {' '.join(missing)}"
            return f"{', '.join(missing)} is not installed; install it with: {hint}"
        return None

    def info(self, name: str) -> BackendInfo:
        entry = self._all()[name]
        factory = entry.load()
        reason = self._unavailable_reason(entry)
        engine = getattr(factory, "engine", None) if factory is not None else None
        version: str | None = None
        if engine and reason is None:
            try:
                version = _distribution_version(engine)
            except LookupError:
                version = None
        elif factory is not None and entry.source == _OWN_DISTRIBUTION and not engine:
            import platform

            version = f"Python {platform.python_version()}"
        aliases = {a for a, n in _BUILTIN_ALIASES.items() if n == name}
        aliases.update(str(a).lower() for a in getattr(factory, "aliases", ()) or ())
        return BackendInfo(name, reason is None, reason, version, entry.source,
                           tuple(sorted(aliases)))


def _distribution_version(name: str) -> str:
    """The installed version of distribution ``name``; LookupError if it is not installed."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError as exc:
        raise LookupError(name) from exc


def _importable(module: str) -> bool:
    try:
        import importlib.util

        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


registry = Registry()


def available_backends() -> dict[str, BackendInfo]:
    """Every known backend by name, with whether it can run here and, if not, why.

    Plugins' modules are imported to read their metadata; engines are not.
    """
    return {name: registry.info(name) for name in registry.names()}


def register_backend(name: str, factory: Callable[..., Any], *, replace: bool = False) -> None:
    """Register a backend at run time, as an entry point would.

    ``factory`` takes keyword options and returns an object with ``submit`` and ``shutdown``
    (any ``concurrent.futures.Executor`` class qualifies). An existing name is an error unless
    ``replace=True``; a run-time registration takes precedence over installed plugins.
    """
    registry.register(name, factory, replace=replace)
