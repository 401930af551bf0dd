"""DVC stage ``sgmcmc_vae_head@<schedule>``: a Bayesian classifier head on a pretrained VAE's codes.

    python stages/sgmcmc_vae_head.py SCHEDULE [--params params.yaml]

Reads ``models/pretrain/<schedule>/`` and ``data/prepared/``; samples a softmax-regression (or MLP)
head over the frozen posterior means with the SG-MCMC engine and compares its Bayesian model
average with the MAP point estimate of the same head (accuracy, test log-likelihood, ECE); see
``betamcmc/finetune/vae_head.py`` (settings ``finetune.vae_head``, engine settings ``sgmcmc``). Writes ``models/sgmcmc_vae_head/<schedule>/`` (samples) and
``metrics/sgmcmc_vae_head/<schedule>.json``; one MLflow run tagged with the schedule. Inputs are
checked before anything is written (bad input: one line, exit 2).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

# Set before torch loads OpenMP: spinning threads on a shared, busy machine slow training down.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from betamcmc import tracking  # noqa: E402
from betamcmc.params import load_params  # noqa: E402
from betamcmc.runner import resolve_device, run_stage, seed_everything  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("schedule", help="a key of pretrain.schedules")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--models", default="models/pretrain")
    ap.add_argument("--out-models", default="models/sgmcmc_vae_head")
    ap.add_argument("--out", default="metrics/sgmcmc_vae_head")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    params.pretrain.require_schedule(args.schedule, args.params)

    import torch  # torch loads only after the params check

    from betamcmc.data.prepared import load_prepared
    from betamcmc.finetune.vae_head import (
        STAGE_KEYS,
        check_label,
        encode_codes,
        flat_metrics,
        run_head,
    )
    from betamcmc.sgmcmc.sampling import is_worker_rank
    from betamcmc.vae.model import load_vae

    corpus = load_prepared(args.prepared)
    head = params.finetune.vae_head
    check_label(corpus, head.label, args.prepared)
    vae = load_vae(Path(args.models) / args.schedule)
    torch.set_num_threads(params.sgmcmc.threads)
    seed_everything(params.seed)
    data = encode_codes(vae, corpus, head)

    device = resolve_device(params.device)
    if is_worker_rank():  # a torchrun worker: it only computes gradients
        run_head(params, data, args.schedule, Path(args.out_models), Path(args.out), device)
        return
    with tracking.stage_run(
        params,
        stage="sgmcmc_vae_head",
        item=args.schedule,
        keys=STAGE_KEYS,
        tags={"schedule": args.schedule},
    ):
        s = run_head(params, data, args.schedule, Path(args.out_models), Path(args.out), device)
        tracking.log_metrics(flat_metrics(s))
        import mlflow  # already loaded by tracking

        mlflow.log_artifact(str(Path(args.out) / f"{args.schedule}.json"))
    b, m = s["sgmcmc"], s["point_estimate"]
    print(
        f"sgmcmc_vae_head@{args.schedule} ({s['label']}, {s['head']}, {s['protocol']}-w{s['workers']}): "
        f"SG-MCMC BMA acc {b['accuracy']:.4f} / log-lik {b['log_likelihood']:.4f} / ECE {b['ece']:.4f}; "
        f"MAP acc {m['accuracy']:.4f} / log-lik {m['log_likelihood']:.4f} / ECE {m['ece']:.4f}"
    )


if __name__ == "__main__":
    run_stage(main)
