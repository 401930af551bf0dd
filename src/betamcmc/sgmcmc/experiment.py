"""One item of the ``sgmcmc`` stage: sample with a protocol and W workers, evaluate, write outputs.

Outputs of item ``<protocol>-<W>`` (paths: dvc.yaml, :func:`betamcmc.core.pipeline.stage_item`):

* ``models/sgmcmc/<item>/``: per seed of ``sgmcmc.seeds`` a folder ``seed-<s>/`` with
  ``header.json`` + ``samples.bin`` (the samples file, see ``samples.py``); ``run.json`` (per
  seed: communication, staleness, per-worker counters, lost workers, evaluation; the pooled
  diagnostics) and ``running_bma.png`` (the seed-mean running BMA). While sampling they live in ``<item>.partial/`` (streamed);
  that directory is renamed to ``<item>/`` once the run is complete, so DVC never sees a
  half-made output, and a crashed or stopped run leaves its samples readable in ``.partial/``.
* ``metrics/sgmcmc/<item>.json`` (DVC metrics) and ``metrics/sgmcmc/<item>_bma_accuracy.csv``,
  ``..._bma_log_likelihood.csv`` (DVC plots: running BMA against wall-clock seconds, the mean
  over seeds at each collected sample). The metrics file is written last. It keeps every key of a
  single run as the mean over seeds with ``_std``, ``_ci_low``, ``_ci_high``, ``n_seeds`` and
  ``per_seed`` (``seeds.py``); ``rhat_max``, ``ess_bulk_min``, ``ess_tail_min`` and ``converged``
  are of every seed's chains pooled (one chain per seed and sampler chain).

Seeds run one after another in the stage's process (the imports are most of an item's time).

Under ``torchrun`` every rank runs this with one seed, ``seed``; rank 0 (the master) opens the
MLflow run and writes every output, the other ranks only compute.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from betamcmc import tracking
from betamcmc.core.io import write_json, write_text
from betamcmc.core.pipeline import StageItem
from betamcmc.core.stopping import signals_deferred
from betamcmc.sgmcmc.engine.config import EngineConfig, RunSpec, SamplerConfig
from betamcmc.sgmcmc.engine.launch import start_forkserver, torchrun_rank
from betamcmc.sgmcmc.engine.result import RunResult
from betamcmc.sgmcmc.engine.samples import read_samples
from betamcmc.sgmcmc.evaluate import (
    ESS_MIN,
    RHAT_MAX,
    chain_functionals,
    diagnose,
    evaluate_log_probs,
    first_time_at,
    sample_log_probs,
)
from betamcmc.sgmcmc.sampling import finalize_dir, fresh_partial, is_worker_rank, sample
from betamcmc.sgmcmc.seeds import aggregate, mean_series
from betamcmc.sgmcmc.tasks import build_task
from betamcmc.tracking.progress import Progress

if TYPE_CHECKING:
    from betamcmc.params import Params

TARGETS = (0.95, 0.97)
# the per-seed numbers every item's metrics file reports as mean / std / CI over seeds
AGGREGATED = (
    "accuracy",
    "log_likelihood",
    "log_likelihood_median",
    "log_likelihood_worst",
    "ece",
    "wall_s",
    "setup_s",
    "grad_evals",
    "grad_evals_per_s",
    "bytes_total",
    "bytes_per_sample",
    "messages",
    "staleness_mean",
    "staleness_max",
    "dead_workers",
    "time_to_acc95_s",
    "grads_to_acc95",
    "time_to_acc97_s",
    "grads_to_acc97",
)


def engine_config(params: Params) -> EngineConfig:
    """The ``sgmcmc`` section's engine settings (sampler, prior, exchange, chain)."""
    section = params.sgmcmc
    return EngineConfig.build(
        sampler=SamplerConfig.of(section.sampler),
        prior=section,
        exchange=section,
        chain=section,
        runtime=params.runtime,
        staleness=section.staleness,
        straggler_delay=section.straggler_delay,
        step_size_key="sgmcmc.sampler.step_size",
    )


