"""The ``report`` stage's work: the one page of results, the headline numbers, the overlays."""

from __future__ import annotations

from typing import TYPE_CHECKING

from betamcmc import tracking
from betamcmc.core.io import write_json, write_text
from betamcmc.core.pipeline import StageItem
from betamcmc.core.stopping import signals_deferred
from betamcmc.results.collect import collect, items
from betamcmc.results.overlays import overlay_tables
from betamcmc.results.page import render
from betamcmc.results.summary import headline

if TYPE_CHECKING:
    from betamcmc.params import Params


def run_report(params: Params, stage: StageItem) -> dict[str, float]:
    """Read every area's metrics, write ``reports/index.md``, ``metrics/summary.json`` and the
    overlay plot files (paths: dvc.yaml), log the headline numbers to one MLflow run."""
    results = collect(params)  # every input read (and checked) before anything is written
    overlays = overlay_tables(items(params))
    summary = headline(results)
    page_path = stage.path("index.md")
    reports = page_path.parent
    figures = {str(p.relative_to(reports)) for p in reports.glob("*/*.png")}
    page = render(params, results, figures)
    with tracking.stage_run(params, stage):
        with signals_deferred():  # the page, its numbers and the plot data appear together
            for name, text in overlays.items():
                write_text(stage.path(name), text)
            write_text(page_path, page)
            write_json(stage.path("summary.json"), summary)
        tracking.log_metrics(summary)
        tracking.log_artifact(page_path)
        tracking.log_artifact(stage.path("summary.json"))
    return summary
