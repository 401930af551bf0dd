"""The package's import graph: no cycle anywhere, and the params schema is a tree of leaves.

Read from the source (no process needed). Every import counts, function-level ones included (a
cycle closed inside a function is still a cycle, only a later one), and importing
``betamcmc.a.b`` also runs the package ``betamcmc.a`` (its ``__init__``).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(path: Path, modules: set[str]) -> set[str]:
    """The package modules a file imports (``TYPE_CHECKING`` blocks excluded), with the packages
    Python initialises on the way (``betamcmc.vae`` for ``betamcmc.vae.params``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for n in ast.walk(block)
    }
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # ``from betamcmc.sgmcmc.engine import wire`` imports a module
                sub = f"{node.module}.{alias.name}"
                names.add(sub if sub in modules else node.module)
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    out: set[str] = set()
    for name in names:
        parts = name.split(".")
        out |= {".".join(parts[:i]) for i in range(2, len(parts) + 1)}
    return out & modules


def graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in (SRC / "betamcmc").rglob("*.py")}
    out = {}
    for name, path in paths.items():
        # a module's own enclosing packages are initialised before it runs: no edge to them
        parts = name.split(".")
        enclosing = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        out[name] = imported(path, set(paths)) - enclosing
    return out


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*trail, node, nxt]
            if nxt not in state and (found := visit(nxt, [*trail, node])):
                return found
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node, [])):
            return found
    return None


def test_no_import_cycle_in_the_package() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_check_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_section_modules_import_the_schema_leaf_not_the_root() -> None:
    edges = graph()
    assert edges["betamcmc.core.schema"] == set()
    sections = [
        m
        for m in edges
        if m.endswith(".params") and m.count(".") == 2 and not m.startswith("betamcmc.cli.")
    ]
    assert len(sections) >= 5
    for leaf in ("betamcmc.core.paramfile", "betamcmc.core.chainparams"):
        assert "betamcmc.params" not in edges[leaf], leaf
    for name in sections:
        assert "betamcmc.params" not in edges[name], name
        assert "betamcmc.core.schema" in edges[name], name


def test_the_sampler_library_knows_nothing_of_vaes() -> None:
    """``betamcmc.sgmcmc`` is a sampler library: the VAE side (models, data, downstream tasks)
    uses it, never the other way round."""
    vae_side = ("betamcmc.vae", "betamcmc.finetune", "betamcmc.data")
    for name, imports in graph().items():
        if name.startswith("betamcmc.sgmcmc"):
            bad = {m for m in imports if m.startswith(vae_side)}
            assert not bad, f"{name} imports {sorted(bad)}"


def imports_outside(package: str, allowed: tuple[str, ...]) -> dict[str, list[str]]:
    """The modules of ``package`` that import a package module not under ``package`` or
    ``allowed`` (prefixes), with what they import."""
    own = (package, *allowed)
    found = {
        name: sorted(m for m in imports if not m.startswith(own))
        for name, imports in graph().items()
        if name.startswith(package)
    }
    return {name: outside for name, outside in found.items() if outside}


def test_core_imports_only_core() -> None:
    """``betamcmc.core`` is the base every stage runs (one folder dep of each stage in dvc.yaml):
    none of its modules may pull in a stage family's package, or every stage would run it."""
    assert imports_outside("betamcmc.core", ()) == {}


def test_the_engine_imports_only_itself_and_core() -> None:
    """``betamcmc.sgmcmc.engine`` is the sampler every stage that samples runs: it may not pull
    in the studies beside it or any other package."""
    assert imports_outside("betamcmc.sgmcmc.engine", ("betamcmc.core",)) == {}


def test_no_computation_imports_the_reports() -> None:
    """The reports (``betamcmc.results``) read what the computing packages wrote, never the
    other way round: dvc.yaml lists packages, so an edit to a report reruns no computation."""
    readers = ("betamcmc.results", "betamcmc.cli")
    for name, imports in graph().items():
        if not name.startswith(readers):
            bad = {m for m in imports if m.startswith("betamcmc.results")}
            assert not bad, f"{name} imports {sorted(bad)}"
