"""A backend's optional hooks are read once and checked: wrong types fail, typos are named."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import anyexec
from anyexec._registry import registry
from anyexec.testing import tasks


class _Plugin(ThreadPoolExecutor):
    """A plugin's backend: a thread pool that declares a few hooks."""

    pickles = False
    capabilities: Any = frozenset()

    def __init__(self, *, max_workers: int = 2) -> None:
        super().__init__(max_workers)
        self.max_workers = max_workers


def _backend_with(**attributes: Any) -> type[_Plugin]:
    return type("PluginBackend", (_Plugin,), dict(attributes))


@pytest.fixture
def register() -> Iterator[Any]:
    names: list[str] = []

    def register(factory: Any) -> str:
        name = f"hooks-test-{len(names)}"
        anyexec.register_backend(name, factory)
        names.append(name)
        return name

    yield register
    for name in names:
        registry.unregister(name)


@pytest.mark.parametrize(("attribute", "hook"), [
    ("task_overheads", "task_overhead"),
    ("pickle", "pickles"),
    ("capability", "capabilities"),
    ("max_worker", "max_workers"),
    ("terminte", "terminate"),
])
def test_a_misspelled_hook_warns_naming_the_class_the_attribute_and_the_hook(
        register: Any, attribute: str, hook: str) -> None:
    backend = _backend_with(**{attribute: 1e-3})
    if hook in ("pickles", "capabilities", "max_workers"):
        # The hook itself must be missing for its near miss to be suspicious.
        backend = type("PluginBackend", (ThreadPoolExecutor,), {attribute: 1e-3})
    name = register(backend)
    with pytest.warns(anyexec.AnyexecWarning) as caught:
        ex = anyexec.get_executor(name)
    ex.shutdown()
    texts = [str(w.message) for w in caught if issubclass(w.category, anyexec.AnyexecWarning)]
    assert len(texts) == 1, texts
    assert "PluginBackend" in texts[0]
    assert repr(attribute) in texts[0]
    assert f"did you mean the hook {hook!r}" in texts[0]
    assert caught[0].filename == __file__  # points at the get_executor call


def test_a_backend_with_correct_hooks_gets_no_warning(register: Any) -> None:
    name = register(_backend_with(task_overhead=1e-3, runs_in_caller=False,
                                  capabilities=frozenset({"reuses_workers"})))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with anyexec.get_executor(name) as ex:
            assert list(ex.map(tasks.square, range(4))) == [0, 1, 4, 9]
            assert ex.capabilities == {"reuses_workers"}
            assert ex.pickles is False


def test_every_builtin_backend_here_declares_its_hooks_without_a_near_miss() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("serial", "threads", "processes"):
            with anyexec.get_executor(name, max_workers=1) as ex:
                assert ex.submit(abs, -1).result() == 1


@pytest.mark.parametrize(("attributes", "match"), [
    ({"pickles": "yes"}, r"pickles must be True or False, got str 'yes'"),
    ({"task_overhead": 0}, r"task_overhead must be a positive number of seconds, got int 0"),
    ({"task_overhead": "fast"}, r"task_overhead must be a positive number"),
    ({"runs_in_caller": 1}, r"runs_in_caller must be True or False"),
    ({"terminate": 3}, r"terminate must be a method, got int 3"),
    ({"share": "store"}, r"share must be a method"),
    ({"capabilities": "isolated"}, r"capabilities must be a set of names"),
    ({"capabilities": frozenset({1})}, r"capabilities must be names \(str\)"),
    ({"max_workers": 2.5}, r"max_workers must be an int >= 1, got float 2.5"),
])
def test_a_hook_of_the_wrong_type_is_an_error_naming_the_backend_and_the_hook(
        register: Any, attributes: dict[str, Any], match: str) -> None:
    backend = type("PluginBackend", (ThreadPoolExecutor,), attributes)
    name = register(backend)
    with pytest.raises(TypeError, match=rf"backend '{name}' \(PluginBackend\): {match}"):
        anyexec.get_executor(name)


def test_an_unknown_capability_warns_with_the_known_ones(register: Any) -> None:
    name = register(_backend_with(capabilities=frozenset({"recovers_from_worker_deaths"})))
    with pytest.warns(anyexec.AnyexecWarning,
                      match="did you mean 'recovers_from_worker_death'"):
        ex = anyexec.get_executor(name)
    ex.shutdown()


def test_max_workers_is_read_live_from_the_backend(register: Any) -> None:
    class Growing(_Plugin):
        size = 2

        @property  # type: ignore[override]
        def max_workers(self) -> int:
            return self.size

        @max_workers.setter
        def max_workers(self, value: int) -> None:
            self.size = value

    name = register(Growing)
    with anyexec.get_executor(name) as ex:
        assert ex.max_workers == 2
        ex._backend.size = 5  # type: ignore[attr-defined]  # the cluster grew
        assert ex.max_workers == 5
