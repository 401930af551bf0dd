"""The ``report`` stage's work: every input read first, then the area reports (RL, SG-MCMC,
fine-tuning), the one page of results, the headline numbers and the overlays."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


AREAS = ("rl", "sgmcmc", "finetune")  # the areas whose report folder this stage writes


def _area_modules() -> dict[str, Any]:
    # lazy: matplotlib (~0.4 s) loads with the areas' figures
    return {area: importlib.import_module(f"betamcmc.results.{area}") for area in AREAS}


def read_areas(params: Params) -> dict[str, Any]:
    """Every input of the area reports (each area module's ``read_area``), read and checked (a
    missing or bad file: an input error), so that no MLflow run opens and nothing is written
    when one is wrong."""
    return {area: module.read_area(params) for area, module in _area_modules().items()}


def write_areas(areas: dict[str, Any], stage: StageItem) -> dict[str, Any]:
    """``reports/rl``, ``reports/sgmcmc`` and ``reports/finetune`` (each area module's
    ``write_area``, atomically) from :func:`read_areas`: the tables and figures that the page
    links to; returns the SG-MCMC items' summary."""
    written = {
        area: module.write_area(areas[area], stage.path(f"reports/{area}"))
        for area, module in _area_modules().items()
    }
    return written["sgmcmc"]


def run_report(params: Params, stage: StageItem) -> dict[str, float]:
    """Read every area's metrics and the area reports' inputs, then write the area reports,
    ``reports/index.md``, ``metrics/summary.json`` and the overlay plot files (paths: dvc.yaml);
    one MLflow run with the headline numbers and every file written."""
    results = collect(params)  # every input read (and checked) before any write or run
    areas = read_areas(params)
    overlays = overlay_tables(items(params))
    summary = headline(results)
    page_path = stage.path("index.md")
    with tracking.stage_run(params, stage):
        sgmcmc_items = write_areas(areas, stage)
        figures = {str(p.relative_to(page_path.parent)) for p in page_path.parent.glob("*/*.png")}
        page = render(params, results, figures)
        with signals_deferred():  # the page, its numbers and the plot data appear together
            for name, text in overlays.items():
                write_text(stage.path(name), text)
            write_text(page_path, page)
            write_json(stage.path("summary.json"), summary)
        tracking.log_metrics(summary)
        tracking.log_result({"sgmcmc": sgmcmc_items})
        for area in AREAS:
            tracking.log_artifacts(stage.path(f"reports/{area}"), f"reports/{area}")
        tracking.log_artifact(page_path)
        tracking.log_artifact(stage.path("summary.json"))
    return summary
