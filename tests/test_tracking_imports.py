"""``betamcmc.tracking`` is the only code that imports MLflow: the project's own modules
(src/, stages/, bench/) log, open runs and read runs back through it. And the console script
starts without MLflow, torch or DVC: ``betamcmc --help`` loads typer only."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("src", "stages", "bench")
ALLOWED = ROOT / "src" / "betamcmc" / "tracking"


def mlflow_imports(path: Path) -> list[int]:
    """Lines of ``path`` that import mlflow (``import mlflow``, ``import mlflow.x as y``,
    ``from mlflow... import``), at any depth: in a function too."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        if any(name == "mlflow" or name.startswith("mlflow.") for name in names):
            found.append(node.lineno)
    return found


def test_only_tracking_imports_mlflow() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for folder in SCANNED
        for path in sorted((ROOT / folder).rglob("*.py"))
        if not path.is_relative_to(ALLOWED)
        for line in mlflow_imports(path)
    ]
    assert not offenders, f"import mlflow outside betamcmc.tracking: {offenders}"


def test_the_scan_sees_every_form(tmp_path: Path) -> None:
    code = tmp_path / "bad.py"
    code.write_text(
        "import os, mlflow\n"
        "def f():\n"
        "    from mlflow.entities import Metric\n"
        "    import mlflow.tracking as t\n"
        "from .mlflow import x\n"  # a relative module of the same name is not MLflow
        "import mlflowish\n"
    )
    assert mlflow_imports(code) == [1, 3, 4]


def test_help_loads_neither_mlflow_nor_torch_nor_dvc() -> None:
    code = (
        "import sys\n"
        "from betamcmc.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'mlflow', 'torch', 'dvc'}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.splitlines()[-1] == "[]"
