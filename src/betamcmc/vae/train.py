"""Training loop of the text VAE under one beta schedule: resumable, deterministic, divergence-safe.

- Iteration t (0-based) trains on one length-bucketed minibatch with loss recon + beta_t * KL
  (:mod:`betamcmc.vae.schedules`), Adam (fused), global gradient-norm clipping; the learning rate
  is constant or a cosine restarted every lr cycle (``pretrain.train.lr_schedule``; the cycles:
  :meth:`~betamcmc.vae.params.PretrainParams.lr_cycles_of`). One update is
  :func:`train_step`, the same function the throughput benchmark times.
- Threads: on a CPU with 2 or more intra-op threads each batch is split across them
  (:mod:`betamcmc.vae.split`: the same loss, random draws and gradient; faster than splitting
  every operator at this model's sizes). On a CPU, glibc's heap keeps the memory the steps free
  (:mod:`betamcmc.heap`): no page faults on each step's fresh multi-MB tensors.
- Device: the model and every batch live on ``device`` (``cuda`` when ``device: auto`` finds a
  GPU).
- Precision (``runtime.precision``, resolved by :func:`betamcmc.runner.resolve_precision`):
  ``bf16`` runs the training step's forward pass under bf16 autocast, on a CPU as on a GPU: the
  matrix products and LSTM kernels in bf16, the weights, Adam and the latent statistics (KL,
  reparameterization) in fp32, the softmax of the fused output layer in fp32. Validation and
  the final evaluation always run in fp32, so the reported metrics measure the trained model,
  not the arithmetic. ``auto`` picks bf16 only where the hardware has it natively (AVX-512 BF16,
  AMX, CUDA bf16). Within one precision a CPU run is deterministic.
- Minibatches: each epoch shuffles the training sentences with a generator seeded by
  ``(seed, epoch)``, sorts them by length (stable, so ties stay shuffled), cuts batches and
  shuffles the batch order. Batch ``t`` is therefore a pure function of ``(seed, t)``, which is
  what makes resuming exact.
- Every ``eval_every`` iterations the validation -ELBO (beta = 1) is measured, with the KL,
  mutual information and active units of the validation codes (the curves that show whether and
  when the code collapses); the best model by -ELBO is kept (Fu et al. report the
  best-validation model).
- A resumable checkpoint (model, Adam state, torch RNG state, best model, history) is written
  every ``checkpoint_every`` iterations and when SIGTERM/SIGINT arrives (then the run stops with
  :class:`TrainingInterrupted`). A rerun with the same params resumes from it and reaches the same
  final weights as an uninterrupted run (CPU). It holds only tensors and primitives, so it loads
  with ``torch.load(..., weights_only=True)``.
- A non-finite loss or gradient norm raises :class:`~betamcmc.errors.DivergenceError` naming the
  iteration.
"""

from __future__ import annotations

import contextlib
import functools
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

from betamcmc.errors import BetamcmcError, DivergenceError
from betamcmc.heap import keep_freed_memory
from betamcmc.params import RuntimeParams
from betamcmc.runner import resolve_precision
from betamcmc.vae.evaluate import validate
from betamcmc.vae.model import TextVAE, VAEConfig, pad_batch
from betamcmc.vae.params import PretrainParams
from betamcmc.vae.schedules import beta_at, cosine_lr, cycle_index
from betamcmc.vae.split import BatchSplitter

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


