"""Training loop of the text VAE under one beta schedule: resumable, deterministic, divergence-safe.

- Iteration t (0-based) trains on one length-bucketed minibatch (:mod:`betamcmc.vae.batches`)
  with loss recon + beta_t * KL (:mod:`betamcmc.vae.schedules`); one update is
  :func:`~betamcmc.vae.step.train_step` (Adam, clipping, precision, batch split over threads).
  The learning rate is constant or a cosine restarted every lr cycle
  (``pretrain.train.lr_schedule``; the cycles:
  :meth:`~betamcmc.vae.params.PretrainParams.lr_cycles_of`).
- The run is a :class:`TrainSettings` (fixed) and a :class:`TrainState` (model, Adam, curves,
  best model) that :func:`run_iteration` advances; :meth:`TrainState.save` / :meth:`TrainState.load`
  are the resumable checkpoint.
- On a CPU, glibc's heap keeps the memory the steps free (:mod:`betamcmc.core.heap`): no page faults
  on each step's fresh multi-MB tensors. The model and every batch live on ``device`` (``cuda``
  when ``device: auto`` finds a GPU).
- Every ``eval_every`` iterations the validation -ELBO (beta = 1) is measured, with the KL,
  mutual information and active units of the validation codes (the curves that show whether and
  when the code collapses); the best model by -ELBO is kept (Fu et al. report the
  best-validation model).
- A resumable checkpoint (model, Adam state, torch RNG state, best model, history) is written
  every ``checkpoint_every`` iterations and when SIGTERM/SIGINT arrives (then the run stops with
  :class:`TrainingInterrupted`). A rerun with the same params resumes from it and reaches the same
  final weights as an uninterrupted run (CPU). It holds only tensors and primitives, so it loads
  with ``torch.load(..., weights_only=True)``.
- A non-finite loss, gradient norm or validation -ELBO raises
  :class:`~betamcmc.core.errors.DivergenceError` naming the iteration.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from betamcmc.core.errors import BetamcmcError, DivergenceError
from betamcmc.core.heap import keep_freed_memory
from betamcmc.core.paramfile import RuntimeParams
from betamcmc.core.runner import resolve_precision
from betamcmc.vae.batches import BatchStream
from betamcmc.vae.evaluate import validate
from betamcmc.vae.model import TextVAE, VAEConfig
from betamcmc.vae.params import PretrainParams, Schedule, VAEModelParams
from betamcmc.vae.schedules import beta_at, cosine_lr, cycle_index
from betamcmc.vae.split import BatchSplitter
from betamcmc.vae.step import batch_splitter_for, make_optimizer, train_step

CHECKPOINT_FILE = "resume.pt"
SERIES = ("beta", "recon", "kl", "elbo", "loss")
VALID_SERIES = ("neg_elbo", "kl", "mi", "au")


class TrainingInterrupted(BetamcmcError):
    """SIGTERM/SIGINT arrived; the state was checkpointed and a rerun resumes from it."""

    exit_code = 143


@dataclass
class TrainResult:
    model: TextVAE  # the best-validation model (eval mode)
    best_iteration: int
    best_valid_neg_elbo: float
    history: dict[str, list[float]]  # iteration + SERIES, every log_every iterations
    valid_history: dict[str, list[float]]  # iteration, neg_elbo
    resumed_from: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """Turn SIGTERM/SIGINT into a flag checked between iterations (main thread only)."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def handler(signum: int, frame: object) -> None:
        flag.set()

    for s in previous:
        signal.signal(s, handler)
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def build_model(model: VAEModelParams, vocab_size: int) -> TextVAE:
    """The text VAE of a ``pretrain.model`` block for a vocabulary of ``vocab_size`` words."""
    return TextVAE(VAEConfig(vocab_size=vocab_size, **model.model_dump()))


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


@dataclass
class TrainSettings:
    """What one run fixes before its first iteration."""

    params: PretrainParams
    runtime: RuntimeParams
    schedule_name: str
    schedule: Schedule  # params.schedules[schedule_name]
    seed: int
    valid: Sequence[Sequence[int]]
    stream: BatchStream
    device: torch.device
    precision: str  # resolved: fp32 | bf16
    checkpoint: Path | None  # the resumable checkpoint file
    fingerprint: str  # params + data digest a checkpoint must carry to be resumed
    stop: threading.Event | None = None
    on_log: Callable[[str, int, dict[str, float]], None] | None = None

    @property
    def where(self) -> str:
        return f"pretrain[{self.schedule_name}]"

    @property
    def total(self) -> int:
        return self.params.train.iterations


def _empty_series(series: Sequence[str]) -> dict[str, list[float]]:
    return {"iteration": [], **{s: [] for s in series}}


