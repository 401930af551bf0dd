"""The fused output layer + cross-entropy equals the unfused one: values and every gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from betamcmc.vae.linear_ce import linear_nll


def _inputs(n: int = 37, h: int = 6, v: int = 11, bias: bool = True):
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(n, h, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(v, h, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(v, generator=gen, dtype=torch.float64, requires_grad=True) if bias else None
    target = torch.randint(0, v, (n,), generator=gen)
    return hidden, weight, b, target


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("chunk", [1, 5, 256])
@pytest.mark.parametrize("upstream", ["mean", "weighted"])
def test_matches_unfused(bias, chunk, upstream):
    hidden, weight, b, target = _inputs(bias=bias)
    gen = torch.Generator().manual_seed(1)
    weights = torch.rand(hidden.size(0), generator=gen, dtype=torch.float64)

    def loss_of(nll):
        return nll.mean() if upstream == "mean" else (nll * weights).sum()

    fused = linear_nll(hidden, weight, b, target, chunk)
    grads_fused = torch.autograd.grad(loss_of(fused), [hidden, weight, *([b] if bias else [])])
    ref = F.cross_entropy(F.linear(hidden, weight, b), target, reduction="none")
    grads_ref = torch.autograd.grad(loss_of(ref), [hidden, weight, *([b] if bias else [])])
    torch.testing.assert_close(fused, ref)
    for gf, gr in zip(grads_fused, grads_ref, strict=True):
        torch.testing.assert_close(gf, gr)


def test_no_grad_forward_and_gradcheck():
    hidden, weight, b, target = _inputs(n=9, h=3, v=5)
    with torch.no_grad():
        torch.testing.assert_close(
            linear_nll(hidden, weight, b, target, 4),
            F.cross_entropy(F.linear(hidden, weight, b), target, reduction="none"),
        )
    assert torch.autograd.gradcheck(
        lambda h, w, bb: linear_nll(h, w, bb, target, 4), (hidden, weight, b)
    )


def test_bf16_autocast_matches_within_bf16_precision():
    hidden, weight, b, target = _inputs(n=40, h=16, v=30)
    hidden, weight, b = (t.detach().float().requires_grad_() for t in (hidden, weight, b))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused = linear_nll(hidden, weight, b, target, 7)
    assert fused.dtype == torch.float32
    fused.mean().backward()
    grads = [t.grad.clone() for t in (hidden, weight, b)]
    for t in (hidden, weight, b):
        t.grad = None
    ref = F.cross_entropy(F.linear(hidden, weight, b), target, reduction="none")
    ref.mean().backward()
    torch.testing.assert_close(fused, ref, rtol=0.05, atol=0.1)
    for got, want in zip(grads, (hidden.grad, weight.grad, b.grad), strict=True):
        assert got.dtype == want.dtype
        torch.testing.assert_close(got, want, rtol=0.05, atol=0.02)
