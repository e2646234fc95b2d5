"""Choosing a backend: precedence, spec strings, options, and the errors for bad input."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import anyexec
from anyexec.testing import tasks


def backend_of(*args: str, **options: object) -> str:
    with anyexec.get_executor(*args, **options) as ex:
        return ex.backend


def test_default_backend_is_processes() -> None:
    assert backend_of() == "processes"


def test_environment_variable_picks_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYEXEC_BACKEND", "threads?max_workers=3")
    with anyexec.get_executor() as ex:
        assert (ex.backend, ex.max_workers) == ("threads", 3)


def test_use_block_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYEXEC_BACKEND", "processes")
    with anyexec.use("serial"):
        assert backend_of() == "serial"
    assert backend_of() == "processes"


def test_explicit_spec_beats_use_block_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYEXEC_BACKEND", "processes")
    with anyexec.use("serial"):
        assert backend_of("threads") == "threads"


def test_innermost_use_block_wins_and_options_merge() -> None:
    with anyexec.use("threads", max_workers=2), anyexec.use("threads", max_workers=5):
        with anyexec.get_executor() as ex:
            assert ex.max_workers == 5
        with anyexec.get_executor(max_workers=7) as ex:
            assert ex.max_workers == 7  # keyword options override the block's


def test_use_block_is_local_to_its_thread() -> None:
    seen: list[str] = []
    with anyexec.use("serial"):
        thread = threading.Thread(target=lambda: seen.append(backend_of()))
        thread.start()
        thread.join()
        assert backend_of() == "serial"
    assert seen == ["processes"]


def test_use_block_is_local_to_its_asyncio_task() -> None:
    async def inside(spec: str | None) -> str:
        if spec is None:
            await asyncio.sleep(0.01)
            return backend_of()
        with anyexec.use(spec):
            await asyncio.sleep(0.02)
            return backend_of()

    async def main() -> list[str]:
        return list(await asyncio.gather(inside("serial"), inside(None), inside("threads")))

    assert asyncio.run(main()) == ["serial", "processes", "threads"]


def test_aliases_resolve_to_the_canonical_name() -> None:
    assert backend_of("sequential") == "serial"
    assert backend_of("thread") == "threads"
    assert backend_of("threading") == "threads"
    assert backend_of("process") == "processes"
    assert backend_of("multiprocessing") == "processes"
    assert backend_of("THREADS") == "threads"


def test_spec_options_are_converted_to_the_option_types() -> None:
    with anyexec.get_executor("processes?max_workers=2&start_method=spawn") as ex:
        assert ex.max_workers == 2
        assert ex.submit(tasks.square, 4).result(timeout=60) == 16


def test_keyword_options_override_the_spec() -> None:
    with anyexec.get_executor("threads?max_workers=2", max_workers=6) as ex:
        assert ex.max_workers == 6


def test_nested_get_executor_inside_a_task_defaults_to_serial_even_with_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANYEXEC_BACKEND", "processes")
    with anyexec.get_executor("processes", max_workers=1) as ex:
        assert ex.submit(tasks.nested_default_backend).result(timeout=60) == "serial"


def test_use_block_of_the_caller_does_not_leak_into_serial_tasks() -> None:
    with anyexec.use("threads"), anyexec.get_executor("serial") as ex:
        assert ex.submit(tasks.nested_default_backend).result() == "serial"


def test_executor_is_a_concurrent_futures_executor() -> None:
    with anyexec.get_executor("threads") as ex:
        assert isinstance(ex, concurrent.futures.Executor)
        done = concurrent.futures.wait([ex.submit(tasks.square, 3)]).done
        assert [f.result() for f in done] == [9]


def test_register_backend_accepts_any_concurrent_futures_executor() -> None:
    anyexec.register_backend("stdlib-threads", ThreadPoolExecutor)
    try:
        with anyexec.get_executor("stdlib-threads?max_workers=3") as ex:
            assert ex.max_workers == 3
            assert list(ex.map(tasks.square, range(5))) == [0, 1, 4, 9, 16]
        with pytest.raises(ValueError, match="already registered"):
            anyexec.register_backend("stdlib-threads", ThreadPoolExecutor)
        anyexec.register_backend("stdlib-threads", ThreadPoolExecutor, replace=True)
        assert "stdlib-threads" in anyexec.available_backends()
    finally:
        from anyexec._registry import registry

        registry.unregister("stdlib-threads")


# -- errors --------------------------------------------------------------------------------


def test_unknown_backend_suggests_the_closest_name_and_lists_installed() -> None:
    with pytest.raises(anyexec.UnknownBackendError) as info:
        anyexec.get_executor("proceses")
    message = str(info.value)
    assert "Did you mean 'processes'?" in message
    assert "Installed backends:" in message
    assert "threads" in message
    assert isinstance(info.value, LookupError)


def test_unknown_backend_from_environment_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYEXEC_BACKEND", "thredas")
    with pytest.raises(anyexec.UnknownBackendError, match="ANYEXEC_BACKEND='thredas'"):
        anyexec.get_executor()


def test_unavailable_backend_names_the_pip_extra() -> None:
    def factory(*, max_workers: int | None = None) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers)

    factory.requires = ("anyexec_no_such_engine",)  # type: ignore[attr-defined]
    factory.install_hint = "pip install 'anyexec[nothing]'"  # type: ignore[attr-defined]
    anyexec.register_backend("needs-engine", factory)
    try:
        with pytest.raises(anyexec.BackendUnavailableError) as info:
            anyexec.get_executor("needs-engine")
        assert "anyexec_no_such_engine is not installed" in str(info.value)
        assert "pip install 'anyexec[nothing]'" in str(info.value)
        assert isinstance(info.value, ImportError)
        row = anyexec.available_backends()["needs-engine"]
        assert not row.available
        assert "anyexec[nothing]" in (row.reason or "")
    finally:
        from anyexec._registry import registry

        registry.unregister("needs-engine")


@pytest.mark.parametrize(
    ("call", "error", "pattern"),
    [
        (lambda: anyexec.get_executor("processes", max_workers=0), ValueError,
         r"max_workers must be a positive int or None.*got 0"),
        (lambda: anyexec.get_executor("threads", max_workers=-2), ValueError, "max_workers"),
        (lambda: anyexec.get_executor("threads", max_workers="4"), TypeError,
         "max_workers must be a positive int or None.*got str"),
        (lambda: anyexec.get_executor("threads", max_workers=True), TypeError, "max_workers"),
        (lambda: anyexec.get_executor("threads", max_worker=2), TypeError,
         r"no option 'max_worker'.*did you mean 'max_workers'\?.*Accepted options:"),
        (lambda: anyexec.get_executor("processes?max_workers=lots"), ValueError,
         r"max_workers='lots'.*expected a whole number"),
        (lambda: anyexec.get_executor("processes?start_method=fast"), ValueError,
         r"start_method='fast'.*expected one of 'fork', 'spawn', 'forkserver'"),
        (lambda: anyexec.get_executor("processes?max_workers"), ValueError, "malformed options"),
        (lambda: anyexec.get_executor("pro cesses"), ValueError, "malformed backend spec"),
        (lambda: anyexec.get_executor(""), ValueError, "empty"),
        (lambda: anyexec.get_executor(3), TypeError, "must be a backend name string"),
        (lambda: anyexec.get_executor("threads://10.0.0.1:99"), ValueError,
         "does not connect to an address"),
        (lambda: anyexec.get_executor("threads?max_workers=2&max_workers=3"), ValueError,
         "given twice"),
        (lambda: anyexec.use("nope"), anyexec.UnknownBackendError, "unknown backend 'nope'"),
    ],
    ids=["zero-workers", "negative-workers", "string-workers", "bool-workers", "typo-option",
         "unparsable-value", "literal-value", "option-without-value", "space-in-name",
         "empty-spec", "non-string-spec", "address-not-supported", "duplicate-option",
         "use-unknown"],
)
def test_bad_input_gets_an_error_naming_what_was_wrong(call, error, pattern) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=pattern), _entered(call):
        pass


@contextlib.contextmanager
def _entered(call):  # type: ignore[no-untyped-def]
    """Call ``call``; enter the result if it is a context manager (use() checks on entry)."""
    made = call()
    if hasattr(made, "__enter__"):
        with made:
            yield
    else:
        yield


def test_bad_option_from_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYEXEC_BACKEND", "threads?max_workers=0")
    with pytest.raises(ValueError, match="ANYEXEC_BACKEND"):
        anyexec.get_executor()


def _factories() -> list[Any]:
    import concurrent.futures
    import functools

    def plain(a: int, /, b: int = 0, *, c: int = 1) -> None: ...

    class WithNew:
        def __new__(cls, **kw: Any) -> WithNew:
            return super().__new__(cls)

    names = ["serial", "threads", "processes", "joblib", "pathos", "ray", "dask"]
    from anyexec._registry import _BUILTINS, _builtin_loader

    builtins = [_builtin_loader(_BUILTINS[n])() for n in names]
    return [*builtins, plain, functools.partial(plain, 1), lambda **kw: None, WithNew,
            concurrent.futures.ThreadPoolExecutor, dict]


@pytest.mark.parametrize("factory", _factories())
def test_keyword_names_read_without_inspect_agree_with_the_signature(factory: Any) -> None:
    # The fast path of get_executor(name, **options) must accept exactly what the full
    # signature check accepts, or defer to it (None).
    from anyexec._options import option_schema
    from anyexec._selection import _plain_keywords

    fast = _plain_keywords(factory)
    if fast is not None:
        schema = option_schema(factory)
        assert not schema.open_ended
        assert fast == set(schema.params)


def test_a_misspelt_keyword_option_is_still_reported_with_a_suggestion() -> None:
    with pytest.raises(TypeError, match=r"has no option 'max_worker'.*did you mean 'max_workers'"):
        anyexec.get_executor("threads", max_worker=2)


def test_start_method_choices_read_the_same_whichever_backend_was_checked_first() -> None:
    # typing caches "Literal[...] | None" by equality, which ignores the order of the choices:
    # dask's and processes' must list them in the same order, or the first one read wins.
    pytest.importorskip("distributed")
    messages = []
    for spec in ("dask?start_method=fast", "processes?start_method=fast"):
        with pytest.raises(ValueError, match="start_method='fast'") as info:
            anyexec.get_executor(spec)
        messages.append(str(info.value))
    for message in messages:
        assert "expected one of 'fork', 'spawn', 'forkserver'" in message


def test_an_error_in_a_keyword_option_names_the_keywords() -> None:
    with pytest.raises(ValueError, match=r"keyword arguments of get_executor\(\)"):
        anyexec.get_executor("threads", max_workers=0)
    with pytest.raises(TypeError, match=r"no option 'max_worker' \(from the keyword arguments"):
        anyexec.get_executor("processes?start_method=fork", max_worker=2)


def test_an_error_in_a_use_block_names_use() -> None:
    with pytest.raises(TypeError, match=r"from the spec passed to anyexec\.use\(\)"):
        anyexec.use("threads?bogus=1")
    with pytest.raises(ValueError, match=r"keyword arguments of anyexec\.use\(\)"):
        anyexec.use("threads", max_workers=-1)


def test_an_error_in_a_spec_names_get_executor() -> None:
    with pytest.raises(TypeError, match=r"from the spec passed to get_executor\(\)"):
        anyexec.get_executor("threads?bogus=1")


def test_spec_given_as_a_keyword_says_to_pass_it_first() -> None:
    with pytest.raises(TypeError, match=r"get_executor\('threads'\), not spec='threads'"):
        anyexec.get_executor(spec="threads")