def epoch_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int
) -> list[list[int]]:
    """The minibatches (lists of sentence indices) of one epoch, bucketed by length."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    shuffled = torch.randperm(len(lengths), generator=gen).tolist()
    by_length = sorted(shuffled, key=lambda i: lengths[i])  # stable: ties stay shuffled
    batches = [by_length[i : i + batch_size] for i in range(0, len(by_length), batch_size)]
    order = torch.randperm(len(batches), generator=gen).tolist()
    return [batches[i] for i in order]


class BatchStream:
    """Batch of iteration t for any t (epochs recomputed lazily), for exact resume."""

    def __init__(self, sentences: Sequence[Sequence[int]], batch_size: int, seed: int):
        self.sentences = sentences
        self.lengths = [len(s) for s in sentences]
        self.batch_size, self.seed = batch_size, seed
        self.per_epoch = math.ceil(len(sentences) / batch_size)
        self._epoch, self._batches = -1, []

    def __call__(self, iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, pos = divmod(iteration, self.per_epoch)
        if epoch != self._epoch:
            self._epoch = epoch
            self._batches = epoch_batches(self.lengths, self.batch_size, self.seed, epoch)
        return pad_batch([list(self.sentences[i]) for i in self._batches[pos]])


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


def build_model(params: PretrainParams, vocab_size: int) -> TextVAE:
    m = params.model
    return TextVAE(
        VAEConfig(
            vocab_size=vocab_size,
            emb_dim=m.emb_dim,
            hidden_dim=m.hidden_dim,
            latent_dim=m.latent_dim,
            bidirectional=m.bidirectional,
            z_to_decoder=m.z_to_decoder,
            dropout=m.dropout,
            word_dropout=m.word_dropout,
        )
    )


def make_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Adam:
    """Adam with the fused (one kernel for all parameters) implementation: same update rule,
    several times faster than the per-parameter loop on CPU for a 10k-word vocabulary."""
    return torch.optim.Adam(model.parameters(), lr=lr, fused=True)


def autocast_for(device: torch.device | str) -> contextlib.AbstractContextManager:
    """The dialog CVAE's rule: bf16 autocast on a CUDA card that supports it; fp32 (no autocast)
    everywhere else. (``pretrain`` follows ``runtime.precision``: :func:`precision_autocast`.)"""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def precision_autocast(
    device: torch.device | str, precision: str
) -> contextlib.AbstractContextManager:
    """A fresh context for one forward pass: bf16 autocast on ``device``'s type for a resolved
    ``precision`` of ``bf16``, none for ``fp32``. Autocast is per thread, so the batch split
    enters one in each of its threads (:meth:`BatchSplitter.forward_backward`)."""
    if precision == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    if precision != "fp32":
        raise ValueError(f"precision must be a resolved fp32 or bf16 (got {precision!r})")
    return contextlib.nullcontext()


def train_step(
    model: TextVAE,
    optimizer: torch.optim.Optimizer,
    ids: torch.Tensor,
    lengths: torch.Tensor,
    beta: float,
    clip: float,
    where: str = "pretrain",
    iteration: int = 0,
    splitter: BatchSplitter | None = None,
    precision: str = "fp32",
) -> dict[str, torch.Tensor]:
    """One minibatch update: forward (under bf16 autocast for ``precision`` bf16), backward,
    clipping, Adam.

    ``splitter``: run the forward and backward pass as row blocks of the batch on its threads
    (:mod:`betamcmc.vae.split`: the same loss and gradient, CPU only). ``precision``: a resolved
    ``fp32`` or ``bf16`` (:func:`betamcmc.runner.resolve_precision`).

    Raises :class:`DivergenceError` naming ``where`` and the iteration, before the parameters
    are touched, when the loss or the gradient norm is not finite. Returns the loss parts
    (detached tensors: reading them synchronizes a GPU, so callers read them only when logging).
    """
    grads = None
    autocast = functools.partial(precision_autocast, ids.device, precision)
    if splitter is not None:
        out, grads = splitter.forward_backward(model, ids, lengths, beta, autocast)
    else:
        with autocast():
            out = model(ids, lengths, beta)
    loss = out["loss"]
    if not torch.isfinite(loss):
        raise DivergenceError(
            f"{where}: loss is {float(loss.detach())} at iteration {iteration} "
            f"(beta {beta:.3g}); lower pretrain.train.lr or pretrain.train.clip"
        )
    optimizer.zero_grad(set_to_none=True)
    if grads is None:
        loss.backward()
    else:
        for p, g in zip((p for p in model.parameters() if p.requires_grad), grads, strict=True):
            p.grad = g
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    if not torch.isfinite(grad_norm):
        raise DivergenceError(
            f"{where}: gradient norm is {float(grad_norm)} at iteration {iteration} "
            f"(beta {beta:.3g}); lower pretrain.train.lr"
        )
    optimizer.step()
    return {"loss": loss.detach(), "recon": out["recon"], "kl": out["kl"]}


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def batch_splitter_for(device: torch.device) -> BatchSplitter | None:
    """The batch split over this process's intra-op threads (:mod:`betamcmc.vae.split`) on a
    CPU with 2 or more of them (``runtime.threads``); None on one thread or on a GPU."""
    threads = torch.get_num_threads()
    return BatchSplitter(threads) if device.type == "cpu" and threads >= 2 else None


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
    on_iteration: Callable[[int, TextVAE], None] | None = None,
    device: torch.device | str = "cpu",
    on_log: Callable[[str, int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train one VAE under ``params.schedules[schedule_name]``; see the module docstring.
    ``runtime``: checkpoint and curve-point intervals (``checkpoint_every``, ``log_every``) and
    the training step's ``precision`` (resolved here for ``device``).

    ``resume_dir``: where the resumable checkpoint lives; it is reused only when its
    ``fingerprint`` (params + data digest) matches. ``on_iteration``: test hook, called before
    each iteration's forward pass. ``on_log(kind, iteration, values)``: called with
    ``kind="train"`` every ``log_every`` iterations (window means of :data:`SERIES`) and
    ``kind="valid"`` at every evaluation (:data:`VALID_SERIES`), for progress lines and live
    MLflow metrics.
    """
    if not train or not valid:
        raise BetamcmcError("pretrain needs non-empty train and valid splits")
    schedule = params.schedules[schedule_name]
    tp = params.train
    total = tp.iterations
    device = torch.device(device)
    precision = resolve_precision(runtime.precision, device.type)
    if device.type == "cpu":
        keep_freed_memory()  # no page faults on each step's fresh 10 MB tensors (betamcmc.heap)
    torch.manual_seed(seed)
    model = build_model(params, vocab_size).to(device)
    optimizer = make_optimizer(model, tp.lr)
    stream = BatchStream(train, tp.batch_size, seed)
    history: dict[str, list[float]] = {"iteration": [], **{s: [] for s in SERIES}}
    valid_history: dict[str, list[float]] = {"iteration": [], **{s: [] for s in VALID_SERIES}}
    window = dict.fromkeys(SERIES, 0.0)
    window_n = 0
    best_state: dict[str, torch.Tensor] | None = None
    best_iteration, best_valid = 0, math.inf
    start = 0
    ckpt_path = Path(resume_dir) / CHECKPOINT_FILE if resume_dir is not None else None

    if ckpt_path is not None and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
        if ckpt.get("fingerprint") == fingerprint and 0 < ckpt["iteration"] < total:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            torch.set_rng_state(ckpt["rng"].cpu())
            best_state = ckpt["best_model"] or None
            best_iteration, best_valid = ckpt["best_iteration"], ckpt["best_valid"]
            history, valid_history = ckpt["history"], ckpt["valid_history"]
            window, window_n = ckpt["window"], ckpt["window_n"]
            start = ckpt["iteration"]

    def checkpoint(done: int) -> None:
        if ckpt_path is None:
            return
        _atomic_save(
            {
                "fingerprint": fingerprint,
                "iteration": done,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": torch.get_rng_state(),
                "best_model": best_state or {},
                "best_iteration": best_iteration,
                "best_valid": best_valid,
                "history": history,
                "valid_history": valid_history,
                "window": window,
                "window_n": window_n,
            },
            ckpt_path,
        )

    restart_lr = getattr(schedule, "restart_lr", False)
    lr_cycles = params.lr_cycles_of(schedule_name)  # the schedule's own, else train.lr_cycles
    model.train()
    splitter = batch_splitter_for(device)
    try:
        for it in range(start, total):
            if (
                restart_lr
                and it > 0
                and cycle_index(it, total, schedule.cycles)
                != cycle_index(it - 1, total, schedule.cycles)
            ):
                optimizer = make_optimizer(model, tp.lr)  # fresh lr and moments
            if tp.lr_schedule == "cosine":
                for group in optimizer.param_groups:
                    group["lr"] = cosine_lr(it, total, tp.lr, lr_cycles)
            if on_iteration is not None:
                on_iteration(it, model)
            beta = beta_at(schedule, it, total)
            ids, lengths = (t.to(device, non_blocking=True) for t in stream(it))
            out = train_step(
                model,
                optimizer,
                ids,
                lengths,
                beta,
                tp.clip,
                f"pretrain[{schedule_name}]",
                it,
                splitter,
                precision,
            )
            recon, kl, loss = float(out["recon"]), float(out["kl"]), float(out["loss"])
            for key, value in (("beta", beta), ("recon", recon), ("kl", kl), ("elbo", -(recon + kl)),
                               ("loss", loss)):  # fmt: skip
                window[key] += value
            window_n += 1
            done = it + 1
            if done % runtime.log_every == 0 or done == total:
                history["iteration"].append(done)
                for key in SERIES:
                    history[key].append(window[key] / window_n)
                if on_log is not None:
                    on_log("train", done, {key: history[key][-1] for key in SERIES})
                window, window_n = dict.fromkeys(SERIES, 0.0), 0
            if done % tp.eval_every == 0 or done == total:
                values = validate(
                    model, valid, params.eval.batch_size, seed, params.eval.active_threshold
                )
                model.train()
                valid_history["iteration"].append(done)
                for key in VALID_SERIES:
                    valid_history[key].append(values[key])
                if on_log is not None:
                    on_log("valid", done, values)
                neg_elbo = values["neg_elbo"]
                if not math.isfinite(neg_elbo):
                    raise DivergenceError(
                        f"pretrain[{schedule_name}]: validation -ELBO is {neg_elbo} at iteration {it}"
                    )
                if neg_elbo < best_valid:
                    best_valid, best_iteration = neg_elbo, done
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            interrupted = stop is not None and stop.is_set()
            if done < total and (done % runtime.checkpoint_every == 0 or interrupted):
                checkpoint(done)
            if interrupted and done < total:
                raise TrainingInterrupted(
                    f"pretrain[{schedule_name}]: interrupted after iteration {done}/{total}; "
                    f"checkpoint saved, rerun to resume"
                )
    finally:
        if splitter is not None:
            splitter.close()

    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(
        model, best_iteration, best_valid, history, valid_history, resumed_from=start,
        extra={"precision": precision},
    )  # fmt: skip


def clear_checkpoint(resume_dir: str | Path) -> None:
    """Remove a finished run's resumable checkpoint."""
    path = Path(resume_dir) / CHECKPOINT_FILE
    if path.exists():
        path.unlink()
