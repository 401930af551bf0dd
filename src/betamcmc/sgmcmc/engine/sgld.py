"""Stochastic gradient Langevin dynamics (Welling & Teh, 2011), on a flat parameter vector.

With the potential ``U(theta) = -sum_i log p(y_i | x_i, theta) - log p(theta)`` estimated on a
minibatch ``B`` of the ``N`` training points (likelihood scaled to the data set size)::

    grad U~(theta) = -(N / |B|) sum_{i in B} grad log p(y_i | x_i, theta) + theta / prior_std^2

one step with step size ``eta_t`` and temperature ``T`` is::

    theta <- theta - eta_t * grad U~(theta) + sqrt(2 * eta_t * T) * xi,     xi ~ N(0, I)

``T = 1`` samples the posterior, ``T < 1`` a tempered (sharper) one, and ``T = 0`` is plain
SGD on the MAP loss ``U`` with learning rate ``eta_t``, exactly (no noise is drawn).
The step size follows ``eta_t = eta * (1 + t / decay_steps) ** -decay`` (``decay = 0``: constant),
or a cyclical schedule (``cycle``, :class:`~betamcmc.sgmcmc.engine.stepsize.Cycle`: cSG-MCMC), whose
exploration stages take their steps without noise.
"""

from __future__ import annotations

import math

import torch

from betamcmc.sgmcmc.engine.stepsize import Cycle


def decayed_step_size(step_size: float, t: int, decay: float, decay_steps: int) -> float:
    """``eta_t = eta (1 + t / decay_steps)^-decay``: polynomial decay (Teh et al., 2016)."""
    if decay == 0.0:
        return step_size
    return step_size * (1.0 + t / decay_steps) ** (-decay)


class ScheduledStep:
    """The step size and noise rule both samplers share: ``t`` counts the steps taken."""

    step_size: float
    temperature: float
    decay: float
    decay_steps: int
    cycle: Cycle | None  # cyclical schedule; None: constant / polynomial decay
    t: int

    def current_step_size(self) -> float:
        if self.cycle is not None:
            return self.cycle.step_size(self.step_size, self.t)
        return decayed_step_size(self.step_size, self.t, self.decay, self.decay_steps)

    def noisy(self) -> bool:
        """Is noise injected at this step? Not at temperature 0, nor in a cycle's exploration."""
        return self.temperature > 0.0 and (self.cycle is None or self.cycle.sampling(self.t))


class SGLD(ScheduledStep):
    """SGLD on a flat parameter tensor, updated in place. ``t`` counts steps taken."""

    def __init__(
        self,
        step_size: float,
        temperature: float = 1.0,
        decay: float = 0.0,
        decay_steps: int = 1000,
        generator: torch.Generator | None = None,
        cycle: Cycle | None = None,
    ):
        self.step_size = step_size
        self.temperature = temperature
        self.decay = decay
        self.decay_steps = decay_steps
        self.generator = generator
        self.cycle = cycle
        self.t = 0

    def step(self, theta: torch.Tensor, grad: torch.Tensor) -> None:
        """One update of ``theta`` in place, given ``grad`` = grad U~(theta)."""
        eta = self.current_step_size()
        theta.add_(grad, alpha=-eta)
        if self.noisy():
            noise = torch.randn(
                theta.shape, generator=self.generator, dtype=theta.dtype, device=theta.device
            )
            theta.add_(noise, alpha=math.sqrt(2.0 * eta * self.temperature))
        self.t += 1
