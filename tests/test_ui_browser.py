"""`betamcmc ui` in a real headless browser (bench/ui_check.py): the runs table opens in
Model-training mode, each comparison's table (a saved view) shows its runs with its metric
columns in view at 1600 px, and each compare page its runs and metrics section. Skips with the
reason when no Chromium is installed (`apt-get install chromium`)."""

from __future__ import annotations

import sys

import pytest

from conftest import REPO, BackgroundUICheck

sys.path.insert(0, str(REPO / "bench"))
from ui_check import BROWSERS, find_browser  # noqa: E402


@pytest.mark.slow
def test_ui_links_show_the_runs_and_metrics(ui_check: BackgroundUICheck | None) -> None:
    """``python bench/ui_check.py --repo <a copy of the shared pipeline> --out <shots>``; it
    runs in the background from the moment the pipeline is done (conftest), this reads it."""
    if find_browser() is None:
        pytest.skip(f"no headless browser ({', '.join(BROWSERS)}): apt-get install chromium")
    assert ui_check is not None
    proc = ui_check.wait()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("PASS: ") == 5, proc.stdout
    assert len(list(ui_check.shots.glob("*.png"))) == 5


def test_the_check_says_skip_without_a_browser(monkeypatch: pytest.MonkeyPatch) -> None:
    import ui_check

    monkeypatch.setattr(ui_check, "find_browser", lambda: None)
    assert ui_check.main(["--repo", str(REPO)]) == 0


def test_columns_count_as_shown_only_when_rendered_and_within_the_width() -> None:
    """The check's reading of ag-grid's DOM: a metric's header cell must be rendered (ag-grid
    leaves out columns scrolled off to the side) and the grid must need no horizontal scroll."""
    from ui_check import out_of_view

    def dom(columns: list[str], scroll_px: int) -> str:
        cells = "".join(
            f'<div class="ag-header-cell" col-id="metrics.`{c}`">{c}</div>' for c in columns
        )
        bar = f'<div class="ag-body-horizontal-scroll" aria-hidden="true" style="height: {scroll_px}px;">'
        return cells + bar

    assert out_of_view(dom(["test.kl", "test.mi"], 0), ("test.kl", "test.mi")) == []
    assert out_of_view(dom(["test.kl"], 0), ("test.kl", "test.mi")) == ["test.mi"]
    assert out_of_view(dom(["test.kl"], 15), ("test.kl",)) == [
        "columns wider than the table (horizontal scroll bar)"
    ]
    # the name in a cell's text (a tooltip, the search box) is no rendered column
    assert out_of_view("test.kl" + dom([], 0), ("test.kl",)) == ["test.kl"]
