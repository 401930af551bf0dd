"""The ``pretrain`` stage's work: for one beta schedule, train and evaluate one VAE per seed.

Every seed in ``pretrain.seeds`` trains the same model on the same data under the same
schedule and budget; only the initialisation and the batch order differ. Seeds run in parallel
processes (``runtime.processes``; all at once by default, one at a time on a GPU).

Outputs for schedule ``<name>`` (all written atomically, after every seed succeeded):

- ``models/pretrain/<name>/seed<k>/model.pt``  best-validation model of seed k
  (:func:`betamcmc.vae.model.load_vae`; the schedule folder itself loads the first seed)
- ``models/pretrain/<name>/vocab.txt``, ``meta.json``  vocabulary copy; schedule, seeds
- ``metrics/pretrain/<name>.json``   valid/test metrics: the mean over seeds under the metric's
  name (``test.kl``, ``test.nll``, ...), its sample standard deviation (ddof = 1) as
  ``<metric>_std`` and the 95 % t-interval of the mean as ``<metric>_ci_low`` / ``_ci_high``
  (:mod:`betamcmc.stats`; null for a single seed), ``n_seeds``, the run's cosine learning-rate
  cycles ``lr_cycles``, and every seed's own numbers under ``per_seed`` (DVC metrics)
- ``metrics/pretrain/<name>_train.csv``  iteration, beta, recon, kl, elbo, loss: training
  curves, mean over seeds (DVC plots)
- ``metrics/pretrain/<name>_valid.csv``  iteration, neg_elbo, kl, mi, au at every evaluation:
  validation curves, mean over seeds (whether and when the code collapses)
- MLflow: run ``pretrain@<name>`` with the aggregated metrics and artifacts, and one nested run
  per seed that receives its training curves live (with real timestamps) while it trains.

Resumable checkpoints live in ``models/.resume/pretrain/<name>/seed<k>/`` (outside the DVC output,
which DVC deletes before rerunning a stage) and are removed after a successful run.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import statistics
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from betamcmc import pipeline, tracking
from betamcmc.data.prepared import load_prepared
from betamcmc.io import atomic_path, write_json, write_text
from betamcmc.parallel import run_jobs, start_server
from betamcmc.params import Params
from betamcmc.pipeline import StageItem
from betamcmc.progress import Progress
from betamcmc.runner import describe_precision, resolve_device, resolve_precision, seed_everything
from betamcmc.stats import mean_std_ci

RESUME = Path("models/.resume/pretrain")
# what a seed's process imports (train_seed's lazy imports, its live MLflow logging): loaded once
# by the fork server that starts the seeds (betamcmc.parallel.run_jobs)
SEED_MODULES = (
    "torch",
    "torch._dynamo",  # imported by the first optimizer a process makes (torch.optim): ~1 s
    "betamcmc.vae.train",
    "betamcmc.vae.evaluate",
    "betamcmc.vae.model",
    "mlflow",
    "mlflow.store.tracking.sqlalchemy_store",  # a seed's MlflowClient on a sqlite store: ~1 s
)
METRIC_KEYS = ("recon", "kl", "elbo", "nll", "ppl", "mi", "au")
TRAIN_COLUMNS = ("iteration", "beta", "recon", "kl", "elbo", "loss")
VALID_COLUMNS = ("iteration", "neg_elbo", "kl", "mi", "au")


def data_digest(prepared: Path) -> str:
    """Digest of the prepared corpus files training reads (guards resuming on changed data)."""
    h = hashlib.sha256()
    for name in ("vocab.txt", "sentences.train.jsonl", "sentences.valid.jsonl"):
        path = prepared / name
        if path.exists():
            h.update(path.read_bytes())
    return h.hexdigest()[:12]


def write_csv(path: Path, columns: tuple[str, ...], rows: dict[str, list[float]]) -> None:
    lines = [",".join(columns)]
    for i in range(len(rows[columns[0]])):
        cells = [str(int(rows[columns[0]][i]))] + [f"{rows[c][i]:.6g}" for c in columns[1:]]
        lines.append(",".join(cells))
    write_text(path, "\n".join(lines) + "\n")


def mean_curves(curves: list[dict[str, list[float]]], columns: tuple[str, ...]) -> dict:
    """Average per-seed curves point by point (every seed logs at the same iterations)."""
    out = {columns[0]: list(curves[0][columns[0]])}
    for c in columns[1:]:
        out[c] = [statistics.fmean(vals) for vals in zip(*(cv[c] for cv in curves), strict=True)]
    return out


def aggregate(per_seed: list[dict[str, float]]) -> dict[str, float | None]:
    """Mean over seeds under each metric's name; for the :data:`METRIC_KEYS` also the sample
    std (ddof = 1) as ``<name>_std`` and the 95 % t-interval of the mean as ``<name>_ci_low`` /
    ``<name>_ci_high`` (:func:`betamcmc.stats.mean_std_ci`; None for a single seed or a
    non-finite value)."""
    out: dict[str, float | None] = {}
    for key in per_seed[0]:
        values = [float(m[key]) for m in per_seed]
        out[key] = statistics.fmean(values)
        if key in METRIC_KEYS:
            finite = all(math.isfinite(v) for v in values)
            summary = mean_std_ci(values) if finite else {}
            for part in ("std", "ci_low", "ci_high"):
                out[f"{key}_{part}"] = summary.get(part)
    return out


@dataclass
class SeedJob:
    """Everything one worker process needs to train and evaluate the VAE of one seed."""

    params: Params
    name: str
    seed: int
    train: list[list[int]]
    valid: list[list[int]]
    test: list[list[int]]
    vocab_size: int
    fingerprint: str
    model_path: Path
    device: str
    link: tracking.Link | None = None  # the seed's nested MLflow run (None: untracked)
    meta: dict[str, Any] = field(default_factory=dict)


class _Live:
    """Progress of one seed's training (:mod:`betamcmc.progress`): plain lines on the terminal
    (the seeds train in parallel processes, so no bars) and the curves, as they come, in the
    seed's MLflow run (batched, real timestamps)."""

    def __init__(self, job: SeedJob):
        self.where = f"pretrain@{job.name} seed {job.seed}"
        self.total = job.params.pretrain.train.iterations
        self.progress = Progress(self.where, mode="lines", link=job.link)

    def __call__(self, kind: str, iteration: int, values: dict[str, float]) -> None:
        prefix = "train." if kind == "train" else "valid_curve."
        self.progress(iteration, self.total, {prefix + k: v for k, v in values.items()})

    def flush(self) -> None:
        self.progress.close()


