"""One seed of the ``pretrain`` stage, in its own process: train, select, evaluate and save the
VAE of one seed (:func:`train_seed`, run by :func:`betamcmc.core.parallel.run_jobs`).

The seed's training curves go, as they come, to the terminal (plain lines) and to the seed's
nested MLflow run. Its resumable checkpoint lives in ``models/.resume/pretrain/<name>/seed<k>/``
(outside the DVC output) and is removed once the model is saved.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from betamcmc import tracking
from betamcmc.core.io import limit_threads
from betamcmc.core.runner import seed_everything
from betamcmc.tracking.progress import Progress

if TYPE_CHECKING:
    from betamcmc.params import Params

RESUME = Path("models/.resume/pretrain")
# what a seed's process imports (train_seed's lazy imports, its live MLflow logging): loaded once
# by the fork server that starts the seeds (betamcmc.core.parallel.run_jobs)
SEED_MODULES = (
    "torch",
    "torch._dynamo",  # imported by the first optimizer a process makes (torch.optim): ~1 s
    "betamcmc.vae.train",
    "betamcmc.vae.evaluate",
    "betamcmc.vae.model",
    "mlflow",
    "mlflow.store.tracking.sqlalchemy_store",  # a seed's MlflowClient on a sqlite store: ~1 s
)


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
    """Progress of one seed's training (:mod:`betamcmc.tracking.progress`): plain lines on the
    terminal (the seeds train in parallel processes, so no bars) and the curves, as they come, in
    the seed's MLflow run (batched, real timestamps)."""

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
    # and corpus first
    from betamcmc.vae.train import clear_checkpoint, train_vae

    pretrain, runtime = job.params.pretrain, job.params.runtime
    limit_threads(runtime.threads)
    seed_everything(job.seed)
    live = _Live(job)
    resume_dir = RESUME / job.name / f"seed{job.seed}"
    result = train_vae(
        job.train,
        job.valid,
        job.vocab_size,
        pretrain,
        runtime,
        job.name,
        job.seed,
        resume_dir=resume_dir,
        fingerprint=job.fingerprint,
        stop=stop,
        device=job.device,
        on_log=live,
    )
    live.flush()
    splits = evaluate_seed(job, result.model, stop, live.where)
    _stop_if_asked(stop, live.where)  # a stop during the last evaluation: nothing is saved
    save_seed_model(job, result.model, result.best_iteration)
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


def evaluate_seed(
    job: SeedJob, model: Any, stop: threading.Event, where: str
) -> dict[str, dict[str, float]]:
    """The valid and test metrics of one seed's selected model (``pretrain.eval``)."""
    # lazy: torch, see train_seed; evaluate_split is looked up at call time (tests patch it)
    from betamcmc.vae.evaluate import evaluate_split

    settings = job.params.pretrain.eval
    splits = {}
    for split, sentences in (("valid", job.valid), ("test", job.test)):
        _stop_if_asked(stop, where)
        splits[split] = evaluate_split(
            model,
            sentences,
            settings.importance_samples,
            settings.batch_size,
            job.seed,
            settings.active_threshold,
        )
    return splits


def save_seed_model(job: SeedJob, model: Any, best_iteration: int) -> None:
    """One seed's model file, with the schedule's meta, its seed and its best iteration."""
    from betamcmc.vae.model import save_vae  # lazy: torch, see train_seed

    job.model_path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**job.meta, "seed": job.seed, "best_iteration": best_iteration}
    save_vae(model.cpu(), job.model_path, meta=meta)


def _stop_if_asked(stop: threading.Event, where: str) -> None:
    """Honour a SIGTERM / SIGINT that arrived during the final evaluation: save nothing, keep
    the resumable checkpoint (the last periodic one; a rerun resumes from it)."""
    if stop.is_set():
        from betamcmc.vae.train import TrainingInterrupted  # lazy: torch, see train_seed

        raise TrainingInterrupted(
            f"{where}: interrupted during the final evaluation; no model or metrics written, "
            "the resumable checkpoint is kept: rerun to resume"
        )
