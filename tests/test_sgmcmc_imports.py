"""The sampler library's import graph: no cycles, and nothing of the VAE side.

Read from the source (module-level imports only, as Python runs them at import time), so the test
needs no process and fails on the first edge that closes a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
AREAS = ("betamcmc.sgmcmc", "betamcmc.rl")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def module_imports(path: Path) -> set[str]:
    """``betamcmc`` modules imported anywhere in a file, function-level imports included (a cycle
    closed by a function-level import is still a cycle); ``TYPE_CHECKING`` blocks excluded."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for n in ast.walk(block)
    }
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("betamcmc"):
            for alias in node.names:  # ``from betamcmc.sgmcmc import wire`` imports a module
                candidate = f"{node.module}.{alias.name}"
                as_path = SRC / candidate.replace(".", "/")
                is_module = as_path.is_dir() or as_path.with_suffix(".py").exists()
                out.add(candidate if is_module else node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("betamcmc")}
    return out


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in (SRC / "betamcmc").rglob("*.py")}
    return {
        name: {m for m in module_imports(path) if m in modules}
        for name, path in modules.items()
        if name.startswith(AREAS)
    }


def test_no_import_cycle_in_the_sampler_and_rl_packages() -> None:
    edges = graph()
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if nxt == "betamcmc.params" or not nxt.startswith(AREAS):
                continue
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*trail, node, nxt]))
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [])


def test_the_sampler_library_knows_nothing_of_vaes() -> None:
    for name, imports in graph().items():
        if name.startswith("betamcmc.sgmcmc"):
            bad = {
                m
                for m in imports
                if m.startswith(("betamcmc.vae", "betamcmc.finetune", "betamcmc.data"))
            }
            assert not bad, f"{name} imports {sorted(bad)}"