def train_seed(job: SeedJob, stop: threading.Event) -> dict[str, Any]:
    """Train, select and evaluate the VAE of one seed; save it to ``job.model_path``."""
    # lazy: torch (a second) loads only in a seed's process, so the stage checks its schedule
    # and corpus first; evaluate_split is looked up at call time (tests patch it)
    import torch

    from betamcmc.vae.evaluate import evaluate_split
    from betamcmc.vae.model import save_vae
    from betamcmc.vae.train import clear_checkpoint, train_vae

    pp, runtime = job.params.pretrain, job.params.runtime
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    seed_everything(job.seed)
    live = _Live(job)
    resume_dir = RESUME / job.name / f"seed{job.seed}"
    result = train_vae(
        job.train, job.valid, job.vocab_size, pp, runtime, job.name, job.seed,
        resume_dir=resume_dir, fingerprint=job.fingerprint, stop=stop,
        device=job.device, on_log=live,
    )  # fmt: skip
    live.flush()
    ev = pp.eval
    splits = {}
    for split, sents in (("valid", job.valid), ("test", job.test)):
        _stop_if_asked(stop, live.where)
        splits[split] = evaluate_split(
            result.model, sents, ev.importance_samples, ev.batch_size, job.seed,
            ev.active_threshold,
        )  # fmt: skip
    _stop_if_asked(stop, live.where)  # a stop during the last evaluation: nothing is saved
    job.model_path.parent.mkdir(parents=True, exist_ok=True)
    save_vae(result.model.cpu(), job.model_path, meta={**job.meta, "seed": job.seed,
             "best_iteration": result.best_iteration})  # fmt: skip
    clear_checkpoint(resume_dir)
    return {
        "seed": job.seed,
        "best_iteration": result.best_iteration,
        "resumed_from": result.resumed_from,
        "train_last": {k: result.history[k][-1] for k in ("beta", "recon", "kl", "elbo")},
        **splits,
        "history": result.history,
        "valid_history": result.valid_history,
    }


def _stop_if_asked(stop: threading.Event, where: str) -> None:
    """Honour a SIGTERM / SIGINT that arrived during the final evaluation: save nothing, keep
    the resumable checkpoint (the last periodic one; a rerun resumes from it)."""
    if stop.is_set():
        from betamcmc.vae.train import TrainingInterrupted  # lazy: torch, see train_seed

        raise TrainingInterrupted(
            f"{where}: interrupted during the final evaluation; no model or metrics written, "
            "the resumable checkpoint is kept: rerun to resume"
        )