def make_spec(
    params: Params,
    protocol: str,
    workers: int,
    device: str = "cpu",
    seed: int | None = None,
    config: EngineConfig | None = None,
) -> RunSpec:
    """The engine run of an item: ``config`` (None: :func:`engine_config`) on ``sgmcmc``'s
    task; ``seed`` None: ``params.seed``."""
    section = params.sgmcmc
    return RunSpec(
        config=engine_config(params) if config is None else config,
        protocol=protocol,
        workers=workers,
        seed=params.seed if seed is None else seed,
        task_factory=functools.partial(build_task, section.task, section.batch_size),
        device=device,
    )


def summarize(
    result: RunResult, metrics: dict[str, Any], series: dict[str, np.ndarray]
) -> dict[str, Any]:
    """The DVC metrics of an item (scalars only; the details go to run.json)."""
    out: dict[str, Any] = {
        "protocol": result.protocol,
        "workers": result.workers,
        "samples": result.samples,
        "accuracy": metrics["accuracy"],
        "log_likelihood": metrics["log_likelihood"],
        "log_likelihood_median": metrics["log_likelihood_median"],
        "log_likelihood_worst": metrics["log_likelihood_worst"],
        "ece": metrics["ece"],
        "wall_s": result.wall_s,
        "setup_s": result.setup_s,
        "grad_evals": result.grad_evals,
        "grad_evals_per_s": round(result.grad_evals / result.wall_s, 2)
        if result.wall_s > 0
        else None,
        "bytes_total": result.bytes_total,
        "bytes_per_sample": result.bytes_total / max(1, result.samples),
        "messages": result.messages,
        "staleness_mean": result.staleness_mean,
        "staleness_max": result.staleness_max,
        "dead_workers": len(result.dead),
        "ess_bulk_min": metrics["diagnostics"].get("ess_bulk_min"),
        "ess_tail_min": metrics["diagnostics"].get("ess_tail_min"),
        "rhat_max": metrics["diagnostics"].get("rhat_max"),
        "converged": metrics["diagnostics"].get("converged"),
    }
    for target in TARGETS:
        key = f"{target:.2f}".replace("0.", "")
        out[f"time_to_acc{key}_s"] = first_time_at(series["bma_accuracy"], series["wall_s"], target)
        out[f"grads_to_acc{key}"] = first_time_at(
            series["bma_accuracy"], series["grad_evals"], target
        )
    return out


def write_series(stage: StageItem, series: dict[str, np.ndarray]) -> list[Path]:
    """The running-BMA plot files dvc.yaml declares (``..._bma_accuracy.csv``, ...)."""
    paths = []
    for column in ("bma_accuracy", "bma_log_likelihood"):
        rows = ["sample,wall_s,grad_evals," + column]
        for i, (t, g, v) in enumerate(
            zip(series["wall_s"], series["grad_evals"], series[column], strict=True)
        ):
            rows.append(f"{i + 1},{t:.4f},{int(g)},{v:.6f}")
        path = stage.path(f"_{column}.csv")
        write_text(path, "\n".join(rows) + "\n")
        paths.append(path)
    return paths


def running_figure(path: Path, item: str, series: dict[str, np.ndarray]) -> None:
    import matplotlib  # lazy: a plotting import costs a second: only where a figure is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    axes[0].plot(series["wall_s"], series["bma_accuracy"])
    axes[0].set(xlabel="wall-clock s", ylabel="BMA test accuracy", title=item)
    axes[1].plot(series["wall_s"], series["bma_log_likelihood"])
    axes[1].set(xlabel="wall-clock s", ylabel="BMA test log-likelihood")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def item_seeds(params: Params) -> list[int]:
    """The seeds an item runs: ``sgmcmc.seeds``; a ``torchrun`` launch runs one, ``seed``."""
    return [params.seed] if torchrun_rank() is not None else list(params.sgmcmc.seeds)


