"""Choosing a backend: explicit spec > ``use()`` block > ``ANYEXEC_BACKEND`` > default.

Inside a task on an anyexec worker the default is ``serial`` instead, so library code that
parallelises internally does not oversubscribe the machine; an explicit spec still wins.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from anyexec._context import CURRENT_USE, in_worker
from anyexec._record import TYPE_CHECKING, Record
from anyexec._registry import registry

if TYPE_CHECKING:
    from contextvars import Token
    from typing import Any

    from anyexec._executor import Executor
    from anyexec._protocol import BackendFactory

__all__ = ["DEFAULT_BACKEND", "ENV_VAR", "Resolved", "get_executor", "resolve", "use"]

ENV_VAR = "ANYEXEC_BACKEND"
DEFAULT_BACKEND = "processes"


class Resolved(Record):
    """A backend chosen and its options checked and converted, ready to instantiate."""

    name: str
    factory: BackendFactory
    options: dict[str, Any]
    origin: str
    #: Executor-level options (see anyexec._worker_setup), accepted by every backend.
    setup: dict[str, Any] | None = None


def _choose(spec: str | None, options: Mapping[str, Any],
            caller: str) -> tuple[str, dict[str, Any], str]:
    """Return (spec, options, origin) by the precedence rule; options override the spec's."""
    if spec is not None:
        return spec, dict(options), f"the spec passed to {caller}"
    current = CURRENT_USE.get()
    if current is not None:
        used_spec, used_options = current
        return used_spec, {**used_options, **options}, "the enclosing anyexec.use() block"
    if in_worker():
        return "serial", dict(options), "the default inside an anyexec task (serial)"
    env = os.environ.get(ENV_VAR)
    if env is not None and env.strip():
        return env, dict(options), f"the environment variable {ENV_VAR}={env!r}"
    return DEFAULT_BACKEND, dict(options), f"the default backend ({DEFAULT_BACKEND!r})"


def check_max_workers(value: object, *, origin: str) -> None:
    """``max_workers`` means concurrent tasks on every backend: a positive int or None."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"max_workers must be a positive int or None (from {origin}), "
            f"got {type(value).__name__} {value!r}"
        )
    if value < 1:
        raise ValueError(
            f"max_workers must be a positive int or None for the machine's CPU count "
            f"(from {origin}), got {value}"
        )


def resolve(spec: str | None, options: Mapping[str, Any], *,
            caller: str = "get_executor()") -> Resolved:
    """Pick the backend and check every option, without starting anything.

    ``caller`` names the function the user called, so that errors point at the right place.
    """
    from anyexec._spec import parse_spec

    if "spec" in options:
        raise TypeError(
            f"{caller} takes the backend spec as its first positional argument: write "
            f"{caller[:-1]}{options['spec']!r}), not spec={options['spec']!r}"
        )
    text, kw, origin = _choose(spec, options, caller)
    keywords = f"the keyword arguments of {caller}"
    parsed = parse_spec(text, origin=origin)
    # Executor-level options (initializer, inner_threads, ...) go to the Executor, not the backend.
    from anyexec._worker_setup import split_executor_options

    setup, kw, spec_options = split_executor_options(kw, parsed.options, origin=origin)
    parsed = parsed._replace(options=spec_options)
    name = registry.canonical(parsed.name, origin=origin)
    factory = registry.factory(name)
    if not (parsed.options or parsed.address):
        # Keyword options only (the common `max_workers=4`): values need no conversion, and
        # a plain factory's keyword names can be read without inspect.
        accepted = _plain_keywords(factory) if kw else frozenset()
        if accepted is not None and kw.keys() <= accepted:
            check_max_workers(kw.get("max_workers"), origin=_origin_of("max_workers", options,
                                                                      keywords, origin))
            return Resolved(name, factory, kw, origin, setup)
    # Imported here: signature inspection pulls in inspect, which costs more than starting a
    # process pool and is needed only when there are options to check.
    from anyexec._options import option_schema

    schema = option_schema(factory)
    merged: dict[str, Any] = {}
    schema.check_names(parsed.options, backend=name, origin=origin)
    for key, value in parsed.options.items():
        merged[key] = schema.convert(key, value, backend=name, origin=origin)
    if parsed.address is not None:
        if not schema.open_ended and "address" not in schema.params:
            raise ValueError(
                f"backend {name!r} does not connect to an address, but {origin} gives "
                f"'://{parsed.address}'; use plain {name!r}"
            )
        merged["address"] = parsed.address
    # The caller's own keywords, then options of an enclosing use() block they did not override.
    schema.check_names({k: v for k, v in kw.items() if k in options}, backend=name,
                       origin=keywords)
    schema.check_names({k: v for k, v in kw.items() if k not in options}, backend=name,
                       origin=origin)
    merged.update(kw)
    check_max_workers(merged.get("max_workers"),
                      origin=_origin_of("max_workers", options, keywords, origin))
    return Resolved(name, factory, merged, origin, setup)


def _origin_of(key: str, options: Mapping[str, Any], keywords: str, origin: str) -> str:
    """Where the value of option ``key`` came from: the caller's keywords, or ``origin``."""
    return keywords if key in options else origin


