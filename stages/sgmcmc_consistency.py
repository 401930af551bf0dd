"""Stage ``sgmcmc_consistency``: error of posterior mean / variance vs wall-clock, per protocol and tau.

    python stages/sgmcmc_consistency.py [--params params.yaml]

Bayesian logistic regression against a long full-batch MALA reference chain. Outputs
``reports/sgmcmc_consistency/`` (consistency.png, table.md, the samples) and
``metrics/sgmcmc_consistency.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from betamcmc.params import load_params
from betamcmc.runner import run_stage

KEYS = [
    "seed",
    "sgmcmc.sampler",
    "sgmcmc.prior_std",
    "sgmcmc.alpha",
    "sgmcmc.task",
    "sgmcmc.consistency",
]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--no-track", action="store_true")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    from betamcmc.sgmcmc.consistency import run_study

    out, metrics = Path("reports/sgmcmc_consistency"), Path("metrics/sgmcmc_consistency.json")
    if args.no_track:
        run_study(params, out, metrics)
    else:
        import mlflow

        from betamcmc import tracking

        with tracking.stage_run(params, stage="sgmcmc_consistency", keys=KEYS):
            summary = run_study(params, out, metrics)
            for name, r in summary["runs"].items():
                tracking.log_metrics(
                    {f"{name}.mean_error": r["mean_error"], f"{name}.var_error": r["var_error"]}
                )
            mlflow.log_artifact(str(out / "consistency.png"))
            mlflow.log_artifact(str(out / "table.md"))
    print((out / "table.md").read_text())


if __name__ == "__main__":
    run_stage(main)
