"""One training update of the text VAE: the optimizer, the precision and :func:`train_step`.

- Update: forward, loss recon + beta * KL, backward, global gradient-norm clipping, Adam (fused).
  The training loop (:mod:`betamcmc.vae.train`), the toy experiment
  (:func:`betamcmc.results.vae_figures.toy_experiment`) and the throughput benchmark run this
  function.
- Threads: on a CPU with 2 or more intra-op threads each batch is split across them
  (:mod:`betamcmc.vae.split`: the same loss, random draws and gradient; faster than splitting
  every operator at this model's sizes).
- Precision (``runtime.precision``, resolved by :func:`betamcmc.core.runner.resolve_precision`):
  ``bf16`` runs the training step's forward pass under bf16 autocast, on a CPU as on a GPU: the
  matrix products and LSTM kernels in bf16, the weights, Adam and the latent statistics (KL,
  reparameterization) in fp32, the softmax of the fused output layer in fp32. Validation and
  the final evaluation always run in fp32, so the reported metrics measure the trained model,
  not the arithmetic. ``auto`` picks bf16 only where the hardware has it natively (AVX-512 BF16,
  AMX, CUDA bf16). Within one precision a CPU run is deterministic.
- A non-finite loss or gradient norm raises :class:`~betamcmc.core.errors.DivergenceError` naming the
  iteration, before the parameters are touched.
"""

from __future__ import annotations

import contextlib
import functools

import torch

from betamcmc.core.errors import DivergenceError
from betamcmc.vae.model import TextVAE
from betamcmc.vae.split import BatchSplitter


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
    ``fp32`` or ``bf16`` (:func:`betamcmc.core.runner.resolve_precision`).

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


def batch_splitter_for(device: torch.device) -> BatchSplitter | None:
    """The batch split over this process's intra-op threads (:mod:`betamcmc.vae.split`) on a
    CPU with 2 or more of them (``runtime.threads``); None on one thread or on a GPU."""
    threads = torch.get_num_threads()
    return BatchSplitter(threads) if device.type == "cpu" and threads >= 2 else None
