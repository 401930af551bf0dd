"""Stochastic gradient Hamiltonian Monte Carlo (Chen, Fox & Guestrin, 2014), flat parameters.

In the SGD-with-momentum parametrisation of Chen et al. (2014, eq. 15), with learning rate
``eta_t``, friction ``alpha`` (momentum ``1 - alpha``), temperature ``T`` and the noise estimate
``beta_hat = 0``::

    v     <- (1 - alpha) * v - eta_t * grad U~(theta) + sqrt(2 * alpha * eta_t * T) * xi,   xi ~ N(0, I)
    theta <- theta + v

where ``grad U~`` is the minibatch gradient of the negative log posterior with the likelihood
scaled to the data set size (see ``sgld.py``). ``T = 0`` is SGD with momentum ``1 - alpha``
and learning rate ``eta_t`` exactly (``v <- mu v - eta g; theta <- theta + v``), the point
estimate baseline. ``v`` starts at zero and belongs to the chain that owns it: in ``downpour``
and ``elastic`` every worker keeps its own.
"""

from __future__ import annotations

import math

import torch

from betamcmc.sgmcmc.engine.sgld import ScheduledStep
from betamcmc.sgmcmc.engine.stepsize import Cycle


class SGHMC(ScheduledStep):
    """SGHMC on a flat parameter tensor, updated in place, with its momentum ``v``."""

    def __init__(
        self,
        step_size: float,
        friction: float = 0.1,
        temperature: float = 1.0,
        decay: float = 0.0,
        decay_steps: int = 1000,
        generator: torch.Generator | None = None,
        cycle: Cycle | None = None,
    ):
        self.step_size = step_size
        self.friction = friction
        self.temperature = temperature
        self.decay = decay
        self.decay_steps = decay_steps
        self.generator = generator
        self.cycle = cycle
        self.momentum: torch.Tensor | None = None
        self.t = 0

    def step(self, theta: torch.Tensor, grad: torch.Tensor) -> None:
        """One update of ``theta`` (and the momentum) in place, given ``grad`` = grad U~(theta)."""
        if self.momentum is None:
            self.momentum = torch.zeros_like(theta)
        eta = self.current_step_size()
        v = self.momentum
        v.mul_(1.0 - self.friction).add_(grad, alpha=-eta)
        if self.noisy():
            noise = torch.randn(
                theta.shape, generator=self.generator, dtype=theta.dtype, device=theta.device
            )
            v.add_(noise, alpha=math.sqrt(2.0 * self.friction * eta * self.temperature))
        theta.add_(v)
        self.t += 1
