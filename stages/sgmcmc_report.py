"""Stage ``sgmcmc_report``: figures, a table and paired comparisons across the sgmcmc items into ``reports/sgmcmc/``.

python stages/sgmcmc_report.py [--params params.yaml]

The work: ``betamcmc.sgmcmc.report.run_report`` (one MLflow run).
"""

from __future__ import annotations

import argparse

from betamcmc.core import pipeline
from betamcmc.core.paramfile import load_stage_params
from betamcmc.core.runner import run_stage
from betamcmc.sgmcmc.params import SgmcmcParams
from betamcmc.sgmcmc.report import run_report


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params = load_stage_params(args.params, sgmcmc=SgmcmcParams)

    stage = pipeline.stage_item("sgmcmc_report")
    run_report(params, stage)
    print((stage.out / "table.md").read_text())


if __name__ == "__main__":
    run_stage(main)
