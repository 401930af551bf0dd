"""`betamcmc ui` in a real headless browser (bench/ui_check.py): the runs table opens in
Model-training mode and each comparison link shows its runs and metric columns. Skips with the
reason when no Chromium is installed (`apt-get install chromium`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, PipelineRun, copy_pipeline

pytestmark = pytest.mark.slow

sys.path.insert(0, str(REPO / "bench"))
from ui_check import BROWSERS, find_browser  # noqa: E402


def test_ui_links_show_the_runs_and_metrics(pipeline: PipelineRun, tmp_path: Path) -> None:
    if find_browser() is None:
        pytest.skip(f"no headless browser ({', '.join(BROWSERS)}): apt-get install chromium")
    repo = copy_pipeline(pipeline, tmp_path / "repo")
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "ui_check.py"),
            "--repo",
            str(repo),
            "--out",
            str(tmp_path / "shots"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("PASS: ") == 5, proc.stdout
    assert len(list((tmp_path / "shots").glob("*.png"))) == 5


def test_the_check_says_skip_without_a_browser(monkeypatch: pytest.MonkeyPatch) -> None:
    import ui_check

    monkeypatch.setattr(ui_check, "find_browser", lambda: None)
    assert ui_check.main(["--repo", str(REPO)]) == 0