def run_pretrain(params: Params, stage: StageItem) -> dict[str, Any]:
    """Train, evaluate and record the VAEs of the stage item's schedule (paths: dvc.yaml);
    returns the metrics written."""
    name = stage.identity["schedule"]
    prepared = pipeline.stage_item("prepare").out
    corpus = load_prepared(prepared)  # fails fast (one line) before the heavy imports

    # lazy: vae.model and vae.train (they import torch; seconds in all) load only after the
    # corpus check
    from betamcmc.vae.model import MODEL_FILE, VOCAB_FILE
    from betamcmc.vae.train import stop_on_signals

    device = resolve_device(params.device)
    precision = resolve_precision(params.runtime.precision, device)  # fp32 | bf16, this machine
    pp = params.pretrain
    schedule = pp.schedules[name]
    keys = stage.params
    splits = {s: [x.ids for x in corpus.sentences[s]] for s in ("train", "valid", "test")}
    # a checkpoint resumes only under the same settings, curve spacing (runtime.log_every) and
    # precision (runtime.precision is no stage param, and auto resolves per machine)
    base_fingerprint = (
        f"{params.digest([*keys, 'runtime.log_every'])}-{data_digest(prepared)}-{precision}"
    )
    meta = {"schedule": name, "kind": schedule.kind, "params_hash": params.digest(keys),
            "corpus": corpus.meta.get("corpus", ""), "precision": precision}  # fmt: skip
    # all seeds at once by default: on 2 cores three 1-thread processes share the cores evenly,
    # which beats two at a time plus one alone; one at a time on a GPU
    processes = 1 if device != "cpu" else (params.runtime.processes or len(pp.seeds))
    if processes > 1 and len(pp.seeds) > 1:
        start_server(train_seed, SEED_MODULES)  # imports while this process sets up MLflow

    with (
        stop_on_signals() as stop,
        tracking.stage_run(params, stage) as parent,
    ):  # fmt: skip
        seed_links = {
            seed: tracking.start_child(
                parent,
                f"pretrain@{name}/seed{seed}",
                {
                    **{k: parent.tags[k] for k in ("item", "schedule", "pipeline_run")},
                    "stage": "pretrain_seed",  # tags.stage = 'pretrain': the schedules only
                    "seed": str(seed),
                    "precision": precision,
                },
            )
            for seed in pp.seeds
        }
        print(f"pretrain[{name}]: {len(pp.seeds)} seed(s) {pp.seeds}, {processes} process(es), "
              f"{pp.train.iterations} iterations each, device {device}, "
              f"{describe_precision(params.runtime.precision, precision, device)}",
              flush=True)  # fmt: skip
        # the model folder first (whole or not at all), then the metrics that describe it
        with atomic_path(stage.out) as staged:
            staged.mkdir(parents=True)
            jobs = [
                SeedJob(
                    params,
                    name,
                    seed,
                    splits["train"],
                    splits["valid"],
                    splits["test"],
                    len(corpus.vocab),
                    f"{base_fingerprint}-s{seed}",
                    staged / f"seed{seed}" / MODEL_FILE,
                    device,
                    seed_links[seed],
                    meta,
                )  # fmt: skip
                for seed in pp.seeds
            ]
            try:
                results = run_jobs(train_seed, jobs, processes, stop, preload=SEED_MODULES)
            except BaseException:
                for link in seed_links.values():
                    tracking.end_run(link, "FAILED")
                raise
            shutil.copyfile(prepared / "vocab.txt", staged / VOCAB_FILE)
            write_text(staged / "meta.json", _json({**meta, "seeds": list(pp.seeds)}))

        metrics = {
            "schedule": name,
            "kind": schedule.kind,
            "params_hash": params.digest(keys),
            "precision": precision,  # runtime.precision as resolved here (not in params_hash)
            "iterations": pp.train.iterations,
            "seeds": list(pp.seeds),
            "n_seeds": len(results),
            "lr_cycles": pp.lr_cycles_of(name),
            "best_iteration": round(statistics.fmean(r["best_iteration"] for r in results)),
            **{split: aggregate([r[split] for r in results]) for split in ("valid", "test")},
            "per_seed": {
                str(r["seed"]): {
                    k: r[k]
                    for k in ("best_iteration", "resumed_from", "train_last", "valid", "test")
                }  # fmt: skip
                for r in results
            },
        }
        train_curve = mean_curves([r["history"] for r in results], TRAIN_COLUMNS)
        valid_curve = mean_curves([r["valid_history"] for r in results], VALID_COLUMNS)
        files = {s: stage.path(s) for s in ("_train.csv", "_valid.csv", ".json")}
        write_csv(files["_train.csv"], TRAIN_COLUMNS, train_curve)
        write_csv(files["_valid.csv"], VALID_COLUMNS, valid_curve)
        write_json(files[".json"], metrics)

        # through tracking's queue like everything else: a store gone by now never holds this up
        for r in results:
            link = seed_links[r["seed"]]
            flat = {f"{split}.{k}": r[split][k] for split in ("valid", "test") for k in METRIC_KEYS}
            tracking.log_metrics(flat, step=0, link=link)
            tracking.log_params({"seed": r["seed"]}, link=link)
            tracking.end_run(link, "FINISHED")
        tracking.log_result(
            metrics,
            as_params=["iterations", "n_seeds", "lr_cycles", "precision"],
            skip=["per_seed"],
        )
        tracking.log_series({f"train.{k}": train_curve[k] for k in TRAIN_COLUMNS[1:]},
                            [int(i) for i in train_curve["iteration"]])  # fmt: skip
        tracking.log_series({f"valid_curve.{k}": valid_curve[k] for k in VALID_COLUMNS[1:]},
                            [int(i) for i in valid_curve["iteration"]])  # fmt: skip
        for path in files.values():
            tracking.log_artifact(path)
        # a checkpoint file, not an MLflow model: see docs/tracking.md ("The trained VAE")
        model_file = stage.out / f"seed{pp.seeds[0]}" / MODEL_FILE
        tracking.log_artifact(model_file, artifact_path="model")
    return metrics


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2) + "\n"
