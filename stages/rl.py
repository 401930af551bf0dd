"""Stage ``rl@<method>-<W>``: asynchronous actor-critic with SG-MCMC exploration.

    python stages/rl.py METHOD WORKERS [--params params.yaml] [--no-track]

METHOD is ``<update>-<protocol>`` (``sgd``/``sgdm``/``sgld``/``sghmc`` x ``downpour``/``elastic``).
For every seed in ``rl.seeds`` it spawns W worker processes (the SG-MCMC engine) that learn on
``rl.env``; see ``betamcmc/rl/experiment.py`` for the outputs dvc.yaml declares (``models/rl/<item>/``,
``metrics/rl/<item>.json``, ``metrics/rl/<item>_curve.csv``).
"""

from __future__ import annotations

import argparse

from betamcmc.core import pipeline
from betamcmc.core.paramfile import WORKER_COUNTS, load_stage_params, require_item
from betamcmc.core.runner import run_stage
from betamcmc.rl.params import METHODS, RlParams


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("method")
    ap.add_argument("workers", type=int)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--no-track", action="store_true", help="skip MLflow (quick local runs)")
    args = ap.parse_args(argv)
    params = load_stage_params(args.params, rl=RlParams)
    require_item(args.params, "rl.methods", args.method, METHODS)
    require_item(args.params, "rl.workers", args.workers, WORKER_COUNTS)
    # lazy: torch loads only after the params check (a bad value fails in a fraction of a second)
    from betamcmc.rl.envs import check_env
    from betamcmc.rl.experiment import run_item

    check_env(params.rl.env)  # before anything is written
    stage = pipeline.stage_item("rl", method=args.method, workers=args.workers)
    s = run_item(params, stage, track=not args.no_track)
    std = s["final_return_std"]
    print(
        f"{stage.name} on {s['env']}: final return {s['final_return_mean']:.1f}"
        + (f" +- {std:.1f}" if std is not None else "")
        + f" over {s['seeds']} seeds, {s['solved_runs']} reached {s['reward_threshold']}, "
        f"{s['env_steps_mean']:.0f} env steps in {s['wall_s_mean']:.1f} s"
    )


if __name__ == "__main__":
    run_stage(main, hard_exit=True)  # the engine: see betamcmc.core.runner._exit
