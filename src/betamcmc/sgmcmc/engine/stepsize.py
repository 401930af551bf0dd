"""The cyclical step-size schedule of cSG-MCMC (the polynomial decay: ``sgld.decayed_step_size``).

Cyclical SG-MCMC (Zhang, Li, Zhang, Chen and Wilson, ICLR 2020) splits the K steps of a run
into M cycles of ``L = ceil(K / M)`` steps and restarts a cosine step size at each::

    alpha_k = alpha_0 / 2 * [cos(pi * mod(k - 1, L) / L) + 1]          (k = 1 .. K)

so each cycle starts with large steps and ends near zero. The share ``r(k) = mod(k - 1, L) / L``
of the cycle done decides the stage: below ``exploration`` (the paper's beta) the sampler
*explores* (the steps are taken without injected noise and no sample is kept); from there on it
*samples* (noise on, samples collected). Here the step index is 0-based, ``t = k - 1``.

With several workers a cycle may be phase-shifted per worker: ``phase`` (a share of a cycle in
[0, 1)) moves worker ``w``'s position in the cycle to ``r(t + phase_w * L)``, so that, for
example, with ``phase = 1 / W`` per worker the workers explore at different times.

The functions are pure (floats in, floats out) and tested against hand-computed values, like
the beta schedules of :mod:`betamcmc.vae.schedules`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def cycle_length(total: int, cycles: int) -> int:
    """``L = ceil(K / M)`` steps per cycle."""
    if total < 1 or cycles < 1:
        raise ValueError(f"need total >= 1 and cycles >= 1 (got {total}, {cycles})")
    return math.ceil(total / cycles)


def cycle_position(t: int, total: int, cycles: int, phase: float = 0.0) -> float:
    """``r(t)`` in [0, 1): the share of its cycle step ``t`` (0-based) has done, moved on by
    ``phase`` of a cycle."""
    length = cycle_length(total, cycles)
    shifted = t + round(phase * length)
    return (shifted % length) / length


def cyclical_step_size(
    step_size: float, t: int, total: int, cycles: int, phase: float = 0.0
) -> float:
    """``alpha_0 / 2 * [cos(pi * r(t)) + 1]``: ``step_size`` at a cycle's start, -> 0 at its end."""
    return step_size / 2.0 * (math.cos(math.pi * cycle_position(t, total, cycles, phase)) + 1.0)


def is_sampling(t: int, total: int, cycles: int, exploration: float, phase: float = 0.0) -> bool:
    """Whether step ``t`` is in its cycle's sampling stage (``r(t) >= exploration``)."""
    return cycle_position(t, total, cycles, phase) >= exploration


def worker_phase(worker: int, workers: int, offset: float) -> float:
    """Worker ``worker``'s (0-based) phase: ``offset`` of a cycle per worker, modulo one cycle
    (``offset = 0``: every worker in step with the master's cycle)."""
    return (worker * offset) % 1.0 if workers > 1 else 0.0


@dataclass(frozen=True)
class Cycle:
    """One chain's cyclical schedule: ``total`` steps (its budget) in ``cycles`` cycles, the first
    ``exploration`` of each explored, the chain's cycle shifted by ``phase``."""

    total: int
    cycles: int
    exploration: float
    phase: float = 0.0

    def step_size(self, step_size: float, t: int) -> float:
        """The step size of step ``t`` (0-based) for the base ``step_size`` (alpha_0)."""
        return cyclical_step_size(step_size, t, self.total, self.cycles, self.phase)

    def sampling(self, t: int) -> bool:
        """Is step ``t`` (0-based) in a sampling stage (noise on, samples kept)?"""
        return is_sampling(t, self.total, self.cycles, self.exploration, self.phase)
