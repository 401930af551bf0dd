"""A multimodal target with a known answer: the mixture of 25 Gaussians of cSG-MCMC.

Zhang et al. (ICLR 2020, Section 5.1; their ``experiments/mog25.m``) sample the 2-D density::

    p(x) = sum_i w_i N(x; mu_i, s^2 I),   mu_i in {-4, -2, 0, 2, 4}^2,  w_i = 1/25,  s^2 = 0.03

with the potential ``U = -log p`` and its exact gradient::

    grad U(x) = sum_i r_i(x) (x - mu_i) / s^2,   r_i(x) = w_i N(x; mu_i, s^2 I) / p(x)

made stochastic by adding standard normal noise (``noise_std = 1``), as a minibatch gradient
would be. The modes are 2 apart and 0.17 wide, so a chain with small steps stays in the mode
it starts near; the question is which sampler visits all 25 in proportion to their weights.

Coverage metrics (samples -> numbers, all pure numpy):

- :func:`assign_modes`: each sample's nearest mode, or -1 when it is farther than ``radius``
  (default 3 s) from every mode (between modes: mass the target almost never puts there);
- :func:`modes_visited`: modes holding at least one sample;
- :func:`mode_tv`: total-variation distance between the samples' mode shares (the off-mode
  share counted as its own bin) and the true weights: 0 is perfect, 1 is disjoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def grid_means(per_side: int = 5, spacing: float = 2.0) -> np.ndarray:
    """Mode centres on a ``per_side`` x ``per_side`` grid centred at 0, ``spacing`` apart."""
    ticks = (np.arange(per_side) - (per_side - 1) / 2.0) * spacing
    return np.array([(a, b) for a in ticks for b in ticks], dtype=np.float64)


@dataclass(frozen=True)
class Mixture:
    """An isotropic Gaussian mixture in 2-D (defaults: the 25-Gaussian target)."""

    means: np.ndarray = field(default_factory=grid_means)
    variance: float = 0.03
    weights: np.ndarray | None = None  # None: equal weights

    @property
    def probs(self) -> np.ndarray:
        n = len(self.means)
        return np.full(n, 1.0 / n) if self.weights is None else np.asarray(self.weights, float)

    def _log_components(self, x: np.ndarray) -> np.ndarray:
        """``log w_i + log N(x; mu_i, s^2 I)`` for every point (rows) and mode (columns)."""
        x = np.atleast_2d(x)
        sq = ((x[:, None, :] - self.means[None, :, :]) ** 2).sum(-1)
        norm = -np.log(2.0 * np.pi * self.variance)
        return np.log(self.probs)[None, :] + norm - sq / (2.0 * self.variance)

    def log_density(self, x: np.ndarray) -> np.ndarray:
        """``log p(x)`` for each row of ``x`` (shape (n, 2) -> (n,))."""
        comp = self._log_components(x)
        top = comp.max(axis=1, keepdims=True)
        return (top + np.log(np.exp(comp - top).sum(axis=1, keepdims=True)))[:, 0]

    def grad_potential(self, x: np.ndarray) -> np.ndarray:
        """The exact ``grad U(x) = -grad log p(x)`` for each row of ``x``."""
        x = np.atleast_2d(x)
        comp = self._log_components(x)
        resp = np.exp(comp - comp.max(axis=1, keepdims=True))
        resp /= resp.sum(axis=1, keepdims=True)
        return (x - resp @ self.means) / self.variance

    def noisy_grad_potential(
        self, x: np.ndarray, rng: np.random.Generator, noise_std: float = 1.0
    ) -> np.ndarray:
        """``grad U(x)`` plus ``N(0, noise_std^2 I)``: the stochastic gradient the samplers get."""
        exact = self.grad_potential(x)
        return exact + noise_std * rng.standard_normal(exact.shape)


def assign_modes(samples: np.ndarray, means: np.ndarray, radius: float) -> np.ndarray:
    """Index of each sample's nearest mode, -1 where it is farther than ``radius`` from all."""
    dist = np.sqrt(((samples[:, None, :] - means[None, :, :]) ** 2).sum(-1))
    nearest = dist.argmin(axis=1)
    return np.where(dist[np.arange(len(samples)), nearest] <= radius, nearest, -1)


def modes_visited(assigned: np.ndarray, n_modes: int) -> int:
    """How many of the ``n_modes`` modes hold at least one sample."""
    return int(np.unique(assigned[(assigned >= 0) & (assigned < n_modes)]).size)


def mode_shares(assigned: np.ndarray, n_modes: int) -> np.ndarray:
    """The share of samples in each mode, then the off-mode share (length ``n_modes + 1``)."""
    counts = np.bincount(np.where(assigned < 0, n_modes, assigned), minlength=n_modes + 1)
    return counts / max(1, len(assigned))


def mode_tv(assigned: np.ndarray, weights: np.ndarray) -> float:
    """Total-variation distance between the samples' mode shares and the true ``weights``
    (whose off-mode share is 0): ``0.5 * sum |share - weight|`` over the modes and off-mode."""
    target = np.append(np.asarray(weights, dtype=float), 0.0)
    return float(0.5 * np.abs(mode_shares(assigned, len(weights)) - target).sum())
