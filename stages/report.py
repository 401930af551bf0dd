"""DVC stage `report`: the area reports, and what the whole pipeline found, on one page.

Reads every area's metrics files and the area reports' curves first (a missing or bad one stops
it before its MLflow run opens and before anything is written). Then writes the RL, SG-MCMC and
fine-tuning reports (``reports/rl``, ``reports/sgmcmc``, ``reports/finetune``: tables, figures,
paired comparisons), then ``reports/index.md`` (headline per area, key figures, links to the area
reports, how to open the runs in MLflow), ``metrics/summary.json`` (the headline numbers: the
pipeline's only DVC metrics file) and the overlay plot data under ``metrics/plots/`` (paths:
dvc.yaml); one MLflow run. The work: ``betamcmc.results.run.run_report``.
"""

from __future__ import annotations

import argparse

from betamcmc.core import pipeline
from betamcmc.core.runner import run_stage
from betamcmc.params import load_params
from betamcmc.results.run import run_report


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params = load_params(args.params)

    stage = pipeline.stage_item("report")
    summary = run_report(params, stage)
    print(
        f"report: {stage.path('index.md')}, {len(summary)} headline numbers in "
        f"{stage.path('summary.json')}"
    )


if __name__ == "__main__":
    run_stage(main)
