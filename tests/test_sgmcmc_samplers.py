"""SGLD / SGHMC updates against hand-computed steps, temperature 0 = SGD, Gaussian targets."""

from __future__ import annotations

import math

import pytest
import torch

from betamcmc.sgmcmc.engine.sghmc import SGHMC
from betamcmc.sgmcmc.engine.sgld import SGLD, decayed_step_size


def noise(seed: int, n: int, draws: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=g) for _ in range(draws)]


def test_sgld_step_by_hand() -> None:
    theta = torch.tensor([1.0, -2.0, 0.5])
    grad = torch.tensor([0.4, -1.0, 2.0])
    eta, temp = 0.01, 0.5
    (xi,) = noise(7, 3)
    expected = theta - eta * grad + math.sqrt(2 * eta * temp) * xi
    SGLD(eta, temperature=temp, generator=torch.Generator().manual_seed(7)).step(theta, grad)
    torch.testing.assert_close(theta, expected)
    # by hand for the first coordinate: 1 - 0.004 + 0.1 * xi_0
    assert theta[0].item() == pytest.approx(1.0 - 0.004 + 0.1 * xi[0].item(), abs=1e-6)


def test_sghmc_two_steps_by_hand() -> None:
    theta = torch.tensor([0.3, -0.7])
    eta, alpha, temp = 0.05, 0.2, 1.0
    xi1, xi2 = noise(3, 2, draws=2)
    sampler = SGHMC(
        eta, friction=alpha, temperature=temp, generator=torch.Generator().manual_seed(3)
    )
    g1 = torch.tensor([1.0, 2.0])
    g2 = torch.tensor([-0.5, 0.25])
    scale = math.sqrt(2 * alpha * eta * temp)
    v1 = -eta * g1 + scale * xi1
    t1 = torch.tensor([0.3, -0.7]) + v1
    v2 = (1 - alpha) * v1 - eta * g2 + scale * xi2
    t2 = t1 + v2
    sampler.step(theta, g1)
    torch.testing.assert_close(theta, t1)
    sampler.step(theta, g2)
    torch.testing.assert_close(theta, t2)
    torch.testing.assert_close(sampler.momentum, v2)


def quadratic_grad(theta: torch.Tensor) -> torch.Tensor:
    return torch.tensor([3.0, -1.0]) * theta + torch.tensor([0.5, 0.2])


def test_temperature_zero_sgld_is_sgd() -> None:
    ours = torch.tensor([1.0, 2.0])
    ref = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = torch.optim.SGD([ref], lr=0.1)
    sampler = SGLD(0.1, temperature=0.0)
    for _ in range(5):
        sampler.step(ours, quadratic_grad(ours))
        ref.grad = quadratic_grad(ref.detach())
        opt.step()
    torch.testing.assert_close(ours, ref.detach())


def test_temperature_zero_sghmc_is_sgd_with_momentum() -> None:
    ours = torch.tensor([1.0, 2.0])
    ref = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = torch.optim.SGD([ref], lr=0.05, momentum=0.9)
    sampler = SGHMC(0.05, friction=0.1, temperature=0.0)
    for _ in range(8):
        sampler.step(ours, quadratic_grad(ours))
        ref.grad = quadratic_grad(ref.detach())
        opt.step()
    torch.testing.assert_close(ours, ref.detach())


def test_step_size_decay() -> None:
    assert decayed_step_size(0.1, 0, 0.5, 100) == 0.1
    assert decayed_step_size(0.1, 300, 0.5, 100) == pytest.approx(0.1 / 2.0)
    assert decayed_step_size(0.1, 10**6, 0.0, 100) == 0.1
    s = SGLD(0.1, temperature=0.0, decay=1.0, decay_steps=1)
    theta = torch.zeros(1)
    s.step(theta, torch.ones(1))  # eta_0 = 0.1
    s.step(theta, torch.ones(1))  # eta_1 = 0.05
    assert theta.item() == pytest.approx(-0.15)


@pytest.mark.parametrize("kind", ["sgld", "sghmc"])
def test_gaussian_target_mean_and_variance(kind: str) -> None:
    """Many independent chains on U = (x - mu)^2 / (2 s^2) with a noisy gradient."""
    mu, sigma, chains = 2.0, 0.5, 2000
    g = torch.Generator().manual_seed(0)
    eta = 0.002 * sigma**2 if kind == "sgld" else 0.0005 * sigma**2
    if kind == "sgld":
        sampler = SGLD(eta, generator=g)
    else:
        sampler = SGHMC(eta, friction=0.05, generator=g)
    theta = torch.zeros(chains)
    grad_noise = torch.Generator().manual_seed(1)
    draws = []
    for t in range(6000):
        grad = (theta - mu) / sigma**2 + 0.1 * torch.randn(chains, generator=grad_noise)
        sampler.step(theta, grad)
        if t >= 3000 and t % 50 == 0:
            draws.append(theta.clone())
    x = torch.stack(draws)
    assert x.mean().item() == pytest.approx(mu, abs=0.02)
    assert x.var().item() == pytest.approx(sigma**2, rel=0.06)
