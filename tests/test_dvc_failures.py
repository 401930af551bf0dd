"""A stage that fails under DVC, and DVC experiments run in parallel (docs/robustness.md).

DVC deletes a stage's declared outputs before it runs the stage's command, so a stage that then
fails leaves them missing; `dvc.lock` still records the last good run, and `dvc checkout <stage>`
brings those outputs back from the cache. `betamcmc params check` (run first by `make repro`)
refuses a bad params file before DVC touches anything.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from conftest import tiny_params, write_params

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def _env() -> dict[str, str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def run(repo: Path, *cmd: str, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(BIN / cmd[0]), *cmd[1:]], cwd=repo, capture_output=True,
                          text=True, env=_env(), timeout=600)  # fmt: skip
    if ok:
        assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _tree(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


@pytest.fixture
def git_repo(prepared_baseline: Path) -> Path:
    """A git + DVC project with the tiny params where ``dvc repro prepare`` ran (and was
    committed): a copy of the session's one (conftest)."""
    return prepared_baseline


def test_failed_stage_outputs_come_back_with_dvc_checkout(git_repo: Path) -> None:
    good = _tree(git_repo / "data" / "prepared")
    assert good

    # a corpus that prepare refuses; the params file itself is valid
    bad = git_repo / "corpus.txt"
    bad.write_text("only one sentence\n")
    write_params(git_repo / "params.yaml",
                 tiny_params({"data": {"corpus": "text", "path": str(bad)}}))  # fmt: skip
    assert run(git_repo, "betamcmc", "params", "check").returncode == 0
    failed = run(git_repo, "dvc", "repro", "prepare", ok=False)
    assert failed.returncode != 0
    assert "the valid split is empty" in failed.stderr + failed.stdout
    assert not (git_repo / "data" / "prepared").exists()  # DVC removed it before the command ran

    run(git_repo, "dvc", "checkout", "prepare")  # the documented recovery
    assert _tree(git_repo / "data" / "prepared") == good

    # a bad params file never reaches DVC when `make repro` checks it first
    write_params(git_repo / "params.yaml", tiny_params({"data": {"max_len": 1}}))
    check = run(git_repo, "betamcmc", "params", "check", ok=False)
    assert check.returncode == 2 and "data.max_len: must be >= 2 (got 1)" in check.stderr
    make = subprocess.run(["make", "-n", "repro"], cwd=git_repo, capture_output=True, text=True)
    lines = make.stdout.splitlines()
    check_at = next(i for i, ln in enumerate(lines) if "betamcmc params check" in ln)
    repro_at = next(i for i, ln in enumerate(lines) if ln.rstrip().endswith("dvc repro"))
    assert check_at < repro_at


def test_exp_run_and_queue_land_in_one_store(git_repo: Path) -> None:
    """``dvc exp run -S`` and two queued experiments run two at a time (``dvc queue start -j 2``)
    land their MLflow runs, tagged with the experiment, in the one store at the repo's root."""
    out = run(git_repo, "dvc", "exp", "run", "-S", "data.synthetic.train=90", "prepare").stdout
    assert "Running stage 'prepare'" in out
    for size in (70, 80):
        run(git_repo, "dvc", "exp", "run", "--queue", "-S", f"data.synthetic.train={size}",
            "prepare")  # fmt: skip
    run(git_repo, "dvc", "queue", "start", "-j", "2")
    deadline = time.time() + 300
    while time.time() < deadline:
        status = run(git_repo, "dvc", "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(2)
    assert status.count("Success") == 2, status

    client = mlflow.MlflowClient(f"sqlite:///{git_repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("betamcmc")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    prepare_runs = [r for r in runs if r.info.run_name == "prepare"]
    by_size = {r.data.params["data.synthetic.train"]: r for r in prepare_runs}
    assert len(prepare_runs) == 4 and set(by_size) == {"120", "90", "70", "80"}, sorted(by_size)
    assert "dvc_exp_name" not in by_size["120"].data.tags  # the plain `dvc repro`
    for size in ("90", "70", "80"):
        tags = by_size[size].data.tags
        assert tags["dvc_exp_name"] and tags["dvc_exp_baseline"] and tags["git_commit"]
        assert tags["stage"] == "prepare" and tags["params_hash"]
        assert tags["pipeline_run"] == tags["dvc_exp_name"]
        assert by_size[size].info.status == "FINISHED"
    assert len({by_size[s].data.tags["dvc_exp_name"] for s in ("90", "70", "80")}) == 3
    shown = run(git_repo, "dvc", "exp", "show", "--no-pager", "--csv").stdout
    assert shown.count("\n") >= 4  # the workspace, the baseline and the three experiments
    # nothing leaked into a temporary workspace store
    assert not list((git_repo / ".dvc" / "tmp").rglob("mlflow.db"))
