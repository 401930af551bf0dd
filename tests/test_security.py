"""Security basics (docs/robustness.md, "Security"): the MLflow UI binds the loopback address unless
the user asks otherwise, and nothing unpickles a file: every ``torch.load`` is weights-only, no
``pickle`` / unsafe YAML / ``allow_pickle`` anywhere in the code that stages and commands run."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

from betamcmc import cli, tracking

from conftest import REPO

CODE = sorted([*(REPO / "src" / "betamcmc").rglob("*.py"), *(REPO / "stages").glob("*.py")])


def _calls(path: Path) -> list[tuple[str, ast.Call]]:
    """(dotted name, node) of every call in ``path``, e.g. ``torch.load``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Call):
            out.append((ast.unparse(node.func), node))
    return out


def _keyword(call: ast.Call, name: str) -> object:
    for kw in call.keywords:
        if kw.arg == name and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return None


def test_every_torch_load_is_weights_only() -> None:
    loads = [(p, c) for p in CODE for name, c in _calls(p) if name == "torch.load"]
    assert loads, "no torch.load found: the scan is broken"
    unsafe = [f"{p.relative_to(REPO)}:{c.lineno}" for p, c in loads
              if _keyword(c, "weights_only") is not True]  # fmt: skip
    assert not unsafe, f"torch.load without weights_only=True: {unsafe}"


UNSAFE = {
    "pickle.load", "pickle.loads", "pickle.Unpickler", "cloudpickle.load", "joblib.load",
    "dill.load", "yaml.load", "yaml.unsafe_load", "yaml.full_load", "marshal.loads", "eval", "exec",
    "shelve.open", "mlflow.pytorch.load_model", "mlflow.pyfunc.load_model",
}  # fmt: skip


def test_nothing_unpickles_or_evaluates_a_file() -> None:
    found = [f"{p.relative_to(REPO)}:{c.lineno}: {name}" for p in CODE
             for name, c in _calls(p) if name in UNSAFE]  # fmt: skip
    found += [f"{p.relative_to(REPO)}:{c.lineno}: {name}(allow_pickle=True)" for p in CODE
              for name, c in _calls(p) if _keyword(c, "allow_pickle") is True]  # fmt: skip
    assert not found, found


def test_the_scan_would_catch_an_unsafe_load(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import torch, pickle\ntorch.load('x')\npickle.loads(b'')\n")
    names = [name for name, _ in _calls(bad)]
    assert "torch.load" in names and "pickle.loads" in names
    assert _keyword(_calls(bad)[0][1], "weights_only") is None


@pytest.fixture
def ui_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[list[str]]:
    """Run ``betamcmc ui`` in-process with the server start captured instead of run."""
    seen: list[list[str]] = []
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tracking, "setup", lambda params=None: None)
    monkeypatch.setattr(subprocess, "call", lambda cmd: seen.append(cmd) or 0)
    return seen


def _host(cmd: list[str]) -> str:
    return cmd[cmd.index("--host") + 1]


def test_ui_binds_loopback_by_default(ui_command: list[list[str]], capsys) -> None:
    assert cli.main(["ui", "--port", "5123"]) == 0
    (cmd,) = ui_command
    assert cmd[1:4] == ["-m", "mlflow", "ui"] and _host(cmd) == "127.0.0.1"
    assert cmd[cmd.index("--port") + 1] == "5123"
    out, err = capsys.readouterr()
    assert "http://127.0.0.1:5123" in out and "warning" not in err


def test_ui_other_host_only_when_asked_and_warned(ui_command: list[list[str]], capsys) -> None:
    assert cli.main(["ui", "--host", "0.0.0.0"]) == 0
    assert _host(ui_command[0]) == "0.0.0.0"
    err = capsys.readouterr().err
    assert err.startswith("warning: --host 0.0.0.0 serves the runs") and len(err.splitlines()) == 1
