"""Every package the code imports is declared, exactly pinned, and nothing unused is declared.

Read from the source (no process needed): the third-party imports of ``src/``, ``stages/`` and
``bench/`` (function-level ones included), mapped to their distributions, must be exactly the
runtime ``dependencies`` of ``pyproject.toml``; the tests' imports must be declared too (runtime
or ``dev``). Every declared package is pinned with ``==`` to the version ``requirements.lock``
pins, and that is the version installed. A package used only through another (``tqdm``, ``rich``
via dvc and typer) is not declared until our code imports it.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import sys
import tomllib

from conftest import REPO

CODE_DIRS = ("src", "stages", "bench")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules(*dirs: str) -> dict[str, set[str]]:
    """Top-level third-party module -> files importing it, for the Python files under ``dirs``."""
    local = {"betamcmc", "conftest"} | {p.stem for d in dirs for p in (REPO / d).glob("*.py")}
    local |= {f"stages_{p.stem}" for p in (REPO / "stages").glob("*.py")}  # scripts as modules
    local |= {p.stem for p in (REPO / "bench").glob("*.py")}  # bench scripts a test imports
    found: dict[str, set[str]] = {}
    for d in dirs:
        for path in sorted((REPO / d).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in local:
                        found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def owners(modules: dict[str, set[str]]) -> dict[str, set[str]]:
    """Top-level module -> the distributions (normalized names) that install it; several for
    a namespace shared by split packages (``mlflow``: mlflow, mlflow-skinny, mlflow-tracing)."""
    installed = importlib.metadata.packages_distributions()
    out = {}
    for module, files in modules.items():
        dists = installed.get(module)
        assert dists, f"{module} (imported by {sorted(files)}) is not installed"
        out[module] = {normalize(d) for d in dists}
    return out


def declared() -> tuple[dict[str, str], dict[str, str]]:
    """(runtime, dev): normalized name -> exact pinned version, from pyproject.toml."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

    def pins(requirements: list[str]) -> dict[str, str]:
        out = {}
        for req in requirements:
            match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([A-Za-z0-9_.+\-]+)", req.strip())
            assert match, f"pyproject.toml: {req!r} is not pinned exactly (name==version)"
            out[normalize(match[1])] = match[2]
        return out

    return pins(project["dependencies"]), pins(project["optional-dependencies"]["dev"])


def locked() -> dict[str, str]:
    out = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.lock: {line!r} is not pinned exactly"
            out[normalize(name)] = version
    return out


def test_every_imported_package_is_declared_and_nothing_else() -> None:
    runtime, _ = declared()
    modules = imported_modules(*CODE_DIRS)
    dists = owners(modules)
    missing = {m: sorted(modules[m])[:3] for m, ds in dists.items() if not ds & set(runtime)}
    assert not missing, f"imported but not in pyproject.toml dependencies: {missing}"
    used = set().union(*dists.values())
    unused = sorted(set(runtime) - used)
    assert not unused, f"declared in pyproject.toml but imported nowhere: {unused}"


def test_the_tests_imports_are_declared() -> None:
    runtime, dev = declared()
    dists = owners(imported_modules("tests"))
    missing = sorted(m for m, ds in dists.items() if not ds & (set(runtime) | set(dev)))
    assert not missing, f"imported by tests but not declared (dev dependencies): {missing}"


def test_declared_pins_match_the_lock_and_the_installed_versions() -> None:
    runtime, dev = declared()
    lock = locked()
    for name, version in {**runtime, **dev}.items():
        assert lock.get(name) == version, f"{name}: pyproject {version}, lock {lock.get(name)}"
        installed = importlib.metadata.version(name).split("+")[0]  # torch's +cpu local tag
        assert installed == version, f"{name}: pinned {version}, installed {installed}"


def test_dvc_gets_the_c_yaml_parser() -> None:
    """The Makefile installs ``ruamel.yaml.clib`` (pinned in the lock): without it DVC parses
    dvc.yaml / dvc.lock in pure Python, several times per stage of ``dvc repro``."""
    assert importlib.metadata.version("ruamel.yaml.clib") == locked()["ruamel-yaml-clib"]
    assert importlib.util.find_spec("_ruamel_yaml") is not None  # the C extension ruamel loads
