"""Cyclical step sizes (cSG-MCMC, Zhang et al. 2020) and the 25-Gaussian target, against
hand-computed values (betamcmc.sgmcmc.engine.stepsize, betamcmc.sgmcmc.mixture)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from betamcmc.sgmcmc.engine.stepsize import (
    cycle_length,
    cycle_position,
    cyclical_step_size,
    is_sampling,
    worker_phase,
)
from betamcmc.sgmcmc.mixture import (
    Mixture,
    assign_modes,
    grid_means,
    mode_shares,
    mode_tv,
    modes_visited,
)


def test_cycle_length_is_the_ceiling_of_steps_over_cycles() -> None:
    assert cycle_length(100, 4) == 25 and cycle_length(10, 3) == 4 and cycle_length(5, 8) == 1
    with pytest.raises(ValueError, match="cycles >= 1"):
        cycle_length(10, 0)


def test_cyclical_step_size_hand_values() -> None:
    # K = 100, M = 4: L = 25; alpha_k = a0 / 2 (cos(pi mod(k-1, L) / L) + 1), t = k - 1
    assert cyclical_step_size(1.0, 0, 100, 4) == 1.0
    assert cyclical_step_size(1.0, 25, 100, 4) == 1.0  # each cycle restarts at a0
    assert cyclical_step_size(0.5, 12, 100, 4) == pytest.approx(0.5 / 2 * (1 + 0.0627905195), 1e-9)
    assert cyclical_step_size(1.0, 24, 100, 4) == pytest.approx(
        0.5 * (1 + math.cos(math.pi * 0.96))
    )
    assert cyclical_step_size(2.0, 99, 100, 4) < 0.01  # the end of the last cycle: -> 0


def test_exploration_then_sampling_within_each_cycle() -> None:
    # exploration share 0.5 of L = 25 steps: r(12) = 0.48 explores, r(13) = 0.52 samples
    assert not is_sampling(12, 100, 4, 0.5) and is_sampling(13, 100, 4, 0.5)
    assert not is_sampling(25, 100, 4, 0.5)  # a new cycle explores again
    kept = [t for t in range(100) if is_sampling(t, 100, 4, 0.8)]
    assert len(kept) == 4 * 5 and kept[:5] == [20, 21, 22, 23, 24]  # r >= 0.8: the last 5 of 25


def test_phase_shifts_a_worker_within_the_cycle() -> None:
    assert cycle_position(0, 100, 4, phase=0.2) == pytest.approx(5 / 25)
    assert cyclical_step_size(1.0, 20, 100, 4, phase=0.2) == 1.0  # 20 + 5 = a cycle start
    assert worker_phase(0, 2, 0.5) == 0.0 and worker_phase(1, 2, 0.5) == 0.5
    assert worker_phase(3, 4, 0.5) == 0.5 and worker_phase(1, 1, 0.5) == 0.0


def test_the_25_modes_sit_on_a_grid_two_apart() -> None:
    means = grid_means()
    assert means.shape == (25, 2)
    assert means[0].tolist() == [-4.0, -4.0] and means[12].tolist() == [0.0, 0.0]
    assert means[16].tolist() == [2.0, -2.0] and means[24].tolist() == [4.0, 4.0]


def test_log_density_and_gradient_hand_values() -> None:
    target = Mixture()
    # at a mode's centre the other modes (2 apart, s^2 = 0.03) add exp(-66.7): nothing
    expected = math.log(1 / 25) - math.log(2 * math.pi * 0.03)
    assert target.log_density(np.array([[0.0, 0.0]]))[0] == pytest.approx(expected, abs=1e-12)
    assert np.allclose(target.grad_potential(np.array([[2.0, -2.0]])), 0.0)
    assert target.grad_potential(np.array([[0.1, 0.0]]))[0] == pytest.approx([0.1 / 0.03, 0.0])
    # between modes: the exact gradient against central differences of -log p
    x, h = np.array([[0.7, 0.3]]), 1e-6
    numeric = [
        -(target.log_density(x + h * e) - target.log_density(x - h * e))[0] / (2 * h)
        for e in np.eye(2)
    ]
    assert target.grad_potential(x)[0] == pytest.approx(numeric, rel=1e-5)


def test_the_noisy_gradient_is_the_exact_one_plus_standard_noise() -> None:
    target, x = Mixture(), np.zeros((20000, 2)) + [0.05, -0.02]
    noise = target.noisy_grad_potential(x, np.random.default_rng(0)) - target.grad_potential(x)
    assert abs(noise.mean()) < 0.02 and noise.std() == pytest.approx(1.0, abs=0.02)


def test_mode_coverage_hand_values() -> None:
    means = grid_means()
    samples = np.array([[0.0, 0.1], [2.05, -2.0], [1.0, 1.0]])
    assigned = assign_modes(samples, means, radius=3 * math.sqrt(0.03))
    assert assigned.tolist() == [12, 16, -1]
    assert modes_visited(assigned, 25) == 2
    shares = mode_shares(assigned, 25)
    assert shares[12] == shares[16] == shares[25] == pytest.approx(1 / 3)
    # 0.5 * (2 |1/3 - 1/25| + 23 / 25 + 1/3)
    assert mode_tv(assigned, np.full(25, 1 / 25)) == pytest.approx(0.92)
    exact = assign_modes(np.repeat(means, 4, axis=0), means, radius=0.5)
    assert mode_tv(exact, np.full(25, 1 / 25)) == pytest.approx(0.0, abs=1e-12)