@dataclass
class TrainState:
    """What changes from one iteration to the next: the model, Adam, the curves and the best
    model so far. :meth:`save` and :meth:`load` are the resumable checkpoint (tensors and
    primitives only)."""

    model: TextVAE
    optimizer: torch.optim.Optimizer
    iteration: int = 0  # iterations done
    history: dict[str, list[float]] = field(default_factory=lambda: _empty_series(SERIES))
    valid_history: dict[str, list[float]] = field(
        default_factory=lambda: _empty_series(VALID_SERIES)
    )
    window: dict[str, float] = field(default_factory=lambda: dict.fromkeys(SERIES, 0.0))
    window_n: int = 0  # iterations summed in ``window`` since the last curve point
    best_state: dict[str, torch.Tensor] | None = None
    best_iteration: int = 0
    best_valid: float = math.inf

    @classmethod
    def start(
        cls, params: PretrainParams, vocab_size: int, seed: int, device: torch.device
    ) -> TrainState:
        """A fresh model (initialized from ``seed``) on ``device`` and its optimizer."""
        torch.manual_seed(seed)
        model = build_model(params.model, vocab_size).to(device)
        return cls(model=model, optimizer=make_optimizer(model, params.train.lr))

    def save(self, path: Path, fingerprint: str) -> None:
        """Write the checkpoint atomically, with torch's RNG state and ``fingerprint``."""
        state = {
            "fingerprint": fingerprint,
            "iteration": self.iteration,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": torch.get_rng_state(),
            "best_model": self.best_state or {},
            "best_iteration": self.best_iteration,
            "best_valid": self.best_valid,
            "history": self.history,
            "valid_history": self.valid_history,
            "window": self.window,
            "window_n": self.window_n,
        }
        _atomic_save(state, path)

    def load(self, path: Path, fingerprint: str, total: int, device: torch.device) -> bool:
        """Resume from the checkpoint at ``path`` when it exists, carries ``fingerprint`` and
        stopped part way through ``total`` iterations; returns whether it did."""
        if not path.exists():
            return False
        ckpt = torch.load(path, map_location=device, weights_only=True)
        if ckpt.get("fingerprint") != fingerprint or not 0 < ckpt["iteration"] < total:
            return False
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["rng"].cpu())
        self.best_state = ckpt["best_model"] or None
        self.best_iteration, self.best_valid = ckpt["best_iteration"], ckpt["best_valid"]
        self.history, self.valid_history = ckpt["history"], ckpt["valid_history"]
        self.window, self.window_n = ckpt["window"], ckpt["window_n"]
        self.iteration = ckpt["iteration"]
        return True


def set_learning_rate(state: TrainState, settings: TrainSettings, iteration: int) -> None:
    """Fresh Adam (rate and moments) at each cycle start of a ``restart_lr`` schedule; the
    cosine rate of ``iteration`` under ``lr_schedule: cosine``."""
    schedule, total, train = settings.schedule, settings.total, settings.params.train
    if (
        getattr(schedule, "restart_lr", False)
        and iteration > 0
        and cycle_index(iteration, total, schedule.cycles)
        != cycle_index(iteration - 1, total, schedule.cycles)
    ):
        state.optimizer = make_optimizer(state.model, train.lr)
    if train.lr_schedule == "cosine":
        lr_cycles = settings.params.lr_cycles_of(settings.schedule_name)
        for group in state.optimizer.param_groups:
            group["lr"] = cosine_lr(iteration, total, train.lr, lr_cycles)


def run_iteration(
    state: TrainState, settings: TrainSettings, splitter: BatchSplitter | None
) -> None:
    """Train on the minibatch of iteration ``state.iteration``; add a curve point and validate
    when due."""
    iteration, total = state.iteration, settings.total
    set_learning_rate(state, settings, iteration)
    beta = beta_at(settings.schedule, iteration, total)
    ids, lengths = (t.to(settings.device, non_blocking=True) for t in settings.stream(iteration))
    out = train_step(
        state.model,
        state.optimizer,
        ids,
        lengths,
        beta,
        settings.params.train.clip,
        where=settings.where,
        iteration=iteration,
        splitter=splitter,
        precision=settings.precision,
    )
    recon, kl, loss = float(out["recon"]), float(out["kl"]), float(out["loss"])
    values = {"beta": beta, "recon": recon, "kl": kl, "elbo": -(recon + kl), "loss": loss}
    for key, value in values.items():
        state.window[key] += value
    state.window_n += 1
    state.iteration = done = iteration + 1
    if done % settings.runtime.log_every == 0 or done == total:
        add_curve_point(state, settings)
    if done % settings.params.train.eval_every == 0 or done == total:
        run_validation(state, settings)


def add_curve_point(state: TrainState, settings: TrainSettings) -> None:
    """Append the window means of :data:`SERIES` to the history and start a new window."""
    state.history["iteration"].append(state.iteration)
    for key in SERIES:
        state.history[key].append(state.window[key] / state.window_n)
    if settings.on_log is not None:
        point = {key: state.history[key][-1] for key in SERIES}
        settings.on_log("train", state.iteration, point)
    state.window, state.window_n = dict.fromkeys(SERIES, 0.0), 0


