"""Stage ``rl_report``: the rl items' table and learning-curve figure in ``reports/rl/``.

python stages/rl_report.py [--params params.yaml]

The work: ``betamcmc.rl.report.run_report`` (one MLflow run).
"""

from __future__ import annotations

import argparse

from betamcmc.core import pipeline
from betamcmc.core.paramfile import load_stage_params
from betamcmc.core.runner import run_stage
from betamcmc.rl.params import RlParams


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params = load_stage_params(args.params, rl=RlParams)
    # lazy: numpy (~0.15 s) loads only after the params check
    from betamcmc.rl.report import run_report

    out = run_report(params, pipeline.stage_item("rl_report"))
    print(f"rl_report: {out}/table.md, {out}/curves.png")


if __name__ == "__main__":
    run_stage(main)
