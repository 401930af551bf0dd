"""The ``pretrain`` stage's work: for one beta schedule, train and evaluate one VAE per seed.

Every seed in ``pretrain.seeds`` trains the same model on the same data under the same
schedule and budget; only the initialisation and the batch order differ. Seeds run in parallel
processes (``runtime.processes``; all at once by default, one at a time on a GPU), each
:func:`betamcmc.vae.pretrain_seed.train_seed`; :mod:`betamcmc.vae.seeds` adds them up.

Outputs for schedule ``<name>`` (all written atomically, after every seed succeeded):

- ``models/pretrain/<name>/seed<k>/model.pt``  best-validation model of seed k
  (:func:`betamcmc.vae.model.load_vae`; the schedule folder itself loads the first seed)
- ``models/pretrain/<name>/vocab.txt``, ``meta.json``  vocabulary copy; schedule, seeds
- ``metrics/pretrain/<name>.json``   valid/test metrics: the mean over seeds under the metric's
  name (``test.kl``, ``test.nll``, ...), its sample standard deviation (ddof = 1) as
  ``<metric>_std`` and the 95 % t-interval of the mean as ``<metric>_ci_low`` / ``_ci_high``
  (:mod:`betamcmc.core.stats`; null for a single seed), ``n_seeds``, the run's cosine learning-rate
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
import shutil
import statistics
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from betamcmc import tracking
from betamcmc.core import pipeline
from betamcmc.core.io import atomic_path, column_rows, write_csv, write_json
from betamcmc.core.parallel import run_jobs, start_server
from betamcmc.core.pipeline import StageItem
from betamcmc.core.runner import describe_precision, resolve_device, resolve_precision
from betamcmc.data.prepared import PreparedCorpus, load_prepared
from betamcmc.vae.pretrain_seed import SEED_MODULES, SeedJob, train_seed
from betamcmc.vae.seeds import (
    METRIC_KEYS,
    TRAIN_COLUMNS,
    VALID_COLUMNS,
    aggregate,
    mean_curves,
)

if TYPE_CHECKING:
    from betamcmc.params import Params


def data_digest(prepared: Path) -> str:
    """Digest of the prepared corpus files training reads (guards resuming on changed data)."""
    h = hashlib.sha256()
    for name in ("vocab.txt", "sentences.train.jsonl", "sentences.valid.jsonl"):
        path = prepared / name
        if path.exists():
            h.update(path.read_bytes())
    return h.hexdigest()[:12]


# --------------------------------------------------------------------------- the stage
@dataclass(frozen=True)
class Setup:
    """What every seed of one schedule shares, settled before any seed starts."""

    name: str  # the schedule
    prepared: Path  # the prepared corpus folder (its vocabulary is copied beside the models)
    device: str
    precision: str  # runtime.precision as resolved on this machine: fp32 | bf16
    processes: int  # seeds trained at once
    fingerprint: str  # a checkpoint resumes only under it (a seed appends ``-s<seed>``)
    meta: dict[str, Any]  # stored with every seed's model


def build_setup(params: Params, stage: StageItem, prepared: Path, corpus: PreparedCorpus) -> Setup:
    """Device, precision, process count, resume fingerprint and model meta of the stage item."""
    name = stage.identity["schedule"]
    pretrain, keys = params.pretrain, stage.params
    device = resolve_device(params.device)
    precision = resolve_precision(params.runtime.precision, device)
    # a checkpoint resumes only under the same settings, curve spacing (runtime.log_every) and
    # precision (runtime.precision is no stage param, and auto resolves per machine)
    fingerprint = (
        f"{params.digest([*keys, 'runtime.log_every'])}-{data_digest(prepared)}-{precision}"
    )
    meta = {
        "schedule": name,
        "kind": pretrain.schedules[name].kind,
        "params_hash": params.digest(keys),
        "corpus": corpus.meta.get("corpus", ""),
        "precision": precision,
    }
    # all seeds at once by default: on 2 cores three 1-thread processes share the cores evenly,
    # which beats two at a time plus one alone; one at a time on a GPU
    processes = 1 if device != "cpu" else (params.runtime.processes or len(pretrain.seeds))
    return Setup(
        name=name,
        prepared=prepared,
        device=device,
        precision=precision,
        processes=processes,
        fingerprint=fingerprint,
        meta=meta,
    )


def start_seed_runs(
    parent: tracking.StageRun, setup: Setup, seeds: list[int]
) -> dict[int, tracking.Link | None]:
    """One MLflow run per seed, nested under the stage run; its process logs its curves there."""
    tags = {k: parent.tags[k] for k in ("item", "schedule", "pipeline_run")}
    return {
        seed: tracking.start_child(
            parent,
            f"pretrain@{setup.name}/seed{seed}",
            {
                **tags,
                "stage": "pretrain_seed",  # tags.stage = 'pretrain': the schedules only
                "seed": str(seed),
                "precision": setup.precision,
            },
        )
        for seed in seeds
    }


def build_jobs(
    params: Params,
    setup: Setup,
    corpus: PreparedCorpus,
    staged: Path,
    links: dict[int, tracking.Link | None],
) -> list[SeedJob]:
    """One :class:`SeedJob` per seed, its model saved under the staged model folder."""
    from betamcmc.vae.model import MODEL_FILE  # lazy: torch, see run_pretrain

    splits = {s: [x.ids for x in corpus.sentences[s]] for s in ("train", "valid", "test")}
    return [
        SeedJob(
            params=params,
            name=setup.name,
            seed=seed,
            train=splits["train"],
            valid=splits["valid"],
            test=splits["test"],
            vocab_size=len(corpus.vocab),
            fingerprint=f"{setup.fingerprint}-s{seed}",
            model_path=staged / f"seed{seed}" / MODEL_FILE,
            device=setup.device,
            link=links[seed],
            meta=setup.meta,
        )
        for seed in params.pretrain.seeds
    ]


def train_seeds(
    params: Params,
    stage: StageItem,
    setup: Setup,
    corpus: PreparedCorpus,
    links: dict[int, tracking.Link | None],
    stop: threading.Event,
) -> list[dict[str, Any]]:
    """Train every seed and write the model folder (whole or not at all): one model per seed,
    the vocabulary and ``meta.json``. Each seed's results, in seed order."""
    from betamcmc.vae.model import VOCAB_FILE  # lazy: torch, see run_pretrain

    with atomic_path(stage.out) as staged:
        staged.mkdir(parents=True)
        jobs = build_jobs(params, setup, corpus, staged, links)
        try:
            results = run_jobs(train_seed, jobs, setup.processes, stop, preload=SEED_MODULES)
        except BaseException:
            for link in links.values():
                tracking.end_run(link, "FAILED")
            raise
        shutil.copyfile(setup.prepared / "vocab.txt", staged / VOCAB_FILE)
        write_json(staged / "meta.json", {**setup.meta, "seeds": list(params.pretrain.seeds)})
    return results


