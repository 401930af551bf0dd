"""Beta schedules for the KL term, as pure functions of the training iteration.

Fu et al. (NAACL 2019), "Cyclical Annealing Schedule: A Simple Approach to Mitigating KL
Vanishing", Eq. (6)-(7): with ``T`` total iterations split into ``M`` cycles,

    tau = mod(t, T / M) / (T / M)                 position inside the current cycle, in [0, 1)
    beta_t = f(tau / R)  if tau <= R  else  1      (f: a ramp from 0 to 1; here scaled to start..stop)

``monotonic`` is the special case of one cycle (ramp over the first ``ratio`` of all iterations,
then hold); ``constant`` is a fixed beta (beta = 1 is the plain VAE). Iterations are counted from 0;
``total`` is the number of training iterations. Every function is deterministic and side-effect free.
"""

from __future__ import annotations

import math
from typing import Literal, Protocol

Shape = Literal["linear", "sigmoid", "cosine"]

# The reference implementation's sigmoid ramp runs over v in [-6, 6]; we rescale it so that the
# ramp starts exactly at ``start`` and ends exactly at ``stop`` (like the linear and cosine ones).
_SIGMOID_SPAN = 6.0


def ramp(fraction: float, shape: Shape = "linear") -> float:
    """Ramp shape on [0, 1] -> [0, 1], with ramp(0) = 0 and ramp(1) = 1; clipped outside."""
    f = min(max(fraction, 0.0), 1.0)
    if shape == "linear":
        return f
    if shape == "cosine":
        return 0.5 - 0.5 * math.cos(math.pi * f)
    if shape == "sigmoid":

        def sig(v: float) -> float:
            return 1.0 / (1.0 + math.exp(-v))

        lo, hi = sig(-_SIGMOID_SPAN), sig(_SIGMOID_SPAN)
        return (sig(2.0 * _SIGMOID_SPAN * f - _SIGMOID_SPAN) - lo) / (hi - lo)
    raise ValueError(f"unknown ramp shape {shape!r}")


def constant_beta(iteration: int, total: int, value: float = 1.0) -> float:
    """Constant schedule: ``value`` at every iteration (value = 1: the plain VAE objective)."""
    _check(iteration, total)
    return float(value)


def cyclical_beta(
    iteration: int,
    total: int,
    cycles: int = 4,
    ratio: float = 0.5,
    start: float = 0.0,
    stop: float = 1.0,
    shape: Shape = "linear",
    zero: float = 0.0,
) -> float:
    """Cyclical schedule (Fu et al. Eq. 6-7): ``cycles`` cycles over ``total`` iterations.

    In each cycle of length ``total / cycles``, beta ramps from ``start`` to ``stop`` over the first
    ``ratio`` of the cycle and then holds at ``stop``. The first iteration of every cycle is
    ``start``; the ramp reaches ``stop`` at position ``ratio`` of the cycle. With ``zero`` > 0,
    beta first stays at ``start`` for that share of the cycle and then ramps over the next
    ``ratio`` (the ``frange_cycle_zero_linear`` variant of the authors' code, used by Li et al.
    2020); ``zero + ratio`` must be <= 1.
    """
    _check(iteration, total)
    period = total / cycles
    tau = (iteration % period) / period  # position in the cycle, [0, 1)
    return start + (stop - start) * ramp((tau - zero) / ratio, shape)


def monotonic_beta(
    iteration: int,
    total: int,
    ratio: float = 0.25,
    start: float = 0.0,
    stop: float = 1.0,
    shape: Shape = "linear",
) -> float:
    """Monotonic schedule (Bowman et al. 2016): ramp over the first ``ratio`` of all iterations, hold."""
    return cyclical_beta(iteration, total, 1, ratio, start, stop, shape)


def cycle_index(iteration: int, total: int, cycles: int) -> int:
    """Which cycle (0-based) an iteration belongs to (for learning-rate restarts per cycle)."""
    _check(iteration, total)
    return min(int(iteration // (total / cycles)), cycles - 1)


def schedule_cycles(schedule: object) -> int:
    """Number of beta cycles of a schedule params object (1 for constant and monotonic)."""
    return int(getattr(schedule, "cycles", 1))


def cosine_lr(iteration: int, total: int, base: float, cycles: int = 1) -> float:
    """Cosine learning rate restarted ``cycles`` times (SGDR, Loshchilov & Hutter 2017).

    In each of the ``cycles`` equal cycles the rate falls from ``base`` towards 0 as
    ``base * (1 + cos(pi * tau)) / 2`` with ``tau`` the position in the cycle, as in the reference
    language-model script of Fu et al. (per epoch there, per iteration here). With the cycles of a
    cyclical beta schedule, the rate is small exactly while beta holds at 1 at the end of a cycle.
    """
    _check(iteration, total)
    period = total / cycles
    tau = (iteration % period) / period
    return base * 0.5 * (1.0 + math.cos(math.pi * tau))


class BetaSchedule(Protocol):
    """A schedule params object (:mod:`betamcmc.vae.params`): its beta at an iteration."""

    def beta(self, iteration: int, total: int) -> float: ...


def beta_at(schedule: BetaSchedule, iteration: int, total: int) -> float:
    """Beta of a schedule params object at ``iteration`` of ``total``."""
    return schedule.beta(iteration, total)


def beta_curve(schedule: BetaSchedule, total: int) -> list[float]:
    """Beta at every iteration 0..total-1 (for plots)."""
    return [beta_at(schedule, t, total) for t in range(total)]


def _check(iteration: int, total: int) -> None:
    if total < 1:
        raise ValueError(f"total iterations must be >= 1 (got {total})")
    if not 0 <= iteration < total:
        raise ValueError(f"iteration must be in [0, {total}) (got {iteration})")
