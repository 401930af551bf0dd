"""Data parallelism inside one process: a training batch split across CPU threads.

On a few CPU cores the text VAE's step gains little from intra-op threads: at batch 32 an LSTM
time step (32 x 256) is too small to split and the output layer's GEMMs gain 1.5-1.7x from a
second thread, so two intra-op threads reach 51-55 % of the 2048² GEMM peak where one thread
reaches 64-69 % (``bench/pretrain_throughput.py``, docs/results/pretrain.md). Splitting the batch
instead - one part per thread, each part's forward and backward on its own thread with one
intra-op thread - keeps every operator at its one-thread efficiency.

:class:`BatchSplitter` computes the same loss and gradient as one pass over the whole batch:

- the random draws (reparameterization noise, word dropout, dropout masks) are taken for the
  whole batch on the calling thread, in the order, shapes and kernels of the unsplit forward pass
  (:meth:`betamcmc.vae.model.TextVAE.draw_noise`): they are the very numbers the unsplit step
  would draw, and the global generator advances exactly as it would (checkpoints resume exactly);
- part ``k`` (rows ``n k / P`` to ``n (k + 1) / P``) computes ``share_k * loss_k``, ``share_k``
  its fraction of the batch, so the parts' losses add up to the batch mean;
- the parts' gradients (``torch.autograd.grad``) are summed in part order: the run is
  deterministic, and differs from the unsplit pass only by the order of floating-point sums.

The pool's threads set their own intra-op thread count to 1 when they start; the calling
thread's count (used by evaluation between training steps) is restored afterwards. Autocast
(bf16, ``runtime.precision``) is per thread too: each part enters the context the caller passes.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import threading
from collections.abc import Callable

import torch
from torch import Tensor

from betamcmc.vae.model import TextVAE


class BatchSplitter:
    """Runs the forward and backward pass of a batch as ``parts`` row blocks on ``parts`` threads."""

    def __init__(self, parts: int):
        if parts < 2:
            raise ValueError(f"a batch split needs at least 2 parts (got {parts})")
        self.parts = parts
        caller_threads = torch.get_num_threads()
        started = threading.Barrier(parts + 1)

        def one_intra_op_thread() -> None:
            # torch reads the process-wide count into a thread on the thread's first parallel
            # op; do that read now, so the 1 set next is not overwritten by the caller's count
            torch.get_num_threads()
            torch.set_num_threads(1)
            started.wait(timeout=60)  # every thread is up before the caller restores its count

        self._pool = concurrent.futures.ThreadPoolExecutor(
            parts, thread_name_prefix="vae-part", initializer=one_intra_op_thread
        )
        for _ in range(parts):  # a new thread per task while none is idle: all start now
            self._pool.submit(lambda: None)
        started.wait(timeout=60)
        torch.set_num_threads(caller_threads)

    def close(self) -> None:
        self._pool.shutdown()

    def __enter__(self) -> BatchSplitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def forward_backward(
        self,
        model: TextVAE,
        ids: Tensor,
        lengths: Tensor,
        beta: float,
        autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    ) -> tuple[dict[str, Tensor], list[Tensor | None]]:
        """The batch's loss parts (detached, as ``model(ids, lengths, beta)`` returns them) and
        the gradient of its loss for each parameter of ``model`` that requires one (None where
        the loss does not depend on it). Parameters and their ``.grad`` are not touched.
        ``autocast``: a fresh context per part for its forward pass (autocast state is per
        thread, so the caller's would not reach the pool's threads)."""
        n = ids.shape[0]
        parts = min(self.parts, n)
        noise = model.draw_noise(ids, lengths)
        params = [p for p in model.parameters() if p.requires_grad]
        bounds = [n * k // parts for k in range(parts + 1)]

        def part(a: int, b: int) -> tuple[list[Tensor], tuple[Tensor | None, ...]]:
            share = (b - a) / n
            with autocast():
                out = model(ids[a:b], lengths[a:b], beta, noise=noise.rows(a, b))
            grads = torch.autograd.grad(out["loss"] * share, params, allow_unused=True)
            return [out[key].detach() * share for key in ("loss", "recon", "kl")], grads

        futures = [self._pool.submit(part, a, b) for a, b in zip(bounds, bounds[1:], strict=False)]
        results = [f.result() for f in futures]  # in part order: a fixed summation order
        per_part = zip(*(r[0] for r in results), strict=True)  # (loss, recon, kl) of each part
        loss, recon, kl = (functools.reduce(torch.add, parts) for parts in per_part)
        grads = [_sum_in_order(g) for g in zip(*(r[1] for r in results), strict=True)]
        return {"loss": loss, "recon": recon, "kl": kl}, grads


def _sum_in_order(grads: tuple[Tensor | None, ...]) -> Tensor | None:
    present = [g for g in grads if g is not None]
    return functools.reduce(torch.add, present) if present else None
