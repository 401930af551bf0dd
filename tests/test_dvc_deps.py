"""dvc.yaml's code deps are the packages each stage runs, derived from the imports.

A stage that misses a module it runs keeps stale cached outputs after a fix there (DVC calls
them up to date); a stage that lists a package it never runs reruns for nothing. So every stage
lists its script, the modules it runs at the package root and the folder of every package it
runs (``src/betamcmc/vae/``), found through the imports (function-level ones included: they run
when the stage does), and nothing else of the code. Packages are the unit, so the map stays
short: compute packages hold no report code (that is ``results/``), and the stages of one
family rerun for an edit in it. On failure the message prints the list to paste into dvc.yaml.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from conftest import REPO

SRC = REPO / "src"
STAGES = {n: {**s.get("do", {}), **s} for n, s in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].items()}  # fmt: skip


def _modules() -> dict[str, Path]:
    out = {}
    for path in (SRC / "betamcmc").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def imports_of(path: Path) -> set[str]:
    """Package modules a file imports anywhere (and the packages initialised on the way)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                names.add(sub if sub in MODULES else node.module)
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    found: set[str] = set()
    for name in names:
        parts = name.split(".")
        found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return found & set(MODULES)


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node that can run: all but the bodies of ``if TYPE_CHECKING:`` blocks (imports
    for annotations only, which never execute)."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            todo += node.orelse
            continue
        todo += list(ast.iter_child_nodes(node))
    return out


def code_of(script: Path) -> list[str]:
    """The script and every package file it runs, as dvc.yaml paths."""
    seen: set[str] = set()
    todo = list(imports_of(script))
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += imports_of(MODULES[name])
    files = {str(MODULES[m].relative_to(REPO)) for m in seen}
    return [str(script.relative_to(REPO)), *sorted(files)]


def package_files(folder: Path) -> set[str]:
    """The modules of a package folder, its subpackages' included, as dvc.yaml paths."""
    return {str(p.relative_to(REPO)) for p in folder.rglob("*.py")}


def as_deps(files: list[str]) -> list[str]:
    """The dvc.yaml form of a stage's code: its script, then each module at the package root
    (``src/betamcmc/__init__.py``, ``params.py``) and the folder of each package it runs
    (``src/betamcmc/vae/``), sorted. A package is the unit: the stage reruns for an edit
    anywhere in a package it runs, and for none outside."""
    deps = set()
    for file in files[1:]:
        parts = Path(file).parts
        deps.add(f"{Path(*parts[:3])}/" if len(parts) > 3 else file)
    return [files[0], *sorted(deps)]


def expand(deps: list[str]) -> list[str]:
    """dvc.yaml code deps with each folder (``src/betamcmc/rl/``) replaced by its modules."""
    out: set[str] = set()
    for dep in deps:
        out |= package_files(REPO / dep) if dep.endswith("/") else {dep}
    return sorted(out)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_code_deps_are_the_packages_the_stage_runs(stage: str) -> None:
    spec = STAGES[stage]
    script = REPO / spec["cmd"].split()[1]
    expected = code_of(script)
    declared = [d for d in spec["deps"] if d.startswith(("src/", "stages/"))]
    paste = "\n".join(f"      - {d}" for d in as_deps(expected))
    assert set(expected) <= set(expand(declared)), f"{stage}: its code deps should be\n{paste}"
    assert declared == as_deps(expected), f"{stage}: list them as\n{paste}"


def test_the_derivation_sees_function_level_imports(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("def main():\n    from betamcmc.results.run import run_report\n")
    files = {str(MODULES[m].relative_to(REPO)) for m in imports_of(script)}
    assert {"src/betamcmc/results/run.py", "src/betamcmc/results/__init__.py"} <= files
    assert "src/betamcmc/results/page.py" not in files  # only what it imports, not the package


def _stages_running(package: str) -> set[str]:
    """The stages whose code deps hold a module of ``src/betamcmc/<package>/``."""
    return {
        name
        for name, spec in STAGES.items()
        if any(d.startswith(f"src/betamcmc/{package}/") for d in expand(spec["deps"]))
    }


def test_an_edit_in_a_package_reruns_only_the_stages_that_run_it() -> None:
    """Each stage loads only its params sections (betamcmc.core.paramfile), so a package's schema
    is no dep of the stages that never read it: rl/ reruns the RL stages (and the page)."""
    assert _stages_running("rl") == {"rl", "report"}
    # the reports live in results/: editing one reruns the report stages, never a computation
    assert _stages_running("results") == {"pretrain_report", "report"}
    assert "prepare" not in _stages_running("vae") | _stages_running("sgmcmc")
    assert not _stages_running("sgmcmc") & {"prepare", "pretrain", "classify", "dialog"}


def test_the_stages_never_load_every_section() -> None:
    """Only the page (``report``) reads the whole params file; every other stage's code deps
    leave out ``betamcmc/params.py`` (the assembly of every section's schema)."""
    whole = {name for name, spec in STAGES.items() if "src/betamcmc/params.py" in spec["deps"]}
    assert whole == {"report"}
