"""Stage ``sgmcmc_consistency``: error of posterior mean / variance vs wall-clock, per protocol and tau.

    python stages/sgmcmc_consistency.py [--params params.yaml] [--no-track]

Bayesian logistic regression against a long full-batch MALA reference chain. Outputs (dvc.yaml)
``reports/sgmcmc_consistency/`` (consistency.png, table.md, the samples) and
``metrics/sgmcmc_consistency.json``. The work: ``betamcmc.sgmcmc.consistency.run_consistency``.
"""

from __future__ import annotations

import argparse

from betamcmc.core import pipeline
from betamcmc.core.paramfile import load_stage_params
from betamcmc.core.runner import run_stage
from betamcmc.sgmcmc.params import SgmcmcParams


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--no-track", action="store_true")
    args = ap.parse_args(argv)
    params = load_stage_params(args.params, sgmcmc=SgmcmcParams)
    # lazy: torch loads only after the params check (a bad value fails in a fraction of a second)
    from betamcmc.sgmcmc.consistency import run_consistency

    stage = pipeline.stage_item("sgmcmc_consistency")
    s = run_consistency(params, stage, track=not args.no_track)
    print(
        f"{stage.name}: relative error of the posterior mean / variance vs "
        f"{s['reference']['draws']} MALA draws: "
        + ", ".join(f"{k} {r['mean_error']:.3f}/{r['var_error']:.3f}" for k, r in s["runs"].items())
    )


if __name__ == "__main__":
    run_stage(main, hard_exit=True)  # the engine: see betamcmc.core.runner._exit
