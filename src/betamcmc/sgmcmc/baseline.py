"""The ``sgmcmc_sgd`` stage's work: the SGD point-estimate baseline of the SG-MCMC comparison.

The configured sampler at temperature 0 (SGLD -> SGD, SGHMC -> SGD with momentum, exactly) on the
MAP loss for ``sgmcmc.sgd.steps`` steps with one worker, on the engine like every item; its last
iterate is evaluated like a BMA of one sample. Outputs ``models/sgmcmc_sgd/`` (the sample and
``run.json``) and ``metrics/sgmcmc_sgd.json`` (written last). With ``device: auto`` and CUDA
present the worker computes on the GPU.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from betamcmc import tracking
from betamcmc.io import write_json
from betamcmc.params import Params
from betamcmc.pipeline import StageItem
from betamcmc.sgmcmc.evaluate import evaluate_samples
from betamcmc.sgmcmc.experiment import make_spec
from betamcmc.sgmcmc.samples import read_samples
from betamcmc.sgmcmc.sampling import finalize_dir, fresh_partial, sample
from betamcmc.stopping import signals_deferred

PREDICTIVE = ("accuracy", "log_likelihood", "log_likelihood_median", "log_likelihood_worst", "ece")


def run_sgd(
    params: Params, stage: StageItem, device: str = "cpu", track: bool = True
) -> dict[str, Any]:
    """Run the baseline and write its outputs (paths: dvc.yaml); returns its metrics."""
    models_dir, metrics_path = stage.out, stage.path(".json")
    sg = params.sgmcmc
    spec = make_spec(
        params,
        "single",
        1,
        device,
        burn_in=sg.sgd.steps,
        samples=1,
        thinning=1,
        straggler_delay=0.0,
    )
    config = spec.config.with_sampler(temperature=0.0, step_size=sg.sgd.step_size).replace(
        step_size_key="sgmcmc.sgd.step_size"
    )
    spec = dataclasses.replace(spec, config=config)

    def body() -> dict[str, Any]:
        partial = fresh_partial(models_dir)
        result = sample(spec, partial, {"item": "sgd", "task": sg.task.kind, "seed": params.seed})
        assert result is not None
        metrics, _ = evaluate_samples(spec.make_task(), read_samples(partial), sg.eval_points)
        kind = spec.config.sampler.kind
        summary = {
            "method": f"{kind} at temperature 0 "
            f"({'SGD' if kind == 'sgld' else 'SGD with momentum'})",
            "steps": sg.sgd.steps,
            **{k: metrics[k] for k in PREDICTIVE},
            "wall_s": result.wall_s,
        }
        write_json(partial / "run.json", {**result.as_dict(), "evaluation": metrics})
        with signals_deferred():
            finalize_dir(partial, models_dir)
            write_json(metrics_path, summary)
        return summary

    if not track:
        return body()
    with tracking.stage_run(params, stage):
        summary = body()
        tracking.log_result(summary, as_params=["steps"])
        return summary
