"""The ``sgmcmc_sgd`` stage's work: the SGD point-estimate baseline of the SG-MCMC comparison.

The configured sampler at temperature 0 (SGLD -> SGD, SGHMC -> SGD with momentum, exactly) on the
MAP loss for ``sgmcmc.sgd.steps`` steps with one worker, on the engine like every item, once per
seed of ``sgmcmc.seeds``; each last iterate is evaluated like a BMA of one sample. Outputs
``models/sgmcmc_sgd/`` (``seed-<s>/``: the sample; ``run.json``) and ``metrics/sgmcmc_sgd.json``
(written last: the metrics-file convention over seeds, ``seeds.py``). With ``device: auto`` and CUDA
present the worker computes on the GPU.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from betamcmc import tracking
from betamcmc.core.io import write_json
from betamcmc.core.pipeline import StageItem
from betamcmc.core.stopping import signals_deferred
from betamcmc.sgmcmc.engine.config import ChainSteps, EngineConfig, RunSpec, SamplerConfig
from betamcmc.sgmcmc.engine.launch import start_forkserver
from betamcmc.sgmcmc.engine.samples import read_samples
from betamcmc.sgmcmc.evaluate import evaluate_samples
from betamcmc.sgmcmc.experiment import make_spec
from betamcmc.sgmcmc.sampling import finalize_dir, fresh_partial, sample
from betamcmc.sgmcmc.seeds import aggregate

if TYPE_CHECKING:
    from betamcmc.params import Params

PREDICTIVE = ("accuracy", "log_likelihood", "log_likelihood_median", "log_likelihood_worst", "ece")


def sgd_spec(params: Params, device: str, seed: int) -> RunSpec:
    """The configured sampler at temperature 0 and ``sgd.step_size`` for ``sgd.steps`` steps."""
    section = params.sgmcmc
    config = EngineConfig.build(
        sampler=SamplerConfig.of(section.sampler, step_size=section.sgd.step_size, temperature=0.0),
        prior=section,
        exchange=section,
        chain=ChainSteps(burn_in=section.sgd.steps, thinning=1, samples=1),
        runtime=params.runtime,
        staleness=section.staleness,
        straggler_delay=0.0,
        step_size_key="sgmcmc.sgd.step_size",
    )
    return make_spec(params, "single", 1, device, seed=seed, config=config)


def run_sgd(
    params: Params, stage: StageItem, device: str = "cpu", track: bool = True
) -> dict[str, Any]:
    """Run the baseline once per seed of ``sgmcmc.seeds`` (the items' seeds, so a protocol can be
    compared with it seed by seed) and write its outputs (paths: dvc.yaml); returns its metrics:
    each of :data:`PREDICTIVE` and ``wall_s`` as mean / std / CI over seeds, ``per_seed``."""
    models_dir, metrics_path = stage.out, stage.path(".json")
    section = params.sgmcmc
    start_forkserver()  # its imports overlap this process's MLflow set-up

    def body() -> dict[str, Any]:
        partial = fresh_partial(models_dir)
        per_seed, runs, task = [], [], None
        for seed in section.seeds:
            spec = sgd_spec(params, device, seed)
            seed_dir = partial / f"seed-{seed}"
            info = {"item": "sgd", "task": section.task.kind, "seed": seed}
            result = sample(spec, seed_dir, info)
            assert result is not None
            task = task or spec.make_task()
            metrics, _ = evaluate_samples(task, read_samples(seed_dir), section.eval_points)
            per_seed.append({"seed": seed, **{k: metrics[k] for k in PREDICTIVE}})
            per_seed[-1]["wall_s"] = result.wall_s
            runs.append({"seed": seed, **result.as_dict(), "evaluation": metrics})
        kind = section.sampler.kind
        summary = {
            "method": f"{kind} at temperature 0 "
            f"({'SGD' if kind == 'sgld' else 'SGD with momentum'})",
            "steps": section.sgd.steps,
            "seeds": list(section.seeds),
            **aggregate(per_seed, (*PREDICTIVE, "wall_s")),
        }
        write_json(partial / "run.json", {"runs": runs})
        with signals_deferred():
            finalize_dir(partial, models_dir)
            write_json(metrics_path, summary)
        return summary

    if not track:
        return body()
    with tracking.stage_run(params, stage):
        summary = body()
        tracking.log_result(summary, as_params=["steps", "n_seeds"])
        return summary
