"""The real pipeline end to end in a temporary git + DVC repo on the tiny params.

`dvc repro` (every stage), a no-op second `dvc repro`, `dvc exp run -S`, and a queued experiment
run by `dvc queue start`: all of their MLflow runs must land in the store at the repo's root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from conftest import copy_repo, git_init, tiny_params, write_params

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def dvc(repo: Path, *args: str, timeout: float = 900) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(
        [str(BIN / "dvc"), *args],
        cwd=repo,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    repo = copy_repo(tmp_path / "repo")
    for generated in ("dvc.lock", "metrics"):
        target = repo / generated
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    write_params(repo / "params.yaml", tiny_params())
    git_init(repo)
    return repo


def _runs(repo: Path) -> list:
    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("betamcmc")
    return client.search_runs([exp.experiment_id], max_results=5000)


@pytest.mark.timeout(1800)
def test_repro_exp_run_and_queue_land_in_one_store(git_repo: Path) -> None:
    out = dvc(git_repo, "repro")
    assert "Running stage 'prepare'" in out
    assert (git_repo / "dvc.lock").exists() and (git_repo / "metrics" / "prepare.json").exists()
    base_runs = _runs(git_repo)
    assert any(r.info.run_name == "prepare" for r in base_runs)
    assert all(r.info.status == "FINISHED" for r in base_runs)

    again = dvc(git_repo, "repro")
    assert "Running stage" not in again and "up to date" in again

    subprocess.run(["git", "add", "-A"], cwd=git_repo, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "repro"],
        cwd=git_repo,
        check=True,
    )

    dvc(git_repo, "exp", "run", "-S", "data.synthetic.train=90", "prepare")
    dvc(git_repo, "exp", "run", "--queue", "-S", "data.synthetic.train=70", "prepare")
    dvc(git_repo, "queue", "start")
    deadline = time.time() + 300
    while time.time() < deadline:
        status = dvc(git_repo, "queue", "status")
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(2)
    assert "Success" in status, status

    prepare_runs = [r for r in _runs(git_repo) if r.info.run_name == "prepare"]
    by_size = {r.data.params["data.synthetic.train"]: r for r in prepare_runs}
    assert set(by_size) >= {"120", "90", "70"}, sorted(by_size)
    assert "dvc_exp_name" not in by_size["120"].data.tags
    for size in ("90", "70"):
        tags = by_size[size].data.tags
        assert tags["dvc_exp_name"] and tags["dvc_exp_baseline"] and tags["git_commit"]
        assert tags["stage"] == "prepare" and tags["params_hash"]
        assert by_size[size].info.status == "FINISHED"
    # nothing leaked into a temporary workspace store
    assert not list((git_repo / ".dvc" / "tmp").rglob("mlflow.db"))
