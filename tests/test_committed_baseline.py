"""The committed baseline (``dvc.lock`` + ``metrics/``) is current with the committed code and params.

A fresh clone compares against it (``dvc metrics diff``, ``dvc exp show``, ``dvc plots diff``), so
a commit that changes a stage's code or params without a new ``make repro`` leaves a baseline that
lies. The check runs on what HEAD holds (``git archive HEAD``), not on the working tree, so
uncommitted edits never trip it: ``dvc status`` there may report the outputs that are not in git
(``data/``, ``models/``, ``reports/``: absent in a clone, as expected) and nothing else. A changed
dependency or params key, a metrics file that differs from its ``dvc.lock`` hash, a stage that
never ran, or a metrics file that is missing or does not parse: each is a stale baseline. The fix
is ``make repro`` on a quiet machine, then commit ``dvc.lock`` and ``metrics/``
(docs/development.md).

Until the first baseline is committed, the check skips with that reason.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import REPO, PipelineRun, copy_pipeline, dvc, git_commit_all


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, check=False)


def _tracked(path: str, files: set[str]) -> bool:
    return path in files or any(f.startswith(path.rstrip("/") + "/") for f in files)


def _parse_problem(path: Path) -> str | None:
    """Why a committed metrics file cannot serve as a baseline (None: it can)."""
    if not path.is_file():
        return "missing"
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".json":
            json.loads(text)
        elif path.suffix == ".csv":
            rows = list(csv.reader(io.StringIO(text)))
            if len(rows) < 2 or not rows[0]:
                return "no header or no rows"
    except ValueError as err:
        return f"does not parse ({err})"
    return None


def baseline_problems(repo: Path, dest: Path) -> list[str]:
    """What makes the baseline committed at ``repo``'s HEAD stale; ``dest`` is scratch space."""
    archive = _git(repo, "archive", "--format=tar", "HEAD")
    assert archive.returncode == 0, archive.stderr.decode()
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        files = {m.name for m in tar.getmembers() if m.isfile()}
        tar.extractall(dest, filter="data")
    _git(dest, "init", "-q")  # DVC wants a git repository; the files are HEAD's

    problems = []
    stages = yaml.safe_load((dest / "dvc.lock").read_text())["stages"]
    for item, lock in stages.items():
        for out in lock.get("outs", []):
            if out["path"].startswith("metrics/"):
                why = _parse_problem(dest / out["path"])
                if why:
                    problems.append(f"{item}: {out['path']} {why}")
    status: dict[str, list[Any]] = json.loads(dvc(dest, "status", "--json") or "{}")
    for item, changes in status.items():
        for change in changes:
            if isinstance(change, str):  # "changed command", "always changed", ...
                problems.append(f"{item}: {change}")
                continue
            for kind, paths in change.items():
                for path, what in paths.items():
                    if _tracked(path, files):  # not data/, models/, reports/ (not in git)
                        problems.append(f"{item}: {kind}: {path} {what}")
    return problems


def test_committed_baseline_is_current(tmp_path: Path) -> None:
    if not _git(REPO, "ls-files", "--error-unmatch", "dvc.lock").returncode == 0:
        pytest.skip(
            "dvc.lock is not committed yet: the baseline check starts once the dvc.lock and "
            "metrics/ of a quiet `make repro` are committed (docs/development.md)"
        )
    problems = baseline_problems(REPO, tmp_path / "head")
    assert not problems, (
        "the committed dvc.lock / metrics/ are stale with respect to the committed code and "
        "params; run `make repro` on a quiet machine and commit dvc.lock and metrics/:\n  "
        + "\n  ".join(problems)
    )


@pytest.mark.slow
def test_stale_or_broken_baseline_is_caught(pipeline: PipelineRun, tmp_path: Path) -> None:
    """The check itself, on a copy of the shared pipeline with its baseline committed."""
    repo = copy_pipeline(pipeline, tmp_path / "repo")
    git_commit_all(repo, "baseline")
    assert baseline_problems(repo, tmp_path / "fresh") == []

    # uncommitted edits do not count; a committed params change does
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"]["max_len"] += 1
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert baseline_problems(repo, tmp_path / "edited") == []
    git_commit_all(repo, "max_len + 1")
    problems = baseline_problems(repo, tmp_path / "stale")
    assert any(p.startswith("prepare: changed deps: params.yaml") for p in problems), problems

    # a metrics file edited by hand, and one that no longer parses
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "revert", "--no-edit", "HEAD")
    (repo / "metrics" / "sgmcmc_sgd.json").write_text('{"accuracy": 1.0}\n')
    (repo / "metrics" / "prepare.json").write_text("{not json\n")
    git_commit_all(repo, "broken metrics")
    problems = baseline_problems(repo, tmp_path / "broken")
    assert any(p.startswith("prepare: metrics/prepare.json does not parse") for p in problems)
    assert "sgmcmc_sgd: changed outs: metrics/sgmcmc_sgd.json modified" in problems, problems
