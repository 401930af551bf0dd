"""The ``pretrain`` stage's work: train, evaluate and record one VAE per beta schedule.

Outputs for schedule ``<name>`` (all written atomically, after training and evaluation succeed):

- ``models/pretrain/<name>/model.pt``   best-validation model (:func:`betamcmc.vae.model.load_vae`)
- ``models/pretrain/<name>/vocab.txt``  copy of the prepared vocabulary
- ``metrics/pretrain/<name>.json``      valid/test metrics (DVC metrics)
- ``metrics/pretrain/<name>_train.csv`` iteration, beta, recon, kl, elbo, loss (DVC plots)
- one MLflow run ``pretrain@<name>`` tagged ``schedule=<name>``: params, per-step series, valid
  -ELBO curve, final metrics, the checkpoint and the files above as artifacts.

The resumable checkpoint lives in ``models/.resume/pretrain/<name>/`` (outside the DVC output,
which DVC deletes before rerunning a stage) and is removed after a successful run.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from betamcmc.errors import ParamsError
from betamcmc.io import atomic_path, write_json, write_text
from betamcmc.params import Params

PREPARED = Path("data/prepared")
MODELS = Path("models/pretrain")
METRICS = Path("metrics/pretrain")
RESUME = Path("models/.resume/pretrain")
METRIC_KEYS = ("recon", "kl", "elbo", "nll", "ppl", "mi", "au")


def stage_keys(name: str) -> list[str]:
    """The params this stage depends on (same list as its ``params:`` in dvc.yaml)."""
    return [
        "seed",
        "device",
        f"pretrain.schedules.{name}",
        "pretrain.model",
        "pretrain.train",
        "pretrain.eval",
    ]


def data_digest(prepared: Path = PREPARED) -> str:
    """Digest of the prepared corpus files training reads (guards resuming on changed data)."""
    h = hashlib.sha256()
    for name in ("vocab.txt", "sentences.train.jsonl", "sentences.valid.jsonl"):
        path = prepared / name
        if path.exists():
            h.update(path.read_bytes())
    return h.hexdigest()[:12]


def check_schedule(params: Params, name: str | None, source: str) -> str:
    names = list(params.pretrain.schedules)
    if name is None:
        if len(names) != 1:
            raise ParamsError(f"{source}: pretrain: name the schedule to train (one of {names})")
        return names[0]
    if name not in params.pretrain.schedules:
        raise ParamsError(
            f"{source}: pretrain.schedules: no schedule named {name!r} (have {names})"
        )
    return name


def write_curve_csv(path: Path, history: dict[str, list[float]]) -> None:
    cols = ["iteration", "beta", "recon", "kl", "elbo", "loss"]
    lines = [",".join(cols)]
    for i in range(len(history["iteration"])):
        row = [str(int(history["iteration"][i]))]
        row += [f"{history[c][i]:.6g}" for c in cols[1:]]
        lines.append(",".join(row))
    write_text(path, "\n".join(lines) + "\n")


def run_pretrain(params: Params, name: str, source: str = "params.yaml") -> dict[str, Any]:
    """Train, evaluate and record the VAE of schedule ``name``; returns the metrics written."""
    from betamcmc.data.prepared import load_prepared

    name = check_schedule(params, name, source)
    corpus = load_prepared(PREPARED)  # fails fast (one line) before the heavy imports

    import mlflow
    import torch

    from betamcmc import tracking
    from betamcmc.runner import resolve_device, seed_everything
    from betamcmc.vae.evaluate import evaluate_split
    from betamcmc.vae.model import MODEL_FILE, VOCAB_FILE, save_vae
    from betamcmc.vae.train import clear_checkpoint, stop_on_signals, train_vae

    resolve_device(params.device)  # validates the setting; the LSTM VAE trains on CPU
    if params.pretrain.train.threads:
        torch.set_num_threads(params.pretrain.train.threads)
    seed_everything(params.seed)
    pp = params.pretrain
    schedule = pp.schedules[name]
    keys = stage_keys(name)
    train = [s.ids for s in corpus.sentences["train"]]
    valid = [s.ids for s in corpus.sentences["valid"]]
    test = [s.ids for s in corpus.sentences["test"]]
    fingerprint = f"{params.digest(keys)}-{data_digest()}"
    resume_dir = RESUME / name

    with (
        stop_on_signals() as stop,
        tracking.stage_run(
            params, stage="pretrain", item=name, keys=keys,
            tags={"schedule": name, "schedule_kind": schedule.kind},
        ),
    ):  # fmt: skip
        result = train_vae(
            train, valid, len(corpus.vocab), pp, name, params.seed,
            resume_dir=resume_dir, fingerprint=fingerprint, stop=stop,
        )  # fmt: skip
        ev = pp.eval
        splits = {
            split: evaluate_split(
                result.model,
                sents,
                ev.importance_samples,
                ev.batch_size,
                params.seed,
                ev.active_threshold,
            )  # fmt: skip
            for split, sents in (("valid", valid), ("test", test))
        }
        last = {k: result.history[k][-1] for k in ("beta", "recon", "kl", "elbo")}
        metrics = {
            "schedule": name,
            "kind": schedule.kind,
            "iterations": pp.train.iterations,
            "best_iteration": result.best_iteration,
            "resumed_from": result.resumed_from,
            "train_last": last,
            **splits,
        }

        model_dir = MODELS / name
        with atomic_path(model_dir) as tmp:
            tmp.mkdir(parents=True)
            save_vae(result.model, tmp / MODEL_FILE, meta={
                "schedule": name, "kind": schedule.kind, "best_iteration": result.best_iteration,
                "seed": params.seed, "params_hash": params.digest(keys), "corpus": corpus.meta.get("corpus", ""),
            })  # fmt: skip
            shutil.copyfile(PREPARED / "vocab.txt", tmp / VOCAB_FILE)
        write_curve_csv(METRICS / f"{name}_train.csv", result.history)
        write_json(METRICS / f"{name}.json", metrics)

        tracking.log_series({k: result.history[k] for k in ("beta", "recon", "kl", "elbo", "loss")},
                            [int(i) for i in result.history["iteration"]])  # fmt: skip
        tracking.log_series({"valid_neg_elbo_quick": result.valid_history["neg_elbo"]},
                            [int(i) for i in result.valid_history["iteration"]])  # fmt: skip
        flat = {f"{split}_{k}": splits[split][k] for split in splits for k in METRIC_KEYS}
        flat["best_iteration"] = result.best_iteration
        tracking.log_metrics(flat)
        mlflow.log_artifact(str(model_dir / MODEL_FILE), artifact_path="model")
        mlflow.log_artifact(str(METRICS / f"{name}.json"))
        mlflow.log_artifact(str(METRICS / f"{name}_train.csv"))
    clear_checkpoint(resume_dir)
    return metrics