def run_validation(state: TrainState, settings: TrainSettings) -> None:
    """Measure :data:`VALID_SERIES` on the validation split and keep the best model by -ELBO."""
    evaluation = settings.params.eval
    values = validate(
        state.model,
        settings.valid,
        evaluation.batch_size,
        settings.seed,
        evaluation.active_threshold,
    )
    state.model.train()
    state.valid_history["iteration"].append(state.iteration)
    for key in VALID_SERIES:
        state.valid_history[key].append(values[key])
    if settings.on_log is not None:
        settings.on_log("valid", state.iteration, values)
    neg_elbo = values["neg_elbo"]
    if not math.isfinite(neg_elbo):
        raise DivergenceError(
            f"{settings.where}: validation -ELBO is {neg_elbo} at iteration {state.iteration - 1}"
        )
    if neg_elbo < state.best_valid:
        state.best_valid, state.best_iteration = neg_elbo, state.iteration
        state.best_state = {k: v.detach().clone() for k, v in state.model.state_dict().items()}


def checkpoint_or_stop(state: TrainState, settings: TrainSettings) -> None:
    """Save the checkpoint every ``checkpoint_every`` iterations; on a stop request save it and
    raise :class:`TrainingInterrupted` (neither after the last iteration)."""
    done, total = state.iteration, settings.total
    interrupted = settings.stop is not None and settings.stop.is_set()
    due = done % settings.runtime.checkpoint_every == 0 or interrupted
    if done < total and due and settings.checkpoint is not None:
        state.save(settings.checkpoint, settings.fingerprint)
    if interrupted and done < total:
        raise TrainingInterrupted(
            f"{settings.where}: interrupted after iteration {done}/{total}; "
            f"checkpoint saved, rerun to resume"
        )


def train_vae(
    train: Sequence[Sequence[int]],
    valid: Sequence[Sequence[int]],
    vocab_size: int,
    params: PretrainParams,
    runtime: RuntimeParams,
    schedule_name: str,
    seed: int,
    resume_dir: str | Path | None = None,
    fingerprint: str = "",
    stop: threading.Event | None = None,
    device: torch.device | str = "cpu",
    on_log: Callable[[str, int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train one VAE under ``params.schedules[schedule_name]``; see the module docstring.
    ``runtime``: checkpoint and curve-point intervals (``checkpoint_every``, ``log_every``) and
    the training step's ``precision`` (resolved here for ``device``).

    ``resume_dir``: where the resumable checkpoint lives; it is reused only when its
    ``fingerprint`` (params + data digest) matches. ``on_log(kind, iteration, values)``: called
    with ``kind="train"`` every ``log_every`` iterations (window means of :data:`SERIES`) and
    ``kind="valid"`` at every evaluation (:data:`VALID_SERIES`), for progress lines and live
    MLflow metrics.
    """
    if not train or not valid:
        raise BetamcmcError("pretrain needs non-empty train and valid splits")
    device = torch.device(device)
    settings = TrainSettings(
        params=params,
        runtime=runtime,
        schedule_name=schedule_name,
        schedule=params.schedules[schedule_name],
        seed=seed,
        valid=valid,
        stream=BatchStream(train, params.train.batch_size, seed),
        device=device,
        precision=resolve_precision(runtime.precision, device.type),
        checkpoint=Path(resume_dir) / CHECKPOINT_FILE if resume_dir is not None else None,
        fingerprint=fingerprint,
        stop=stop,
        on_log=on_log,
    )
    if device.type == "cpu":
        # no page faults on each step's fresh 10 MB tensors (betamcmc.core.heap)
        keep_freed_memory()
    state = TrainState.start(params, vocab_size, seed, device)
    if settings.checkpoint is not None:
        state.load(settings.checkpoint, fingerprint, settings.total, device)
    resumed_from = state.iteration
    state.model.train()
    with batch_splitter_for(device) or contextlib.nullcontext() as splitter:
        while state.iteration < settings.total:
            run_iteration(state, settings, splitter)
            checkpoint_or_stop(state, settings)
    return best_result(state, settings, resumed_from)


def best_result(state: TrainState, settings: TrainSettings, resumed_from: int) -> TrainResult:
    """The finished run's result, its model set to the best-validation weights (eval mode)."""
    assert state.best_state is not None
    state.model.load_state_dict(state.best_state)
    state.model.eval()
    return TrainResult(
        model=state.model,
        best_iteration=state.best_iteration,
        best_valid_neg_elbo=state.best_valid,
        history=state.history,
        valid_history=state.valid_history,
        resumed_from=resumed_from,
        extra={"precision": settings.precision},
    )


def clear_checkpoint(resume_dir: str | Path) -> None:
    """Remove a finished run's resumable checkpoint."""
    path = Path(resume_dir) / CHECKPOINT_FILE
    if path.exists():
        path.unlink()
