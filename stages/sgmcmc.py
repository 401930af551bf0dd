"""Stage ``sgmcmc@<protocol>-<W>``: asynchronous SG-MCMC with one protocol and W workers, one
run per seed of ``sgmcmc.seeds`` (an item of ``sgmcmc.items``).

    python stages/sgmcmc.py PROTOCOL WORKERS [--params params.yaml] [--no-track]

Spawns W worker processes locally; under ``torchrun`` (world size W + 1) the same command runs
one rank of a multi-machine run (see ``betamcmc/sgmcmc/engine/launch.py``): rank 0 is the master, opens
the MLflow run and writes every output. Outputs (dvc.yaml): ``models/sgmcmc/<protocol>-<W>/``,
its metrics file and the running-BMA plot files. The work: ``betamcmc.sgmcmc.experiment.run_item``.
"""

from __future__ import annotations

import argparse

from betamcmc.core import pipeline
from betamcmc.core.paramfile import WORKER_COUNTS, load_stage_params, require_item
from betamcmc.core.runner import resolve_device, run_stage
from betamcmc.sgmcmc.params import PROTOCOLS, SgmcmcParams


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("protocol")
    ap.add_argument("workers", type=int)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--no-track", action="store_true", help="skip MLflow (quick local runs)")
    args = ap.parse_args(argv)
    params = load_stage_params(args.params, sgmcmc=SgmcmcParams)
    require_item(args.params, "sgmcmc.protocols", args.protocol, PROTOCOLS)
    require_item(args.params, "sgmcmc.workers", args.workers, WORKER_COUNTS)
    require_item(
        args.params, "sgmcmc.items", f"{args.protocol}-{args.workers}", params.sgmcmc.items
    )
    # lazy: torch loads only after the params check (a bad value fails in a fraction of a second)
    from betamcmc.sgmcmc.experiment import run_item

    stage = pipeline.stage_item("sgmcmc", protocol=args.protocol, workers=args.workers)
    summary = run_item(params, stage, resolve_device(params.device), track=not args.no_track)
    if summary is not None:
        print(
            f"{stage.name}: accuracy {summary['accuracy']:.4f}, "
            f"log-lik {summary['log_likelihood']:.4f}, ECE {summary['ece']:.4f}, "
            f"{summary['wall_s']:.1f} s, {summary['bytes_total'] / 1e6:.1f} MB "
            f"(means of {summary['n_seeds']} seeds), R-hat {summary['rhat_max']}, "
            f"converged {summary['converged']}"
        )


if __name__ == "__main__":
    run_stage(main, hard_exit=True)  # the engine: see betamcmc.core.runner._exit