_CO_VARKEYWORDS = 0x08  # inspect.CO_VARKEYWORDS, without importing inspect


def _plain_keywords(factory: Any) -> frozenset[str] | None:
    """The keyword names ``factory`` accepts, read from its code object; None when only
    ``inspect.signature`` can tell (builtins, wrappers, ``**kwargs``, a custom ``__new__``).

    Why not inspect: importing it costs more than starting a process pool.
    """
    fn: Any = factory
    first = 0
    if isinstance(factory, type):
        if fn.__new__ is not object.__new__:
            return None
        fn, first = fn.__init__, 1  # skip self
    code = getattr(fn, "__code__", None)
    if (code is None or hasattr(fn, "__wrapped__") or hasattr(factory, "__signature__")
            or code.co_flags & _CO_VARKEYWORDS):
        return None
    first = max(first, code.co_posonlyargcount)
    return frozenset(code.co_varnames[first:code.co_argcount + code.co_kwonlyargcount])


def get_executor(spec: str | None = None, /, **options: Any) -> Executor:
    """Return an :class:`anyexec.Executor` on the chosen backend.

    ``spec`` is a backend name or alias (``"processes"``, ``"threads"``, ``"ray"``, a plugin's
    name) or a string ``NAME[://ADDRESS][?option=value&...]``. Keyword ``options`` override the
    spec's. With no spec, the innermost :func:`use` block decides, then the environment
    variable ``ANYEXEC_BACKEND``, then the default ``processes`` (``serial`` inside a task).

    Every backend also accepts the executor options ``initializer``/``initargs`` (run once in
    each worker before its first task), ``inner_threads`` (BLAS/OpenMP threads per worker) and
    ``forward_logs`` (worker log records reach the caller's handlers); see docs/usage.md.

    Raises :class:`UnknownBackendError`, :class:`BackendUnavailableError`, ``TypeError`` or
    ``ValueError`` here, never at the first task.
    """
    from anyexec._executor import Executor

    _refuse_while_a_worker_imports_main()
    resolved = resolve(spec, options)
    return Executor._create(resolved)


def _refuse_while_a_worker_imports_main() -> None:
    """Stop a worker process that is importing the user's script and met an executor there.

    With the spawn and forkserver start methods every worker imports the script's main module.
    Without an ``if __name__ == "__main__":`` guard that import reaches ``get_executor`` again,
    and each worker would start a pool of its own (CPython refuses that with a long traceback
    per worker; pools that replace their dead workers then loop). End the worker with one line
    that names the fix; the caller's pool reports that its workers failed to start.
    """
    for name in ("multiprocessing.process", "multiprocess.process"):
        module = sys.modules.get(name)
        if module is not None and getattr(module.current_process(), "_inheriting", False):
            raise SystemExit(
                "anyexec: a worker process imported your script's main module and reached "
                "get_executor() there: with the 'spawn' and 'forkserver' start methods, code "
                'that starts an executor must sit under `if __name__ == "__main__":`'
            )


# A class rather than @contextlib.contextmanager: contextlib alone costs a tenth of
# `import anyexec`.
class use:
    """Make ``spec`` (with ``options``) the default for ``get_executor()`` inside the block.

    ``with anyexec.use("threads", max_workers=4): ...``. Context-local: other threads and
    asyncio tasks are unaffected. The spec is checked when ``use()`` is called, so a typo fails
    here rather than at the first ``get_executor()``.
    """

    def __init__(self, spec: str, /, **options: Any) -> None:
        resolve(spec, options, caller="anyexec.use()")
        self._value = (spec, dict(options))
        self._tokens: list[Token[tuple[str, dict[str, Any]] | None]] = []

    def __enter__(self) -> None:
        self._tokens.append(CURRENT_USE.set(self._value))

    def __exit__(self, *exc_info: object) -> None:
        CURRENT_USE.reset(self._tokens.pop())
