"""The temporary projects the tests run in are built from git-tracked files only.

A checkout where ``make repro`` (or ``dvc exp run``) has run holds ``data/``, ``models/``,
``reports/``, ``metrics/``, ``dvc.lock`` and ``mlflow.db``; once the baseline is committed,
``metrics/`` and ``dvc.lock`` are even tracked. None of it may reach a test project, or tests
that check "nothing written" or "runs from scratch" see the user's results (issue 10). A
developer's uncommitted edits to tracked files, on the other hand, must be tested.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import copy_repo, dvc_output_paths, git_init, run_stage, tiny_params, write_params

# What a `make repro` leaves in a checkout (a sample per kind), and a stray untracked file.
LEFT_BY_REPRO = [
    "data/prepared/meta.json",
    "models/pretrain/constant/model.pt",
    "reports/pretrain/comparison.md",
    "mlflow.db",
    "mlartifacts/1/a/artifacts/x.txt",
    "notes-of-the-day.txt",
]
COMMITTED_BASELINE = ["dvc.lock", "metrics/prepare.json", "metrics/pretrain/constant.json"]


def _checkout_after_repro(root: Path) -> Path:
    """A git checkout of the project where the pipeline has run and its baseline is committed."""
    checkout = copy_repo(root)
    for rel in COMMITTED_BASELINE:
        (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
        (checkout / rel).write_text('{"stale": "from the checkout"}\n')
    git_init(checkout)  # commits the baseline (metrics/ and dvc.lock are not git-ignored)
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=checkout, capture_output=True, text=True, check=True
    ).stdout.split()
    assert set(COMMITTED_BASELINE) <= set(tracked)
    for rel in LEFT_BY_REPRO:
        (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
        (checkout / rel).write_text("left by make repro\n")
    return checkout


def test_every_stage_output_is_known() -> None:
    outputs = dvc_output_paths()
    for expected in ("dvc.lock", "data/prepared", "metrics/prepare.json", "metrics/pretrain"):
        assert expected in outputs
    assert "metrics" not in outputs  # metrics/studies/ is an input of pretrain_report


def test_test_project_has_tracked_files_and_edits_but_no_outputs(tmp_path: Path) -> None:
    checkout = _checkout_after_repro(tmp_path / "checkout")
    with (checkout / "params.yaml").open("a") as fh:
        fh.write("# an uncommitted edit\n")

    project = copy_repo(tmp_path / "project", source=checkout)

    assert (project / "params.yaml").read_text().endswith("# an uncommitted edit\n")
    assert (project / "dvc.yaml").is_file() and (project / "stages" / "prepare.py").is_file()
    assert (project / "metrics" / "studies" / "README.md").is_file()  # tracked, not an output
    for rel in COMMITTED_BASELINE + LEFT_BY_REPRO:
        assert not (project / rel).exists(), f"{rel} leaked into the test project"
    for top in ("data", "models", "reports", "mlartifacts"):
        assert not (project / top).exists(), f"{top}/ leaked into the test project"


def test_stage_in_a_project_from_a_used_checkout_starts_clean(tmp_path: Path) -> None:
    """The failure seen on a fresh clone after `make repro`: a stage stopped by bad input must
    leave no metrics behind, and none may be there from the checkout."""
    checkout = _checkout_after_repro(tmp_path / "checkout")
    project = copy_repo(tmp_path / "project", source=checkout)
    bad = project / "bad.txt"
    bad.write_bytes(b"ok\n\xfe\n")
    write_params(
        project / "params.yaml",
        tiny_params({"data": {"corpus": "text", "path": str(bad)}}),
    )
    proc = run_stage(project, "prepare", check=False)
    assert proc.returncode == 2, proc.stderr
    assert not (project / "metrics" / "prepare.json").exists()
    assert not (project / "data").exists()
