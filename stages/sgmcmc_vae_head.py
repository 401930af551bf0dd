"""DVC stage ``sgmcmc_vae_head@<schedule>``: a Bayesian classifier head on a pretrained VAE's codes.

    python stages/sgmcmc_vae_head.py SCHEDULE [--params params.yaml]

Reads ``models/pretrain/<schedule>/`` and ``data/prepared/``; samples a softmax-regression (or MLP)
head over the frozen codes with the SG-MCMC engine, one chain per ``finetune.vae_head.seeds`` seed, and compares its Bayesian model
average with the MAP point estimate of the same head (accuracy, test log-likelihood, ECE); see
``betamcmc/finetune/vae_head.py`` (settings ``finetune.vae_head``, engine settings ``sgmcmc``).
Writes the model directory (samples) and metrics file dvc.yaml declares; one MLflow run. Inputs
are checked before anything is written (bad input: one line, exit 2). The work:
``betamcmc.finetune.vae_head.run_vae_head``.
"""

from __future__ import annotations

import argparse

from betamcmc.core import pipeline
from betamcmc.core.paramfile import load_stage_params, require_item
from betamcmc.core.runner import run_stage
from betamcmc.finetune.params import FinetuneParams
from betamcmc.sgmcmc.params import SgmcmcParams


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("schedule", help="an entry of finetune.schedules")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params = load_stage_params(args.params, finetune=FinetuneParams, sgmcmc=SgmcmcParams)
    require_item(args.params, "finetune.schedules", args.schedule, params.finetune.schedules)

    # lazy: torch loads only after the params check (a bad value fails in a fraction of a second)
    from betamcmc.finetune.vae_head import run_vae_head

    s = run_vae_head(params, pipeline.stage_item("sgmcmc_vae_head", schedule=args.schedule))
    if not s:  # a torchrun worker rank: it only computed gradients
        return
    b, m = s["sgmcmc"], s["point_estimate"]
    print(
        f"sgmcmc_vae_head@{args.schedule} ({s['label']}, {s['head']}, "
        f"{s['protocol']}-{s['workers']}): SG-MCMC BMA acc {b['accuracy']:.4f} / log-lik "
        f"{b['log_likelihood']:.4f} / ECE {b['ece']:.4f}; MAP acc {m['accuracy']:.4f} / log-lik "
        f"{m['log_likelihood']:.4f} / ECE {m['ece']:.4f} (means over seeds {s['seeds']}); "
        f"R-hat {s['rhat_max']}, ESS bulk/tail {s['ess_bulk_min']}/{s['ess_tail_min']}: "
        + ("converged" if s["converged"] else "NOT converged")
    )


if __name__ == "__main__":
    run_stage(main, hard_exit=True)  # the engine: see betamcmc.core.runner._exit
