"""The actor-critic pieces by hand: GAE / n-step returns, the loss, rollouts, the worker's update.

All in-process (no worker processes): the update test drives the engine's real ``WorkerContext``
(the code every worker runs) and compares it with a plain ``torch.optim.SGD`` step.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch

from betamcmc.params import validate_params
from betamcmc.rl.agent import (
    ActorCritic,
    LossConfig,
    Rollout,
    actor_critic_loss,
    gae,
    nstep_returns,
)
from betamcmc.rl.envs import EnvPool, run_episodes
from betamcmc.rl.evaluate import SeedCurve, aggregate_curves, steps_to_threshold
from betamcmc.rl.experiment import engine_spec, schedule
from betamcmc.sgmcmc.engine.worker import WorkerContext

from conftest import tiny_params

RUNTIME = validate_params(tiny_params()).runtime

torch.set_num_threads(1)


def col(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).reshape(-1, 1)


def test_gae_by_hand() -> None:
    # T = 3, one env; the episode ends at t = 1 (d_1 = 1); V(s_3) = 4.
    r, v, d = col(1.0, 2.0, 3.0), col(0.5, 1.0, 2.0), col(0.0, 1.0, 0.0)
    last = torch.tensor([4.0])
    g, lam = 0.9, 0.5
    adv, ret = gae(r, v, d, last, g, lam)
    d2 = 3.0 + 0.9 * 4.0 - 2.0  # 4.6
    d1 = 2.0 - 1.0  # terminal: no bootstrap -> 1.0
    d0 = 1.0 + 0.9 * 1.0 - 0.5  # 1.4
    a2, a1 = d2, d1  # the trace is cut after t = 1
    a0 = d0 + 0.9 * 0.5 * a1  # 1.85
    assert adv.flatten().tolist() == pytest.approx([a0, a1, a2])
    assert ret.flatten().tolist() == pytest.approx([a0 + 0.5, a1 + 1.0, a2 + 2.0])


def test_nstep_returns_by_hand_and_equal_to_gae_lambda_one() -> None:
    r, v, d = col(1.0, 1.0, 1.0), col(0.3, -0.2, 0.7), col(0.0, 0.0, 0.0)
    last = torch.tensor([10.0])
    ret = nstep_returns(r, d, last, 0.5)
    # R_2 = 1 + 0.5 * 10 = 6; R_1 = 1 + 0.5 * 6 = 4; R_0 = 1 + 0.5 * 4 = 3
    assert ret.flatten().tolist() == pytest.approx([3.0, 4.0, 6.0])
    _, gae_ret = gae(r, v, d, last, 0.5, 1.0)
    assert torch.allclose(gae_ret, ret)
    _, td = gae(r, v, d, last, 0.5, 0.0)  # lambda = 0: one-step TD targets r + gamma V(s')
    assert td.flatten().tolist() == pytest.approx([1 - 0.1, 1 + 0.35, 6.0])


def test_loss_terms_and_gradient() -> None:
    torch.manual_seed(0)
    model = ActorCritic(4, 2, [8])
    roll = Rollout(
        obs=torch.randn(5, 3, 4),
        actions=torch.randint(2, (5, 3)),
        rewards=torch.ones(5, 3),
        dones=torch.zeros(5, 3),
        last_obs=torch.randn(3, 4),
    )
    loss = LossConfig(gamma=0.99, gae_lambda=0.95, entropy_coef=0.0, value_coef=0.0,
                      normalize_advantages=True)  # fmt: skip
    parts = actor_critic_loss(model, roll, loss)
    # normalised advantages have mean 0; with a near-uniform initial policy the policy loss ~ 0
    assert abs(parts.policy_loss) < 0.05
    assert parts.entropy == pytest.approx(math.log(2), abs=1e-3)  # near-uniform initial policy
    only_entropy = actor_critic_loss(model, roll, dataclasses.replace(loss, entropy_coef=1.0))
    assert only_entropy.loss.item() == pytest.approx(parts.loss.item() - parts.entropy, abs=1e-6)
    parts.loss.backward()
    grads = [p.grad for p in model.policy.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    value_grads = [p.grad for p in model.value.parameters()]
    assert all(g is None or not g.any() for g in value_grads)  # value_coef 0: no value gradient


def test_rollout_continues_across_calls_and_records_episodes() -> None:
    torch.manual_seed(0)
    model = ActorCritic(4, 2, [8])
    pool = EnvPool("CartPole-v1", 2, seed=3)
    gen = torch.Generator().manual_seed(0)
    first = pool.rollout(model, 40, 0.99, gen)
    second = pool.rollout(model, 40, 0.99, gen)
    assert first.obs.shape == (40, 2, 4) and pool.steps == 160
    assert torch.equal(second.obs[0], first.last_obs)  # the next rollout starts where one stopped
    # a near-random CartPole policy ends episodes in ~10-40 steps: some must have finished
    ends = int(first.dones.sum() + second.dones.sum())
    assert ends == len(pool.episode_returns) > 0
    assert sum(pool.episode_returns) <= 160  # reward 1 per step, each step in at most one episode


def test_evaluation_is_deterministic_per_seed() -> None:
    torch.manual_seed(1)
    model = ActorCritic(4, 2, [8])
    a, _ = run_episodes(model, "CartPole-v1", 3, seed=5, greedy=False)
    b, _ = run_episodes(model, "CartPole-v1", 3, seed=5, greedy=False)
    assert a.returns == b.returns and a.entropy == b.entropy
    assert all(n == r for n, r in zip(a.lengths, a.returns, strict=True))  # CartPole: +1 per step


def test_curves_mean_std_and_steps_to_threshold() -> None:
    c0 = SeedCurve.from_levels(0, {0: [(0, 0, 10, 0.7)], 1: [(100, 1, 500, 0.5)]})
    c1 = SeedCurve.from_levels(
        1, {0: [(0, 0, 20, 0.7)], 1: [(120, 1, 300, 0.6), (140, 2, 100, 0.4)]}, chains=2
    )
    assert c1.returns == [20, 200]  # elastic: a level's chains are averaged
    table = aggregate_curves([c0, c1]).rows
    assert table[1]["return_mean"] == 350 and table[1]["env_steps"] == 115
    assert table[1]["return_std"] == pytest.approx(math.sqrt(2 * 150**2))  # sample std
    assert steps_to_threshold(c0, 475) == 100 and steps_to_threshold(c1, 475) is None
    assert steps_to_threshold(c0, None) is None
    c2 = SeedCurve.from_levels(
        2, {0: [(0, 0, 9, 0.7)], 1: [(90, 1, 50, 0.6)], 2: [(200, 2, 80, 0.5)]}
    )
    rows = aggregate_curves([c0, c2]).rows
    assert [r["level"] for r in rows] == [0, 1]  # a level only some seeds reached is left out
    assert all(r["seeds"] == 2 for r in rows)


def test_elastic_curve_leaves_out_a_level_only_some_chains_reached() -> None:
    """Two chains: level 2 only reached by the faster one (at 320 steps). Averaged alone it would
    come before level 1's mean (352): the seed's curve ends at level 1 and stays monotone."""
    levels = {
        0: [(0, 0, 9, 0.7)],
        1: [(300, 1.0, 20, 0.6), (404, 1.4, 40, 0.5)],
        2: [(320, 1.1, 60, 0.4)],
    }
    curve = SeedCurve.from_levels(3, levels, chains=2)
    assert curve.levels == [0, 1] and curve.env_steps == [0, 352] and curve.wall_s == [0, 1.2]
    assert curve.returns == [9, 30]


def test_schedule_maps_the_budget_onto_chain_steps() -> None:
    rl = validate_params(
        tiny_params({"rl": {"total_steps": 1000, "eval_every": 100, "period": 3}})
    ).rl
    s = schedule(rl, "downpour", 2)
    assert s.steps_per_gradient == 16 and s.thinning % 3 == 0 and s.thinning >= 100 // 16
    assert s.snapshots * s.thinning * 16 == pytest.approx(1000, rel=0.3)
    e = schedule(rl, "elastic", 2)
    assert e.snapshots % 2 == 0  # the same number of snapshots per worker chain


@pytest.mark.parametrize("method", ["sgd-downpour", "sgdm-elastic"])
def test_worker_update_at_temperature_zero_is_plain_sgd(method: str) -> None:
    """The engine's worker step for the baseline == torch.optim.SGD on the A2C loss + L2 prior."""
    rl = validate_params(tiny_params()).rl
    spec = engine_spec(rl, RUNTIME, method, 1, seed=4)
    ctx = WorkerContext(spec, rank=1)
    reference = copy.deepcopy(ctx.flat.model)  # plain module with the same initial parameters
    ref_task = spec.make_task()
    ref_gen = torch.Generator().manual_seed(ctx.batch_gen.initial_seed())
    momentum = 1 - rl.friction if method.startswith("sgdm") else 0.0
    lr = rl.step_size * rl.friction if momentum else rl.step_size
    opt = torch.optim.SGD(
        reference.parameters(), lr=lr, momentum=momentum, weight_decay=1 / rl.prior_std**2
    )
    for _ in range(3):
        ctx.step()
        opt.zero_grad()
        ref_task.minibatch_nll(reference, ref_gen).backward()
        opt.step()
    ours = torch.cat([p.detach().reshape(-1) for p in ctx.flat.model.parameters()])
    theirs = torch.cat([p.detach().reshape(-1) for p in reference.parameters()])
    assert torch.allclose(ours, theirs, rtol=0, atol=1e-6)


def test_worker_update_with_temperature_injects_noise() -> None:
    rl = validate_params(tiny_params()).rl
    base = WorkerContext(engine_spec(rl, RUNTIME, "sgd-downpour", 1, seed=4), rank=1)
    noisy = WorkerContext(engine_spec(rl, RUNTIME, "sgld-downpour", 1, seed=4), rank=1)
    zero = WorkerContext(
        engine_spec(
            rl.model_copy(update={"temperature": 0.0}), RUNTIME, "sgld-downpour", 1, seed=4
        ),
        rank=1,
    )
    for ctx in (base, noisy, zero):
        ctx.step()
    assert torch.equal(base.theta, zero.theta)  # sgld at T = 0 is sgd, bit for bit
    diff = (noisy.theta - base.theta).std().item()
    expected = math.sqrt(2 * rl.step_size * rl.temperature)  # one step of Langevin noise
    assert diff == pytest.approx(expected, rel=0.2)
