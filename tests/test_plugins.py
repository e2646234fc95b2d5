"""Third-party plugins: discovery through installed distributions, and every failure mode.

Each plugin here is a real distribution on disk (a ``*.dist-info`` directory with ``METADATA``
and ``entry_points.txt`` next to its module), found by ``importlib.metadata`` exactly as a
pip-installed one is. The registry scans entry points once per process, so every check runs in
a fresh interpreter with the plugins' directory on ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

import anyexec

GOOD = '''
from concurrent.futures import ThreadPoolExecutor


class ToyBackend(ThreadPoolExecutor):
    """Any concurrent.futures.Executor class is a complete backend."""

    pickles = False
    aliases = ("toy-alias",)

    def __init__(self, *, max_workers: int = 2) -> None:
        super().__init__(max_workers)
        self.max_workers = max_workers
'''

PLUGINS: dict[str, tuple[str, str, dict[str, str]]] = {
    # distribution: (module, module source, {backend name: target})
    "toy-plugin": ("toy_plugin", GOOD, {"toy": "toy_plugin:ToyBackend"}),
    "missing-engine-plugin": (
        "missing_engine_plugin",
        "import fancyengine_that_is_not_installed\n",
        {"fancy": "missing_engine_plugin:Backend"},
    ),
    "buggy-plugin": ("buggy_plugin", "RATE = 1 / 0\n", {"buggy": "buggy_plugin:Backend"}),
    "exiting-plugin": ("exiting_plugin", "import sys\nsys.exit(3)\n",
                       {"exiting": "exiting_plugin:Backend"}),
    "not-callable-plugin": ("not_callable_plugin", "factory = 42\n",
                            {"notcallable": "not_callable_plugin:factory"}),
    "no-submit-plugin": (
        "no_submit_plugin",
        "class Backend:\n"
        "    def __init__(self, **options):\n        pass\n"
        "    def shutdown(self, wait=True, *, cancel_futures=False):\n        pass\n",
        {"nosubmit": "no_submit_plugin:Backend"},
    ),
    # Two distributions claim "dup"; a third claims a built-in name.
    "zeta-plugin": ("zeta_plugin", GOOD, {"dup": "zeta_plugin:ToyBackend"}),
    "alpha-plugin": ("alpha_plugin", GOOD, {"dup": "alpha_plugin:ToyBackend"}),
    "shadow-plugin": ("shadow_plugin", GOOD, {"threads": "shadow_plugin:ToyBackend"}),
}

PROBE = textwrap.dedent("""
    import json, sys, warnings
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught:
        import anyexec
        infos = anyexec.available_backends()
    report = {
        "infos": {n: {"available": i.available, "reason": i.reason, "source": i.source,
                      "aliases": list(i.aliases)} for n, i in infos.items()},
        "warnings": [[w.category.__name__, str(w.message)] for w in caught],
        "runs": {},
    }
    for name in sys.argv[1:]:
        try:
            with anyexec.get_executor(name) as ex:
                report["runs"][name] = ["ok", list(ex.map(abs, [-1, -2, 3])), ex.backend]
        except Exception as exc:
            report["runs"][name] = [type(exc).__name__, str(exc)]
    print(json.dumps(report))
""")

TRIED = ["toy", "toy-alias", "fancy", "buggy", "exiting", "notcallable", "nosubmit", "dup",
         "threads"]


def _install(site: Path, dist: str, module: str, source: str, eps: Mapping[str, str]) -> None:
    """Lay out what ``pip install`` leaves in site-packages for a plugin distribution."""
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in eps.items())
    (info / "entry_points.txt").write_text(f"[anyexec.backends]\n{lines}")


def _run(argv: list[str], path: list[Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*map(str, path), env.get("PYTHONPATH", "")])
    env.pop("ANYEXEC_BACKEND", None)
    return subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def _probe(path: list[Path], cwd: Path) -> dict[str, Any]:
    out = _run(["-c", PROBE, *TRIED], path, cwd)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two site directories: every plugin but zeta-plugin in the first, zeta-plugin alone in
    the second, so the conflict can be checked with either on ``sys.path`` first."""
    first = tmp_path_factory.mktemp("site_a")
    second = tmp_path_factory.mktemp("site_b")
    for dist, (module, source, eps) in PLUGINS.items():
        _install(second if dist == "zeta-plugin" else first, dist, module, source, eps)
    return first, second


@pytest.fixture(scope="module")
def report(sites: tuple[Path, Path]) -> dict[str, Any]:
    return _probe(list(sites), sites[0])


