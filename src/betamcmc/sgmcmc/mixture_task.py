"""The 25-Gaussian target of cSG-MCMC as an engine task (task API: ``tasks.py``).

The "model" is one 2-D point ``x``; the engine samples it. :meth:`MixtureTask.minibatch_nll`
returns a scalar whose gradient with respect to ``x`` is the stochastic gradient of
``mixture.py``::

    U(x) + noise_std * xi . x      ->      grad U(x) + noise_std * xi,     xi ~ N(0, I)

with ``U = -log p`` and its gradient computed in closed form with a stable log-sum-exp (numpy:
no autograd graph per step; :meth:`MixtureTask.potential` is the same ``U`` in torch, and the
tests check the two gradients agree) and ``xi`` drawn from the worker's minibatch generator (seeded per run and rank by the engine), so a run is reproducible for its seed. The
task has ``n_train = 1``: the engine's ``N x`` scaling of the minibatch loss is the identity. The
engine also adds its Gaussian prior's gradient ``x / prior_std^2``; a stage makes it negligible
with a huge ``prior_std`` (``sgmcmc.cyclical.prior_std``, 1e4: a pull of 1e-8 x per unit step).

The start ``x0`` is uniform in ``[-init_box, init_box]^2``, drawn from torch's global RNG: the
engine seeds it with the run's seed before :meth:`build_model`, so every process (master and
workers) starts from the same point. The master never evaluates the task (the stage reads the
samples); :meth:`test_log_probs` returns ``log p(x)`` of the current point as a (1, 1) tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from betamcmc.sgmcmc.mixture import Mixture, grid_means


class MixturePoint(nn.Module):
    """One point ``x`` in the plane, started uniform in ``[-init_box, init_box]^2``."""

    def __init__(self, init_box: float):
        super().__init__()
        self.x = nn.Parameter((2.0 * torch.rand(2) - 1.0) * init_box)


@dataclass(frozen=True)
class MixtureTask:
    """Picklable description of the target (it crosses into every worker process); also its
    own ``task_factory`` (calling it returns itself: it holds no state)."""

    per_side: int
    spacing: float
    variance: float
    noise_std: float
    init_box: float
    means: np.ndarray = field(init=False, repr=False, compare=False)

    name: ClassVar[str] = "mixture25"
    n_train: ClassVar[int] = 1  # the engine's N x scaling is the identity

    def __post_init__(self) -> None:
        object.__setattr__(self, "means", grid_means(self.per_side, self.spacing))

    def __call__(self) -> MixtureTask:
        return self

    @property
    def test_targets(self) -> torch.Tensor:
        return torch.zeros(1, dtype=torch.long)  # unused: the stage evaluates no predictions

    @property
    def mixture(self) -> Mixture:
        """The same target in numpy (:mod:`betamcmc.sgmcmc.mixture`): metrics, figure."""
        return Mixture(means=self.means, variance=self.variance)

    def build_model(self) -> nn.Module:
        return MixturePoint(self.init_box)

    def to(self, device: str) -> MixtureTask:
        return self  # a 2-D point: the stage runs it on the CPU

    def potential(self, x: torch.Tensor) -> torch.Tensor:
        """``U(x) = -log p(x)`` of the equal-weight mixture, in torch (differentiable)."""
        means = torch.tensor(self.means, dtype=x.dtype, device=x.device)
        sq = ((x[None, :] - means) ** 2).sum(-1)
        log_norm = -math.log(len(means)) - math.log(2.0 * math.pi * self.variance)
        return -torch.logsumexp(log_norm - sq / (2.0 * self.variance), dim=0)

    def minibatch_nll(self, model: nn.Module, generator: torch.Generator) -> torch.Tensor:
        """``U(x) + noise_std * xi . x``, whose gradient is ``grad U(x) + noise_std * xi``.

        ``U`` and ``grad U`` come from :meth:`potential_and_grad` (numpy, no autograd graph:
        this is most of a step's cost); the returned scalar is linear in ``x`` with that slope,
        so ``backward()`` hands the engine exactly the stochastic gradient."""
        x = model.x
        xi = torch.randn(2, generator=generator, dtype=x.dtype)
        u, grad = self.potential_and_grad(x.detach().numpy().astype(np.float64))
        exact = torch.from_numpy(grad.astype(np.float32))
        noisy = exact + self.noise_std * xi
        return torch.dot(noisy, x) + (u - float(torch.dot(exact, x.detach())))

    def potential_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """``U(x)`` and ``grad U(x) = (x - sum_i r_i mu_i) / s^2`` at one point (numpy)."""
        means = self.means
        d = x[None, :] - means
        logits = -(d * d).sum(1) / (2.0 * self.variance)
        top = float(logits.max())
        e = np.exp(logits - top)
        z = float(e.sum())
        log_norm = -math.log(len(means)) - math.log(2.0 * math.pi * self.variance)
        return -(log_norm + top + math.log(z)), (x - (e / z) @ means) / self.variance

    @torch.no_grad()
    def test_log_probs(self, model: nn.Module) -> torch.Tensor:
        return -self.potential(model.x).reshape(1, 1)

    def describe(self) -> dict[str, Any]:
        return {
            "task": self.name,
            "modes": self.per_side**2,
            "spacing": self.spacing,
            "variance": self.variance,
            "noise_std": self.noise_std,
            "init_box": self.init_box,
        }
