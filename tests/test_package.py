"""The package as a user meets it: its public names, lazy imports, and the command line."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import anyexec

ENGINES = ("ray", "dask", "distributed", "joblib", "pathos", "loky", "mpi4py", "tqdm")


def run_python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120, env=env, check=False)


def test_public_names_are_exactly_the_documented_ones() -> None:
    assert sorted(anyexec.__all__) == sorted([
        "CAPABILITIES", "AnyexecError", "AnyexecWarning", "Backend", "BackendConflictWarning",
        "BackendFactory", "BackendInfo", "BackendUnavailableError", "Executor",
        "ExecutorShutdownError", "MapIterator", "RemoteTraceback", "SerializationError",
        "TaskTimeoutError",
        "UnknownBackendError", "WorkerCrashedError", "WorkerInitializerError", "__version__",
        "available_backends", "get_executor", "in_worker", "register_backend", "use",
    ])
    for name in anyexec.__all__:
        assert hasattr(anyexec, name), name


def test_import_and_listing_backends_never_import_an_engine() -> None:
    result = run_python(f"""
        import json, sys
        import anyexec
        after_import = [m for m in {ENGINES!r} if m in sys.modules]
        infos = anyexec.available_backends()
        with anyexec.get_executor("threads") as ex:
            list(ex.map(abs, [-1, 2]))
        after_use = [m for m in {ENGINES!r} if m in sys.modules]
        print(json.dumps([after_import, after_use, sorted(infos)]))
    """)
    assert result.returncode == 0, result.stderr
    after_import, after_use, names = json.loads(result.stdout)
    assert after_import == []
    assert after_use == []
    assert {"serial", "threads", "processes"} <= set(names)


def test_import_anyexec_stays_light() -> None:
    # What `import anyexec` and selecting a built-in backend must not load: the costs measured
    # in benchmarks/ (issue: import under 30 ms, first result within 1.2x of a bare pool).
    result = run_python("""
        import json, sys
        before = set(sys.modules)
        import anyexec
        after_import = set(sys.modules) - before
        with anyexec.get_executor("processes", max_workers=1) as ex:
            assert ex.submit(abs, -1).result() == 1
        after_use = set(sys.modules) - before
        print(json.dumps([sorted(after_import), sorted(after_use)]))
    """)
    assert result.returncode == 0, result.stderr
    after_import, after_use = map(set, json.loads(result.stdout))
    heavy = {"typing", "concurrent.futures", "threading", "importlib.metadata", "inspect"}
    assert not heavy & after_import
    # A built-in is selected without scanning every distribution's entry points.
    assert not {"importlib.metadata", "inspect", "typing", "difflib"} & after_use


def test_the_builtin_table_matches_the_declared_entry_points() -> None:
    from importlib import metadata

    from anyexec._registry import _BUILTINS

    declared = {ep.name: ep.value for ep in metadata.distribution("anyexec").entry_points
                if ep.group == "anyexec.backends"}
    assert declared == _BUILTINS


def test_available_backends_reports_availability_and_versions() -> None:
    infos = anyexec.available_backends()
    for name in ("serial", "threads", "processes"):
        info = infos[name]
        assert info.available, info.reason
        assert info.reason is None
        assert info.version
        assert info.version.startswith("Python ")
        assert info.source == "anyexec"
    assert "sequential" in infos["serial"].aliases


def test_backends_command_prints_a_table() -> None:
    for command in (["-m", "anyexec", "backends"], ["-m", "anyexec._cli", "backends"]):
        result = subprocess.run([sys.executable, *command], capture_output=True, text=True,
                                timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0].split()[:4] == ["backend", "available", "version", "source"]
        rows = {line.split()[0]: line for line in lines[1:]}
        assert "yes" in rows["processes"]
        assert "Python" in rows["threads"]


def test_backends_command_shows_why_a_backend_is_unavailable() -> None:
    # A real engine made unimportable in a subprocess: the table gives the pip extra.
    result = run_python("""
        import sys
        from importlib.abc import MetaPathFinder

        class HideRay(MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "ray" or name.startswith("ray."):
                    raise ModuleNotFoundError(name)
                return None

        sys.meta_path.insert(0, HideRay())
        import anyexec
        from anyexec._cli import main
        main(["backends"])
        try:
            anyexec.get_executor("ray")
        except anyexec.BackendUnavailableError as exc:
            print("ERROR:", exc)
    """)
    assert result.returncode == 0, result.stderr
    ray_row = next(line for line in result.stdout.splitlines() if line.startswith("ray"))
    assert " no " in ray_row
    assert "pip install 'anyexec[ray]'" in ray_row
    assert "ERROR: backend 'ray' cannot be used: ray is not installed" in result.stdout


def test_py_typed_marker_ships_with_the_package() -> None:
    from importlib.resources import files

    assert files("anyexec").joinpath("py.typed").is_file()
