"""Output layer + cross-entropy in one pass over row chunks: ``-log softmax(h W^T + b)[target]``.

With a large vocabulary the logits ``[tokens, V]`` dominate a language model's memory traffic:
PyTorch's ``linear`` -> ``cross_entropy`` writes them, reads them for the log-softmax, writes the
log-probabilities, then in backward fills a dense ``[tokens, V]`` gradient, reads it back through
the log-softmax backward and reads it again for the bias gradient: about ten passes over a tensor
of tens of MB per minibatch (the PTB configuration: ~700 tokens x 10,002 words x 4 bytes).

:func:`linear_nll` computes the same numbers chunk by chunk (``chunk`` rows at a time, so the
chunk's logits stay in cache): logits, log-sum-exp and the negative log-likelihood, and, when a
gradient is needed, the gradient with respect to the logits ``softmax - onehot`` right away, turned
at once into the gradients of the hidden states, the weight and the bias by matrix products. The
logits are never stored. Backward then only scales them by the incoming per-token gradient.

The weight and bias gradients are sums over tokens, so they can be scaled afterwards only when
every token receives the same incoming gradient; that is the case whenever the per-token losses
are summed or averaged into the training loss (:meth:`TextVAE.forward`). For any other incoming
gradient, backward recomputes the chunks with the exact per-token weights (correct, slower).
The matrix products are the same three as unfused (logits, dL/dh, dL/dW), so FLOPs are unchanged.
Under autocast (bf16 on a GPU) the products run in the autocast dtype, the softmax in fp32.
"""

from __future__ import annotations

import torch
from torch import Tensor

CHUNK_ROWS = 256


def _acc(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype: at least fp32 (fp64 stays fp64)."""
    return torch.promote_types(dtype, torch.float32)


def _logits(h: Tensor, weight_c: Tensor, bias: Tensor | None) -> Tensor:
    """Logits of one chunk in at least fp32; the product runs in ``weight_c``'s dtype (bf16
    under autocast). In fp32 the bias is added by the product itself (``addmm``: one pass)."""
    acc = _acc(weight_c.dtype if bias is None else bias.dtype)
    if weight_c.dtype == acc and h.dtype == acc:
        return torch.addmm(bias, h, weight_c.t()) if bias is not None else h @ weight_c.t()
    logits = (h.to(weight_c.dtype) @ weight_c.t()).to(acc)
    return logits.add_(bias.to(acc)) if bias is not None else logits


def _chunk_grads(
    h: Tensor, weight_c: Tensor, bias: Tensor | None, target: Tensor
) -> tuple[Tensor, Tensor]:
    """Per-token NLL ``[n]`` and ``softmax - onehot`` ``[n, V]`` of one row chunk: one
    log-softmax kernel, then the probabilities in place (the logits are not needed again)."""
    logp = torch.log_softmax(_logits(h, weight_c, bias), dim=1)
    nll = -logp.gather(1, target.unsqueeze(1)).squeeze(1)
    probs = logp.exp_()
    probs[torch.arange(h.size(0), device=h.device), target] -= 1.0
    return nll, probs


class _LinearNLL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, target, chunk, compute_dtype):  # type: ignore[override]
        with torch.autocast(hidden.device.type, enabled=False):
            weight_c = weight.to(compute_dtype)
            n = hidden.size(0)
            acc = _acc(weight.dtype)
            nll = torch.empty(n, device=hidden.device, dtype=acc)
            need_grad = any(ctx.needs_input_grad[:3])
            grad_h = torch.empty_like(hidden) if need_grad else None
            grad_w = torch.zeros_like(weight, dtype=acc) if need_grad else None
            grad_b = torch.zeros_like(bias, dtype=acc) if (need_grad and bias is not None) else None
            for lo in range(0, n, chunk):
                h, t = hidden[lo : lo + chunk], target[lo : lo + chunk]
                if not need_grad:
                    logits = _logits(h, weight_c, bias)
                    lse = torch.logsumexp(logits, dim=1)
                    nll[lo : lo + chunk] = lse - logits.gather(1, t.unsqueeze(1)).squeeze(1)
                    continue
                nll[lo : lo + chunk], g = _chunk_grads(h, weight_c, bias, t)
                g_c = g.to(compute_dtype)
                grad_h[lo : lo + chunk] = g_c @ weight_c
                grad_w.add_((g_c.t() @ h.to(compute_dtype)).to(acc))
                if grad_b is not None:
                    grad_b.add_(g.sum(0))
        ctx.chunk, ctx.compute_dtype = chunk, compute_dtype
        ctx.has_bias = bias is not None
        ctx.save_for_backward(hidden, weight, bias, target, grad_h, grad_w, grad_b)
        return nll

    @staticmethod
    def backward(ctx, grad_nll):  # type: ignore[override]
        hidden, weight, bias, target, grad_h, grad_w, grad_b = ctx.saved_tensors
        g = grad_nll.contiguous().to(_acc(weight.dtype))
        d_h = grad_h * g.unsqueeze(1).to(grad_h.dtype)
        if g.numel() and bool((g == g[0]).all()):  # summed or averaged losses: scale the sums
            d_w = (grad_w * g[0]).to(weight.dtype)
            d_b = (grad_b * g[0]).to(bias.dtype) if ctx.has_bias else None
        else:  # any other weighting: recompute with the exact per-token factors
            weight_c = weight.to(ctx.compute_dtype)
            d_w = torch.zeros_like(weight, dtype=g.dtype)
            d_b = torch.zeros_like(bias, dtype=g.dtype) if ctx.has_bias else None
            for lo in range(0, hidden.size(0), ctx.chunk):
                h, t = hidden[lo : lo + ctx.chunk], target[lo : lo + ctx.chunk]
                _, probs = _chunk_grads(h, weight_c, bias, t)
                probs.mul_(g[lo : lo + ctx.chunk].unsqueeze(1))
                d_w.add_((probs.to(ctx.compute_dtype).t() @ h.to(ctx.compute_dtype)).to(g.dtype))
                if d_b is not None:
                    d_b.add_(probs.sum(0))
            d_w = d_w.to(weight.dtype)
            d_b = d_b.to(bias.dtype) if d_b is not None else None
        return d_h, d_w, d_b, None, None, None


def linear_nll(
    hidden: Tensor, weight: Tensor, bias: Tensor | None, target: Tensor, chunk: int | None = None
) -> Tensor:
    """``F.cross_entropy(F.linear(hidden, weight, bias), target, reduction="none")``, fused.

    ``hidden [N, H]``, ``weight [V, H]``, ``bias [V]`` or None, ``target [N]`` (class ids); returns
    the per-token negative log-likelihood ``[N]`` (at least fp32). Under autocast (bf16 on a GPU) the
    matrix products run in the autocast dtype and the softmax in fp32.
    """
    device = hidden.device.type
    compute_dtype = (
        torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype
    )
    return _LinearNLL.apply(hidden, weight, bias, target, chunk or CHUNK_ROWS, compute_dtype)
