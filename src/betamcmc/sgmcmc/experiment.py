"""One item of the ``sgmcmc`` stage: sample with a protocol and W workers, evaluate, write outputs.

Outputs of item ``<protocol>-w<W>``:

* ``models/sgmcmc/<item>/``: ``header.json`` + ``samples.bin`` (the samples file, see
  ``samples.py``), ``run.json`` (communication, staleness, per-worker counters, dead workers,
  diagnostics) and ``running_bma.png``. While sampling they live in ``<item>.partial/`` (streamed);
  that directory is renamed to ``<item>/`` once the run is complete, so DVC never sees a
  half-made output, and a crashed or stopped run leaves its samples readable in ``.partial/``.
* ``metrics/sgmcmc/<item>.json`` (DVC metrics) and ``metrics/sgmcmc/<item>_bma_accuracy.csv``,
  ``..._bma_log_likelihood.csv`` (DVC plots: running BMA against wall-clock seconds).
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path
from typing import Any

import numpy as np

from betamcmc.errors import BetamcmcError, ParamsError
from betamcmc.io import write_json, write_text
from betamcmc.params import Params
from betamcmc.sgmcmc.engine import RunResult, RunSpec, run_local, run_torchrun
from betamcmc.sgmcmc.evaluate import evaluate_samples, first_time_at
from betamcmc.sgmcmc.params import PROTOCOLS
from betamcmc.sgmcmc.samples import read_samples

TARGETS = (0.95, 0.97)
# the params the sgmcmc stage depends on (dvc.yaml ``params:`` and the MLflow run's keys)
STAGE_KEYS = [
    "seed",
    "device",
    "sgmcmc.sampler",
    "sgmcmc.prior_std",
    "sgmcmc.period",
    "sgmcmc.alpha",
    "sgmcmc.overlap",
    "sgmcmc.burn_in",
    "sgmcmc.thinning",
    "sgmcmc.samples",
    "sgmcmc.batch_size",
    "sgmcmc.straggler_delay",
    "sgmcmc.threads",
    "sgmcmc.worker_timeout",
    "sgmcmc.eval_points",
    "sgmcmc.task",
]


class Stopped(BetamcmcError):
    """The master got SIGTERM; the samples collected so far stay readable."""

    exit_code = 143


def check_item(protocol: str, workers: int) -> None:
    if protocol not in PROTOCOLS:
        raise ParamsError(f"sgmcmc: protocol must be one of {list(PROTOCOLS)} (got {protocol!r})")
    if workers < 1:
        raise ParamsError(f"sgmcmc: workers must be >= 1 (got {workers})")


def make_spec(
    params: Params, protocol: str, workers: int, device: str = "cpu", **overrides: Any
) -> RunSpec:
    return RunSpec(params.sgmcmc, protocol, workers, params.seed, device, **overrides)


def sample(spec: RunSpec, samples_dir: Path, info: dict[str, Any]) -> RunResult | None:
    """Run the sampler (locally or, under torchrun, as this rank); SIGTERM ends it cleanly."""

    def on_term(signum: int, frame: Any) -> None:
        raise Stopped(f"stopped by SIGTERM; the samples collected so far are in {samples_dir}")

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
            return run_torchrun(lambda w: _with_workers(spec, w), samples_dir, info)
        return run_local(spec, samples_dir, info)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _with_workers(spec: RunSpec, workers: int) -> RunSpec:
    if workers != spec.workers:
        raise ParamsError(
            f"torchrun started {workers} workers but the item asks for {spec.workers} "
            "(world size must be workers + 1)"
        )
    return spec


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


def write_series(metrics_dir: Path, item: str, series: dict[str, np.ndarray]) -> list[Path]:
    paths = []
    for column in ("bma_accuracy", "bma_log_likelihood"):
        rows = ["sample,wall_s,grad_evals," + column]
        for i, (t, g, v) in enumerate(
            zip(series["wall_s"], series["grad_evals"], series[column], strict=True)
        ):
            rows.append(f"{i + 1},{t:.4f},{int(g)},{v:.6f}")
        path = metrics_dir / f"{item}_{column}.csv"
        write_text(path, "\n".join(rows) + "\n")
        paths.append(path)
    return paths


def running_figure(path: Path, item: str, series: dict[str, np.ndarray]) -> None:
    import matplotlib

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


def finalize_dir(partial: Path, final: Path) -> None:
    """Replace ``final`` with the completed ``partial`` directory (rename, old one removed)."""
    if final.exists():
        old = final.with_name(final.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        shutil.rmtree(old, ignore_errors=True)
    os.replace(partial, final)


def run_item(
    params: Params,
    protocol: str,
    workers: int,
    models_dir: Path = Path("models/sgmcmc"),
    metrics_dir: Path = Path("metrics/sgmcmc"),
    device: str = "cpu",
    track: bool = True,
) -> dict[str, Any] | None:
    """Sample, evaluate and write every output of one item; returns its metrics (rank 0)."""
    check_item(protocol, workers)
    item = f"{protocol}-w{workers}"
    partial = models_dir / f"{item}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    spec = make_spec(params, protocol, workers, device)
    info = {"item": item, "task": params.sgmcmc.task.kind, "seed": params.seed}
    if track:
        from betamcmc import tracking

        with tracking.stage_run(params, stage="sgmcmc", item=item, keys=STAGE_KEYS):
            out = _run_and_write(spec, partial, models_dir / item, metrics_dir, item, info)
            if out is not None:
                import mlflow

                summary, series = out
                tracking.log_metrics(
                    {k: v for k, v in summary.items() if isinstance(v, int | float)}
                )
                steps = list(range(1, len(series["wall_s"]) + 1))
                tracking.log_series(
                    {k: series[k] for k in ("bma_accuracy", "bma_log_likelihood", "wall_s")}, steps
                )
                mlflow.log_artifact(str(models_dir / item / "running_bma.png"))
                mlflow.log_artifact(str(models_dir / item / "run.json"))
                return summary
            return None
    out = _run_and_write(spec, partial, models_dir / item, metrics_dir, item, info)
    return out[0] if out is not None else None


def _run_and_write(
    spec: RunSpec, partial: Path, final: Path, metrics_dir: Path, item: str, info: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    result = sample(spec, partial, info)
    if result is None:  # a torchrun worker rank
        return None
    task = spec.make_task()
    metrics, series = evaluate_samples(task, read_samples(partial), spec.cfg.eval_points)
    summary = summarize(result, metrics, series)
    write_json(
        partial / "run.json", {**result.as_dict(), "evaluation": metrics, "summary": summary}
    )
    running_figure(partial / "running_bma.png", item, series)
    finalize_dir(partial, final)
    write_series(metrics_dir, item, series)
    write_json(metrics_dir / f"{item}.json", summary)
    return summary, series


SGD_KEYS = [
    "seed",
    "device",
    "sgmcmc.sampler",
    "sgmcmc.prior_std",
    "sgmcmc.batch_size",
    "sgmcmc.sgd",
    "sgmcmc.task",
]


def run_sgd(
    params: Params,
    models_dir: Path = Path("models/sgmcmc_sgd"),
    metrics_path: Path = Path("metrics/sgmcmc_sgd.json"),
    track: bool = True,
) -> dict[str, Any]:
    """The point-estimate baseline: the sampler at temperature 0 (SGD / SGD with momentum on the
    MAP loss) for ``sgd.steps`` steps with one worker; its last iterate is evaluated like a BMA of
    one sample."""
    cfg = params.sgmcmc.model_copy(
        update={
            "burn_in": params.sgmcmc.sgd.steps,
            "samples": 1,
            "thinning": 1,
            "straggler_delay": 0.0,
        }
    )
    spec = RunSpec(
        cfg, "single", 1, params.seed, "cpu", temperature=0.0, step_size=params.sgmcmc.sgd.step_size
    )
    partial = models_dir.with_name(models_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)

    def body() -> dict[str, Any]:
        result = sample(spec, partial, {"item": "sgd", "task": cfg.task.kind, "seed": params.seed})
        assert result is not None
        metrics, _ = evaluate_samples(spec.make_task(), read_samples(partial), cfg.eval_points)
        summary = {
            "method": f"{cfg.sampler.kind} at temperature 0 ({'SGD' if cfg.sampler.kind == 'sgld' else 'SGD with momentum'})",
            "steps": params.sgmcmc.sgd.steps,
            **{
                k: metrics[k]
                for k in (
                    "accuracy",
                    "log_likelihood",
                    "log_likelihood_median",
                    "log_likelihood_worst",
                    "ece",
                )
            },
            "wall_s": result.wall_s,
        }
        write_json(partial / "run.json", {**result.as_dict(), "evaluation": metrics})
        finalize_dir(partial, models_dir)
        write_json(metrics_path, summary)
        return summary

    if not track:
        return body()
    from betamcmc import tracking

    with tracking.stage_run(params, stage="sgmcmc_sgd", keys=SGD_KEYS):
        summary = body()
        tracking.log_metrics({k: v for k, v in summary.items() if isinstance(v, int | float)})
        return summary
