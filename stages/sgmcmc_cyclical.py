"""Stage ``sgmcmc_cyclical``: cyclical against constant steps on the 25-Gaussian target, per protocol.

    python stages/sgmcmc_cyclical.py [--params params.yaml] [--no-track]

The mode-coverage benchmark of cSG-MCMC (Zhang et al. 2020) on the asynchronous engine, settings
``sgmcmc.cyclical``. Outputs (dvc.yaml) ``reports/sgmcmc_cyclical/`` (mixture.png, table.md, the
samples), ``metrics/sgmcmc_cyclical.json`` and ``metrics/sgmcmc_cyclical_curves.csv``. The work:
``betamcmc.sgmcmc.coverage.run_cyclical``.
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
    from betamcmc.sgmcmc.coverage import run_cyclical

    stage = pipeline.stage_item("sgmcmc_cyclical")
    m = run_cyclical(params, stage, track=not args.no_track)
    print(
        f"{stage.name}: modes visited (of {m['settings']['modes']}) / TV, seed mean: "
        + ", ".join(
            f"{name} {a['modes_visited']:.1f}/{a['mode_tv']:.2f}" for name, a in m["arms"].items()
        )
    )


if __name__ == "__main__":
    run_stage(main, hard_exit=True)  # the engine: see betamcmc.core.runner._exit