def summarize_seeds(per_seed: list[dict[str, Any]], diagnostics: dict[str, Any]) -> dict[str, Any]:
    """The item's metrics: every per-seed number as mean / std / CI over seeds
    (:func:`betamcmc.sgmcmc.seeds.aggregate`), and the diagnostics of every seed's chains pooled
    (one chain per seed's sampler chain: R-hat across seeds is what R-hat is for)."""
    first = per_seed[0]
    out: dict[str, Any] = {k: first[k] for k in ("protocol", "workers", "samples")}
    out["seeds"] = [s["seed"] for s in per_seed]
    out.update(aggregate(per_seed, AGGREGATED))
    out.update(
        chains=diagnostics["chains"],
        draws_per_chain=diagnostics["draws_per_chain"],
        chains_left_out=diagnostics.get("chains_left_out", 0),
        ess_bulk_min=diagnostics.get("ess_bulk_min"),
        ess_tail_min=diagnostics.get("ess_tail_min"),
        rhat_max=diagnostics.get("rhat_max"),
        converged=diagnostics["converged"],
        rhat_threshold=RHAT_MAX,
        ess_threshold=ESS_MIN,
    )
    return out


def run_item(
    params: Params, stage: StageItem, device: str = "cpu", track: bool = True
) -> dict[str, Any] | None:
    """Sample every seed, evaluate and write every output of one item (paths: dvc.yaml); its
    metrics (None on a torchrun worker rank, which writes nothing and opens no MLflow run)."""
    start_forkserver()  # its imports overlap this process's MLflow set-up
    if not track or is_worker_rank():
        out = _run_and_write(params, stage, device)
        return out[0] if out is not None else None
    with tracking.stage_run(params, stage):
        out = _run_and_write(params, stage, device)
        assert out is not None
        summary, series = out
        tracking.log_result(summary, as_params=["workers", "samples", "n_seeds"])
        steps = list(range(1, len(series["wall_s"]) + 1))
        tracking.log_series(
            {f"running.{k}": series[k] for k in ("bma_accuracy", "bma_log_likelihood", "wall_s")},
            steps,
        )
        tracking.log_artifact(stage.out / "running_bma.png")
        tracking.log_artifact(stage.out / "run.json")
        return summary


def _run_and_write(
    params: Params, stage: StageItem, device: str
) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """Each seed samples into ``<item>.partial/seed-<s>/`` and is evaluated; then the item's
    ``run.json``, figure (seed-mean running BMA) and metrics go out together."""
    protocol, workers = stage.identity["protocol"], stage.identity["workers"]
    section = params.sgmcmc
    partial = fresh_partial(stage.out)
    task, per_seed, runs, curves, chains = None, [], [], [], []
    for seed in item_seeds(params):
        spec = make_spec(params, protocol, workers, device, seed=seed)
        seed_dir = partial / f"seed-{seed}"
        info = {"item": stage.key, "task": section.task.kind, "seed": seed}
        with Progress(f"{stage.name} seed {seed}", mlflow=True, prefix="sampling.") as progress:
            result = sample(spec, seed_dir, info, section.allow_partial, report=progress)
        if result is None:  # a torchrun worker rank
            return None
        task = task or spec.make_task()
        samples = read_samples(seed_dir)
        log_probs, targets = sample_log_probs(task, samples), task.test_targets.numpy()
        metrics, series = evaluate_log_probs(log_probs, targets, samples, section.eval_points)
        per_seed.append({"seed": seed, **summarize(result, metrics, series)})
        runs.append({"seed": seed, **result.as_dict(), "evaluation": metrics})
        curves.append(series)
        chains += chain_functionals(log_probs, targets, samples.chain, section.eval_points)
    diagnostics = diagnose(chains)
    summary = summarize_seeds(per_seed, diagnostics)
    series = mean_series(curves)
    write_json(partial / "run.json", {"runs": runs, "diagnostics": diagnostics, "summary": summary})
    running_figure(partial / "running_bma.png", f"{stage.name} (mean of {len(runs)} seeds)", series)
    with signals_deferred():  # the three outputs appear together; the metrics file last
        finalize_dir(partial, stage.out)
        write_series(stage, series)
        write_json(stage.path(".json"), summary)
    return summary, series
