"""Benchmark: constant vs cyclical step sizes (cSG-MCMC) on the digits Bayesian MLP.

    .venv/bin/python bench/sgmcmc_cyclical_digits.py [--seeds 0 1 2 3 4] [--out bench/results/sgmcmc_cyclical_digits.json]

The ``sgmcmc`` stage's items ``single-1``, ``downpour-2`` and ``elastic-2``, each run by the
stage's own code (:func:`betamcmc.sgmcmc.experiment.run_item`, outputs in a temporary folder, no
MLflow) with the shipped ``params.yaml`` twice:

* ``constant``: as shipped (``sgmcmc.sampler.schedule: constant``);
* ``cyclical``: ``schedule: cyclical`` with the shipped ``cycles``, ``exploration`` and
  ``phase``, and ``alpha_0 = 2 x step_size``, so that the mean step over a cycle
  (``alpha_0 / 2``) equals the constant arm's step. These are fixed a priori, not tuned: the
  comparison makes no choice, so it reads the test split once per configuration.

Every arm has the same chain block (burn-in, thinning, samples). The cyclical arm ends on its
step budget (``EngineConfig.chain_budget``, the gradients a constant single chain takes) and keeps
only the due samples in sampling stages, so fewer; the constant arm ends on its sample count, as
the stage does, so its downpour and elastic items may take a few more gradients (recorded). Per arm and item: BMA accuracy, mean test log-likelihood and ECE as mean / sample std /
95 % CI over seeds (with the per-seed values), R-hat and bulk/tail ESS of the seeds' chains
pooled, samples kept, gradient evaluations and wall seconds; the load average before and after
and GEMM probes (machine facts as in ``sgmcmc_speedup.py``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from machine import facts, gemm_peak, loadavg

REPO = Path(__file__).resolve().parents[1]
ITEMS = [("single", 1), ("downpour", 2), ("elastic", 2)]
KEYS = ["accuracy", "log_likelihood", "ece", "wall_s", "grad_evals", "samples_kept"]
KEPT = [
    *[f"{k}{s}" for k in KEYS[:4] for s in ("", "_std", "_ci_low", "_ci_high")],
    "grad_evals",
    "rhat_max",
    "ess_bulk_min",
    "ess_tail_min",
    "converged",
    "chains",
    "draws_per_chain",
    "n_seeds",
]


def arm_params(shipped: dict[str, Any], arm: str, seeds: list[int]) -> dict[str, Any]:
    """The shipped params with the arm's sampler schedule and the given seeds."""
    raw = copy.deepcopy(shipped)
    section = raw["sgmcmc"]
    section["seeds"] = seeds
    if arm == "cyclical":
        sampler = section["sampler"]
        sampler["schedule"] = "cyclical"
        sampler["step_size"] = 2.0 * sampler["step_size"]  # mean step over a cycle = eta
    return raw


def run_arm(raw: dict[str, Any], protocol: str, workers: int) -> dict[str, Any]:
    """One item with the stage's own code in a temporary folder; the summary's kept keys."""
    from betamcmc.core import pipeline
    from betamcmc.params import validate_params
    from betamcmc.sgmcmc.experiment import run_item

    params = validate_params(raw)
    stage = pipeline.stage_item("sgmcmc", protocol=protocol, workers=workers)
    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="cyclical-digits-") as tmp:
        os.chdir(tmp)
        try:
            summary = run_item(params, stage, track=False)
        finally:
            os.chdir(here)
    assert summary is not None
    out = {k: summary.get(k) for k in KEPT}
    out["samples_kept"] = [s["samples"] for s in summary["per_seed"]]
    out["per_seed"] = {
        k: [s[k] for s in summary["per_seed"]] for k in ("accuracy", "log_likelihood", "ece")
    }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--out", default=str(REPO / "bench/results/sgmcmc_cyclical_digits.json"))
    args = ap.parse_args()
    os.chdir(REPO)  # dvc.yaml names the stage's outputs; run_item writes them under a tmp dir
    shipped = yaml.safe_load((REPO / "params.yaml").read_text())
    report: dict[str, Any] = {
        "machine": facts(),
        "load_at_start": loadavg(),
        "gemm_gflops_before": gemm_peak(threads=1),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "seeds": args.seeds,
        "sampler": shipped["sgmcmc"]["sampler"],
        "chain": {k: shipped["sgmcmc"][k] for k in ("burn_in", "thinning", "samples", "period")},
        "arms": {},
    }
    for arm in ("constant", "cyclical"):
        raw = arm_params(shipped, arm, args.seeds)
        for protocol, workers in ITEMS:
            name = f"{protocol}-{workers}"
            print(f"{arm} {name} seeds {args.seeds}", flush=True)
            report["arms"].setdefault(arm, {})[name] = run_arm(raw, protocol, workers)
    report["load_at_end"] = loadavg()
    report["gemm_gflops_after"] = gemm_peak(threads=1)
    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    for arm, items in report["arms"].items():
        for name, r in items.items():
            print(
                f"{arm:9s} {name:11s} acc {r['accuracy']:.4f} ll {r['log_likelihood']:.4f} "
                f"ece {r['ece']:.4f} rhat {r['rhat_max']} ess {r['ess_bulk_min']} "
                f"samples {r['samples_kept']} grads {r['grad_evals']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
