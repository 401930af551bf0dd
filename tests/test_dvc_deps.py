"""dvc.yaml's code deps are exactly the modules each stage runs, derived from the imports.

A stage that misses a module it runs keeps stale cached outputs after a fix there (DVC calls
them up to date); a stage that depends on a whole package reruns for an edit it never runs (a
report module). So: every stage lists its script and every ``src/betamcmc`` file reachable from
it through imports (function-level ones included: they run when the stage does), and nothing
else of the code. On failure the message prints the list to paste into dvc.yaml.
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
    for node in ast.walk(tree):
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


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_code_deps_are_the_modules_the_stage_runs(stage: str) -> None:
    spec = STAGES[stage]
    script = REPO / spec["cmd"].split()[1]
    expected = code_of(script)
    declared = [d for d in spec["deps"] if d.startswith(("src/", "stages/"))]
    folders = [d for d in declared if (REPO / d).is_dir()]
    assert not folders, f"{stage}: list the files it runs, not packages: {folders}"
    paste = "\n".join(f"      - {d}" for d in expected)
    assert sorted(declared) == sorted(expected), f"{stage}: its code deps should be\n{paste}"


def test_the_derivation_sees_function_level_imports(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("def main():\n    from betamcmc.results.run import run_report\n")
    files = {str(MODULES[m].relative_to(REPO)) for m in imports_of(script)}
    assert {"src/betamcmc/results/run.py", "src/betamcmc/results/__init__.py"} <= files
    assert "src/betamcmc/results/page.py" not in files  # only what it imports, not the package
