"""Stage ``sgmcmc_sgd``: the SGD point-estimate baseline for the sgmcmc comparison.

    python stages/sgmcmc_sgd.py [--params params.yaml] [--no-track]

The configured sampler at temperature 0 (SGLD -> SGD, SGHMC -> SGD with momentum) on the MAP
loss, ``sgmcmc.sgd.steps`` steps, on the GPU when ``device`` resolves to CUDA. Outputs
(dvc.yaml) ``models/sgmcmc_sgd/`` and ``metrics/sgmcmc_sgd.json``.
"""

from __future__ import annotations

import argparse

from betamcmc.core import pipeline
from betamcmc.core.paramfile import load_stage_params
from betamcmc.core.runner import resolve_device, run_stage
from betamcmc.sgmcmc.params import SgmcmcParams


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--no-track", action="store_true")
    args = ap.parse_args(argv)
    params = load_stage_params(args.params, sgmcmc=SgmcmcParams)
    # lazy: torch loads only after the params check (a bad value fails in a fraction of a second)
    from betamcmc.sgmcmc.baseline import run_sgd

    stage = pipeline.stage_item("sgmcmc_sgd")
    s = run_sgd(params, stage, resolve_device(params.device), track=not args.no_track)
    print(
        f"sgmcmc_sgd: accuracy {s['accuracy']:.4f}, log-lik {s['log_likelihood']:.4f}, ECE {s['ece']:.4f}"
    )


if __name__ == "__main__":
    run_stage(main, hard_exit=True)  # the engine: see betamcmc.core.runner._exit
