"""What a failed `dvc exp run` leaves behind, and the way back (docs/robustness.md, "A stage
that fails under DVC"): every statement of that section is checked here on a tiny project."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import dvc, tiny_params, write_params

pytestmark = pytest.mark.slow


def _files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                          check=True).stdout  # fmt: skip


@pytest.fixture
def baseline(prepared_baseline: Path) -> Path:
    """A project whose `prepare` ran and whose metrics and dvc.lock are committed (as the
    repository commits its baseline): a copy of the session's one (conftest)."""
    return prepared_baseline


def test_a_failed_exp_run_and_the_way_back(baseline: Path, tmp_path: Path) -> None:
    repo = baseline
    good_data, good_metrics = _files(repo / "data" / "prepared"), _files(repo / "metrics")
    good_params = (repo / "params.yaml").read_bytes()
    assert "prepare.json" in good_metrics and good_data

    missing = tmp_path / "missing" / "corpus.txt"
    out = dvc(repo, "exp", "run", "prepare", "-S", "data.corpus=text",
              "-S", f"data.path={missing}", check=False)  # fmt: skip
    assert f"{missing}: data.path does not exist" in out

    # left behind: the declared outputs deleted, metrics file included; params.yaml edited;
    # dvc.lock untouched; no experiment recorded
    assert not (repo / "data" / "prepared").exists()
    assert not (repo / "metrics" / "prepare.json").exists()
    status = _git(repo, "status", "--short")
    assert sorted(status.splitlines()) == [" D metrics/prepare.json", " M params.yaml"], status
    assert yaml.safe_load((repo / "params.yaml").read_text())["data"]["path"] == str(missing)
    assert "exp-" not in _git(repo, "for-each-ref", "refs/exps")  # nothing under refs/exps

    # the way back, as documented
    _git(repo, "checkout", "--", "params.yaml", "dvc.lock", "metrics/")
    dvc(repo, "checkout", "prepare")
    assert _files(repo / "data" / "prepared") == good_data
    assert _files(repo / "metrics") == good_metrics
    assert (repo / "params.yaml").read_bytes() == good_params
    assert "up to date" in dvc(repo, "status", "prepare")

    # a plain `dvc repro` that fails deletes the metrics file the same way
    write_params(repo / "params.yaml",
                 tiny_params({"data": {"corpus": "text", "path": str(missing)}}))  # fmt: skip
    dvc(repo, "repro", "prepare", check=False)
    assert not (repo / "metrics" / "prepare.json").exists()
