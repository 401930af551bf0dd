"""Experiments outlive their clone (docs/remote.md): a round trip through a bare git remote and
a DVC remote in a local directory.

Clone A runs one experiment of a study (one tiny pretrain item; ``prepare`` ran in the committed
baseline) and pushes it with `betamcmc study push` (`dvc exp push`: the experiment's git ref,
its models in the DVC remote).
Clone B, cloned from the git remote before the experiment existed, pulls it with
`betamcmc study pull`, lists it in `dvc exp show`, collects it with `betamcmc study collect`,
applies it and samples from its model with `betamcmc sample`, with no stage run in B.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import dvc, dvc_command, tiny_params, write_params

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
STUDY = {
    "name": "shared",
    "targets": ["pretrain@cyclical"],
    "experiments": {  # "four" never runs: a study run piece by piece moves what exists
        "two": {"pretrain.schedules.cyclical.cycles": 2},
        "four": {"pretrain.schedules.cyclical.cycles": 4},
    },
}


def sh(repo: Path, *cmd: str) -> str:
    """Run a command of this venv (betamcmc) or git in ``repo``; fail the test with its output."""
    exe = str(BIN / cmd[0]) if (BIN / cmd[0]).exists() else cmd[0]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run([exe, *cmd[1:]], cwd=repo, capture_output=True, text=True, env=env,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


@pytest.fixture
def clones(prepared_baseline: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """Clone A (the tiny project with ``prepare`` run and committed, a default DVC remote,
    pushed to a bare git remote) and clone B (cloned from that remote), plus the DVC remote's
    directory."""
    origin, store = tmp_path / "origin.git", tmp_path / "dvc-store"
    sh(tmp_path, "git", "init", "-q", "--bare", "-b", "main", str(origin))
    a = prepared_baseline
    small = {"pretrain": {"seeds": [0], "train": {"iterations": 20, "eval_every": 10}}}
    write_params(a / "params.yaml", tiny_params(small))  # prepare's params stay: it is current
    (a / "studies").mkdir(exist_ok=True)
    (a / "studies" / "shared.yaml").write_text(yaml.safe_dump(STUDY))
    dvc(a, "remote", "add", "-d", "store", str(store))  # the documented setup (.dvc/config)
    sh(a, "git", "add", "-A")
    sh(a, "git", "commit", "-qm", "a study and a DVC remote")
    sh(a, "git", "remote", "add", "origin", str(origin))
    sh(a, "git", "push", "-q", "origin", "main")
    sh(tmp_path, "git", "clone", "-q", str(origin), str(tmp_path / "b"))
    return a, tmp_path / "b", store


def test_an_experiment_pushed_from_one_clone_is_sampled_in_another(
    clones: tuple[Path, Path, Path],
) -> None:
    a, b, store = clones
    dvc(a, "exp", "run", "-n", "shared-two", "-S", "pretrain.schedules.cyclical.cycles=2",
        "pretrain@cyclical")  # fmt: skip
    said = sh(a, "betamcmc", "study", "push", "studies/shared.yaml")
    assert ("pushed 1 experiment(s) of study 'shared' (to origin): shared-two; "
            "not found there: shared-four") in said  # fmt: skip
    assert any(store.rglob("*")), "no output reached the DVC remote"

    said = sh(b, "betamcmc", "study", "pull", "studies/shared.yaml")
    assert "pulled 1 experiment(s) of study 'shared' (from origin): shared-two;" in said
    shown = _exp_show(b)
    names = [r.get("name") for c in shown for e in c.get("experiments") or [] for r in e["revs"]]
    assert "shared-two" in names

    sh(b, "betamcmc", "study", "collect", "studies/shared.yaml")
    collected = json.loads((b / "metrics" / "studies" / "shared.json").read_text())
    assert [r["name"] for r in collected["experiments"]] == ["shared-two"]
    assert collected["missing"] == ["shared-four"]
    assert "cyclical" in collected["experiments"][0]["schedules"]

    # the experiment's params, lock file and outputs; the tiny project never ran the other
    # stages, whose outputs `exp apply` then reports as missing: check out the one needed
    dvc(b, "exp", "apply", "shared-two", check=False)
    dvc(b, "checkout", "pretrain@cyclical")  # from the cache `study pull` filled
    model = Path("models/pretrain/cyclical")
    assert _tree(b / model) == _tree(a / model)
    assert "up to date" in dvc(b, "status", "pretrain@cyclical")  # nothing to retrain
    out = sh(b, "betamcmc", "sample", "-m", str(model), "-n", "2")
    assert "# 2 samples from the prior" in out and out.count("\n") >= 3
    assert not (b / "mlflow.db").exists()  # no stage ran in B


def _exp_show(repo: Path) -> list[dict]:
    """`dvc exp show --json` (stdout only: warnings go to stderr)."""
    command, env = dvc_command("exp", "show", "--json")
    proc = subprocess.run(command, cwd=repo, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}