def build_metrics(
    params: Params, stage: StageItem, setup: Setup, results: list[dict[str, Any]]
) -> dict[str, Any]:
    """The metrics file: the mean over seeds with its spread, and every seed's own numbers."""
    pretrain = params.pretrain
    per_seed_keys = ("best_iteration", "resumed_from", "train_last", "valid", "test")
    return {
        "schedule": setup.name,
        "kind": pretrain.schedules[setup.name].kind,
        "params_hash": params.digest(stage.params),
        "precision": setup.precision,  # runtime.precision as resolved here (not in params_hash)
        "iterations": pretrain.train.iterations,
        "seeds": list(pretrain.seeds),
        "n_seeds": len(results),
        "lr_cycles": pretrain.lr_cycles_of(setup.name),
        "best_iteration": round(statistics.fmean(r["best_iteration"] for r in results)),
        **{split: aggregate([r[split] for r in results]) for split in ("valid", "test")},
        "per_seed": {str(r["seed"]): {k: r[k] for k in per_seed_keys} for r in results},
    }


def build_curves(results: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """The training and validation curves, mean over seeds."""
    return {
        "_train.csv": mean_curves([r["history"] for r in results], TRAIN_COLUMNS),
        "_valid.csv": mean_curves([r["valid_history"] for r in results], VALID_COLUMNS),
    }


def write_outputs(
    stage: StageItem, metrics: dict[str, Any], curves: dict[str, dict[str, list[float]]]
) -> list[Path]:
    """The two curve files and the metrics file (paths: dvc.yaml); returns their paths."""
    for suffix, columns in (("_train.csv", TRAIN_COLUMNS), ("_valid.csv", VALID_COLUMNS)):
        write_csv(stage.path(suffix), columns, column_rows(curves[suffix]))
    write_json(stage.path(".json"), metrics)
    return [stage.path(s) for s in ("_train.csv", "_valid.csv", ".json")]


def log_outputs(
    stage: StageItem,
    metrics: dict[str, Any],
    results: list[dict[str, Any]],
    curves: dict[str, dict[str, list[float]]],
    links: dict[int, tracking.Link | None],
) -> None:
    """Every seed's metrics to its own run (which it ends); the aggregate, the mean curves, the
    files and the first seed's model to the stage run."""
    from betamcmc.vae.model import MODEL_FILE  # lazy: torch, see run_pretrain

    # through tracking's queue like everything else: a store gone by now never holds this up
    for r in results:
        link = links[r["seed"]]
        flat = {f"{split}.{k}": r[split][k] for split in ("valid", "test") for k in METRIC_KEYS}
        tracking.log_metrics(flat, step=0, link=link)
        tracking.log_params({"seed": r["seed"]}, link=link)
        tracking.end_run(link, "FINISHED")
    tracking.log_result(
        metrics,
        as_params=["iterations", "n_seeds", "lr_cycles", "precision"],
        skip=["per_seed"],
    )
    for suffix, prefix, columns in (
        ("_train.csv", "train.", TRAIN_COLUMNS),
        ("_valid.csv", "valid_curve.", VALID_COLUMNS),
    ):
        curve = curves[suffix]
        steps = [int(i) for i in curve["iteration"]]
        tracking.log_series({prefix + k: curve[k] for k in columns[1:]}, steps)
    for suffix in ("_train.csv", "_valid.csv", ".json"):
        tracking.log_artifact(stage.path(suffix))
    # a checkpoint file, not an MLflow model: see docs/tracking.md ("The trained VAE")
    model_file = stage.out / f"seed{metrics['seeds'][0]}" / MODEL_FILE
    tracking.log_artifact(model_file, artifact_path="model")


def run_pretrain(params: Params, stage: StageItem) -> dict[str, Any]:
    """Train, evaluate and record the VAEs of the stage item's schedule (paths: dvc.yaml);
    returns the metrics written."""
    prepared = pipeline.stage_item("prepare").out
    corpus = load_prepared(prepared)  # fails fast (one line) before the heavy imports
    # lazy: vae.train imports torch (seconds): it loads only after the corpus check
    from betamcmc.vae.train import stop_on_signals

    setup = build_setup(params, stage, prepared, corpus)
    seeds = list(params.pretrain.seeds)
    if setup.processes > 1 and len(seeds) > 1:
        start_server(train_seed, SEED_MODULES)  # imports while this process sets up MLflow
    with stop_on_signals() as stop, tracking.stage_run(params, stage) as parent:
        links = start_seed_runs(parent, setup, seeds)
        print(
            f"pretrain[{setup.name}]: {len(seeds)} seed(s) {params.pretrain.seeds}, "
            f"{setup.processes} process(es), {params.pretrain.train.iterations} iterations each, "
            f"device {setup.device}, "
            f"{describe_precision(params.runtime.precision, setup.precision, setup.device)}",
            flush=True,
        )
        # the model folder first (whole or not at all), then the metrics that describe it
        results = train_seeds(params, stage, setup, corpus, links, stop)
        metrics = build_metrics(params, stage, setup, results)
        curves = build_curves(results)
        write_outputs(stage, metrics, curves)
        log_outputs(stage, metrics, results, curves, links)
    return metrics
