"""Flat parameters: a model whose parameters and gradients are views into two flat vectors.

The samplers and the messages then work on one vector (a few kernels per update, one message per
exchange) while the model's forward and backward are untouched: ``backward`` accumulates into the
``.grad`` views, i.e. into ``grad``. Every process of a run builds its model after
``torch.manual_seed(seed)``, so all start from the same parameters.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class FlatModel:
    """``model`` with ``theta`` (parameters) and ``grad`` as single contiguous tensors."""

    def __init__(self, model: nn.Module, device: str = "cpu"):
        self.model = model.to(device)
        params = list(self.model.parameters())
        self.names = [name for name, _ in self.model.named_parameters()]
        self.shapes = [list(p.shape) for p in params]
        self.dim = sum(p.numel() for p in params)
        self.theta = torch.empty(self.dim, device=device)
        self.grad = torch.zeros(self.dim, device=device)
        offset = 0
        for p in params:
            n = p.numel()
            self.theta[offset : offset + n].copy_(p.detach().reshape(-1))
            p.data = self.theta[offset : offset + n].view_as(p)
            p.grad = self.grad[offset : offset + n].view_as(p)
            offset += n

    def param_layout(self) -> list[tuple[str, list[int]]]:
        return list(zip(self.names, self.shapes, strict=True))

    def load(self, flat: torch.Tensor) -> None:
        self.theta.copy_(flat)


def all_finite(vector: torch.Tensor) -> bool:
    """Is every element finite? A NaN or an inf anywhere makes the sum non-finite, so a finite
    sum settles it in one pass with no temporary; only a non-finite sum (which large finite
    values can also give, by overflow) is checked element by element. On a 75k-float vector
    this is ~5 us against ~150 us for ``isfinite(vector).all()``, which allocates a mask."""
    return math.isfinite(float(vector.sum())) or bool(torch.isfinite(vector).all())


def seed_for(seed: int, purpose: int, index: int) -> int:
    """Independent-looking generator seeds per (purpose, worker) from the run seed."""
    return (seed * 1_000_003 + purpose * 10_007 + index * 101) % (2**63 - 1)
