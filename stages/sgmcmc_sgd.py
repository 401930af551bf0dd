"""Stage ``sgmcmc_sgd``: the SGD point-estimate baseline for the sgmcmc comparison.

    python stages/sgmcmc_sgd.py [--params params.yaml] [--no-track]

The configured sampler at temperature 0 (SGLD -> SGD, SGHMC -> SGD with momentum) on the MAP
loss, ``sgmcmc.sgd.steps`` steps, on the GPU when ``device`` resolves to CUDA. Outputs
``models/sgmcmc_sgd/`` and ``metrics/sgmcmc_sgd.json``.
"""

from __future__ import annotations

import argparse
import os

# Before torch loads OpenMP: spinning OpenMP threads steal cores from the run's other processes.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from betamcmc.params import load_params  # noqa: E402
from betamcmc.runner import resolve_device, run_stage  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--no-track", action="store_true")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    # torch loads only after the params check (a bad value fails in a fraction of a second)
    from betamcmc.sgmcmc.baseline import run_sgd

    s = run_sgd(params, device=resolve_device(params.device), track=not args.no_track)
    print(
        f"sgmcmc_sgd: accuracy {s['accuracy']:.4f}, log-lik {s['log_likelihood']:.4f}, ECE {s['ece']:.4f}"
    )


if __name__ == "__main__":
    run_stage(main)