def test_an_installed_plugin_is_found_through_its_entry_point(report: dict[str, Any]):
    info = report["infos"]["toy"]
    assert info == {"available": True, "reason": None, "source": "toy-plugin",
                    "aliases": ["toy-alias"]}
    assert report["runs"]["toy"] == ["ok", [1, 2, 3], "toy"]
    assert report["runs"]["toy-alias"] == ["ok", [1, 2, 3], "toy"]


def test_a_plugin_whose_engine_is_missing_is_listed_with_the_reason(report: dict[str, Any]):
    info = report["infos"]["fancy"]
    assert not info["available"]
    assert info["source"] == "missing-engine-plugin"
    assert "fancyengine_that_is_not_installed" in info["reason"]
    kind, message = report["runs"]["fancy"]
    assert kind == "BackendUnavailableError"
    assert "fancyengine_that_is_not_installed" in message
    assert "missing-engine-plugin" in message


def test_a_plugin_with_a_bug_at_import_is_unavailable_not_fatal(report: dict[str, Any]):
    assert "ZeroDivisionError" in report["infos"]["buggy"]["reason"]
    assert report["runs"]["buggy"][0] == "BackendUnavailableError"
    assert "ZeroDivisionError: division by zero" in report["runs"]["buggy"][1]
    # sys.exit() in a plugin's module does not end the program that lists backends either.
    assert "SystemExit" in report["infos"]["exiting"]["reason"]
    assert report["runs"]["exiting"][0] == "BackendUnavailableError"


def test_every_other_backend_keeps_working_next_to_broken_plugins(report: dict[str, Any]):
    assert report["infos"]["serial"]["available"]
    assert report["infos"]["processes"]["available"]
    assert report["runs"]["threads"] == ["ok", [1, 2, 3], "threads"]


def test_a_factory_that_is_not_callable_is_rejected_saying_what_it_is(report: dict[str, Any]):
    reason = report["infos"]["notcallable"]["reason"]
    assert "resolved to int 42, not a backend factory" in reason
    assert "submit() and shutdown()" in reason
    assert report["runs"]["notcallable"][0] == "BackendUnavailableError"


def test_a_backend_without_submit_is_rejected_naming_the_missing_method(
    report: dict[str, Any],
):
    assert report["infos"]["nosubmit"]["available"]  # it cannot be known before it is built
    kind, message = report["runs"]["nosubmit"]
    assert kind == "TypeError"
    assert "has no submit() method" in message
    assert "any concurrent.futures.Executor qualifies" in message


def test_two_distributions_claiming_a_name_resolve_alphabetically_with_a_warning(
    report: dict[str, Any],
):
    assert report["infos"]["dup"]["source"] == "alpha-plugin"
    conflicts = [m for kind, m in report["warnings"] if kind == "BackendConflictWarning"]
    about_dup = [m for m in conflicts if "'dup'" in m]
    assert len(about_dup) == 1
    assert "using alpha-plugin" in about_dup[0]
    assert "zeta-plugin" in about_dup[0]
    assert "register_backend" in about_dup[0]  # the way to choose the other one


def test_the_conflict_rule_does_not_depend_on_sys_path_order(sites: tuple[Path, Path]):
    first, second = sites
    swapped = _probe([second, first], first)
    assert swapped["infos"]["dup"]["source"] == "alpha-plugin"


def test_anyexecs_own_backend_wins_over_a_plugin_claiming_its_name(report: dict[str, Any]):
    assert report["infos"]["threads"]["source"] == "anyexec"
    assert any("'threads'" in m and "shadow-plugin" in m for kind, m in report["warnings"]
               if kind == "BackendConflictWarning")


def test_the_backends_command_lists_broken_plugins_with_their_reasons(
    sites: tuple[Path, Path],
):
    out = _run(["-m", "anyexec", "backends"], list(sites), sites[0])
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line for line in out.stdout.splitlines()[1:]}
    assert " yes " in rows["toy"]
    assert " no " in rows["fancy"]
    assert "fancyengine_that_is_not_installed" in rows["fancy"]
    assert "ZeroDivisionError" in rows["buggy"]
    assert "not a backend factory" in rows["notcallable"]
    assert "alpha-plugin" in rows["dup"]
    assert "BackendConflictWarning" in out.stderr


def test_register_backend_rejects_a_factory_that_is_not_callable():
    with pytest.raises(TypeError, match="must be callable"):
        anyexec.register_backend("plugin-test-not-callable", 42)  # type: ignore[arg-type]
