"""One item of the ``sgmcmc`` stage: sample with a protocol and W workers, evaluate, write outputs.

Outputs of item ``<protocol>-<W>`` (paths: dvc.yaml, :func:`betamcmc.pipeline.stage_item`):

* ``models/sgmcmc/<item>/``: ``header.json`` + ``samples.bin`` (the samples file, see
  ``samples.py``), ``run.json`` (communication, staleness, per-worker counters, lost workers,
  diagnostics) and ``running_bma.png``. While sampling they live in ``<item>.partial/`` (streamed);
  that directory is renamed to ``<item>/`` once the run is complete, so DVC never sees a
  half-made output, and a crashed or stopped run leaves its samples readable in ``.partial/``.
* ``metrics/sgmcmc/<item>.json`` (DVC metrics) and ``metrics/sgmcmc/<item>_bma_accuracy.csv``,
  ``..._bma_log_likelihood.csv`` (DVC plots: running BMA against wall-clock seconds). The metrics
  file is written last: it is there only when everything else is.

Under ``torchrun`` every rank runs this; rank 0 (the master) opens the MLflow run and writes every
output, the other ranks only compute.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from betamcmc import tracking
from betamcmc.io import write_json, write_text
from betamcmc.params import Params
from betamcmc.pipeline import StageItem
from betamcmc.progress import Progress
from betamcmc.sgmcmc.config import EngineConfig, RunSpec
from betamcmc.sgmcmc.evaluate import evaluate_samples, first_time_at
from betamcmc.sgmcmc.result import RunResult
from betamcmc.sgmcmc.samples import read_samples
from betamcmc.sgmcmc.sampling import finalize_dir, fresh_partial, is_worker_rank, sample
from betamcmc.sgmcmc.tasks import build_task
from betamcmc.stopping import signals_deferred

TARGETS = (0.95, 0.97)


def make_spec(
    params: Params, protocol: str, workers: int, device: str = "cpu", **config: Any
) -> RunSpec:
    """The engine run of an item: ``sgmcmc``'s settings (``config`` overrides fields) and task."""
    sg = params.sgmcmc
    return RunSpec(
        EngineConfig.from_params(sg, params.runtime, **config),
        protocol,
        workers,
        params.seed,
        functools.partial(build_task, sg.task, sg.batch_size),
        device,
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
        "rhat_max": metrics["diagnostics"].get("rhat_max"),
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


def run_item(
    params: Params, stage: StageItem, device: str = "cpu", track: bool = True
) -> dict[str, Any] | None:
    """Sample, evaluate and write every output of one item (paths: dvc.yaml); its metrics (None
    on a torchrun worker rank, which writes nothing and opens no MLflow run)."""
    protocol, workers = stage.identity["protocol"], stage.identity["workers"]
    spec = make_spec(params, protocol, workers, device)
    info = {"item": stage.key, "task": params.sgmcmc.task.kind, "seed": params.seed}
    if not track or is_worker_rank():
        out = _run_and_write(params, spec, stage, info)
        return out[0] if out is not None else None
    with tracking.stage_run(params, stage):
        out = _run_and_write(params, spec, stage, info)
        assert out is not None
        summary, series = out
        tracking.log_result(summary, as_params=["workers", "samples"])
        steps = list(range(1, len(series["wall_s"]) + 1))
        tracking.log_series(
            {f"running.{k}": series[k] for k in ("bma_accuracy", "bma_log_likelihood", "wall_s")},
            steps,
        )
        tracking.log_artifact(stage.out / "running_bma.png")
        tracking.log_artifact(stage.out / "run.json")
        return summary


def _run_and_write(
    params: Params, spec: RunSpec, stage: StageItem, info: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    partial = fresh_partial(stage.out)
    with Progress(stage.name, mlflow=True, prefix="sampling.") as progress:
        result = sample(spec, partial, info, params.sgmcmc.allow_partial, report=progress)
    if result is None:  # a torchrun worker rank
        return None
    task = spec.make_task()
    metrics, series = evaluate_samples(task, read_samples(partial), params.sgmcmc.eval_points)
    summary = summarize(result, metrics, series)
    write_json(
        partial / "run.json", {**result.as_dict(), "evaluation": metrics, "summary": summary}
    )
    running_figure(partial / "running_bma.png", stage.name, series)
    with signals_deferred():  # the three outputs appear together; the metrics file last
        finalize_dir(partial, stage.out)
        write_series(stage, series)
        write_json(stage.path(".json"), summary)
    return summary, series
