"""Actor-critic agent for discrete actions: policy and value networks, GAE, the A2C/A3C loss.

The model is two tanh MLPs on the observation: the **policy** ``pi(a | s) = softmax(f(s))`` and
the **value** ``V(s)`` (Mnih et al. 2016, "Asynchronous Methods for Deep RL", A3C). A worker
collects a rollout of ``T`` steps in each of its ``E`` environments (``task.py``) and computes the
loss below on it; the SG-MCMC engine turns the loss's gradient into an SGD / SGLD / SGHMC update
of all the parameters at once (``betamcmc.sgmcmc``).

Advantages use generalised advantage estimation (Schulman et al. 2016, GAE(gamma, lambda))::

    delta_t = r_t + gamma (1 - d_t) V(s_{t+1}) - V(s_t)
    A_t     = delta_t + gamma lambda (1 - d_t) A_{t+1},        A_T = 0 (bootstrap from V(s_T))
    R_t     = A_t + V(s_t)                                      (the value target)

where ``d_t = 1`` when the episode ended at step ``t``. ``lambda = 1`` gives the n-step returns
``R_t = r_t + gamma r_{t+1} + ... + gamma^{T-t} V(s_T)`` of A3C; ``lambda = 0`` the one-step TD
target. An episode cut by a time limit (truncated, not terminated) is *not* a terminal state: the
rollout adds ``gamma V(s_final)`` to its last reward before cutting the trace (``d_t = 1``).

The loss of a rollout (means over the ``T x E`` steps; advantages optionally standardised)::

    L = -mean(log pi(a_t | s_t) A_t) + c_v * mean((R_t - V(s_t))^2) / 2 - c_e * mean(H[pi(. | s_t)])

with ``A_t`` and ``R_t`` held constant (no gradient through the targets).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from betamcmc.core.errors import DivergenceError


def mlp(n_in: int, hidden: list[int], n_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(n_in, width), nn.Tanh()]
        n_in = width
    layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    """Separate policy and value MLPs (no shared trunk: the two losses do not fight)."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: list[int]):
        super().__init__()
        self.obs_dim, self.n_actions, self.hidden = obs_dim, n_actions, list(hidden)
        self.policy = mlp(obs_dim, hidden, n_actions)
        self.value = mlp(obs_dim, hidden, 1)
        # Small last policy layer: the initial policy is close to uniform (max entropy).
        with torch.no_grad():
            last = self.policy[-1]
            assert isinstance(last, nn.Linear)
            last.weight.mul_(0.01)
            last.bias.zero_()

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits [N, A], value [N])``."""
        return self.policy(obs), self.value(obs).squeeze(-1)

    @torch.no_grad()
    def act(
        self, obs: torch.Tensor, generator: torch.Generator | None = None, greedy: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions for a batch of observations and the policy's entropy at each."""
        logits = self.policy(obs)
        if not bool(torch.isfinite(logits).all()):
            raise DivergenceError("the policy's logits became non-finite (the parameters diverged)")
        probs = F.softmax(logits, dim=-1)
        entropy = -(probs * F.log_softmax(logits, dim=-1)).sum(-1)
        if greedy:
            return probs.argmax(-1), entropy
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1), entropy


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    last_value: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and value targets (module docstring).

    ``rewards``, ``values``, ``dones``: ``[T, E]`` (``dones`` 1.0 where the episode ended at that
    step); ``last_value``: ``[E]``, ``V`` of the observation after the rollout. Returns
    ``(advantages, returns)``, both ``[T, E]``.
    """
    steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    next_adv = torch.zeros_like(last_value)
    next_value = last_value
    for t in reversed(range(steps)):
        live = 1.0 - dones[t]
        delta = rewards[t] + gamma * live * next_value - values[t]
        next_adv = delta + gamma * lam * live * next_adv
        advantages[t] = next_adv
        next_value = values[t]
    return advantages, advantages + values


def nstep_returns(
    rewards: torch.Tensor, dones: torch.Tensor, last_value: torch.Tensor, gamma: float
) -> torch.Tensor:
    """A3C's bootstrapped n-step returns ``R_t = r_t + gamma (1 - d_t) R_{t+1}``, ``R_T = V(s_T)``
    (equal to :func:`gae`'s returns at ``lambda = 1``)."""
    returns = torch.zeros_like(rewards)
    running = last_value
    for t in reversed(range(rewards.shape[0])):
        running = rewards[t] + gamma * (1.0 - dones[t]) * running
        returns[t] = running
    return returns


@dataclass(frozen=True)
class LossConfig:
    """The loss settings of the ``rl`` params section (no defaults: the values live there)."""

    gamma: float
    gae_lambda: float
    entropy_coef: float
    value_coef: float
    normalize_advantages: bool


@dataclass
class Rollout:
    """``T`` steps of ``E`` environments: ``obs [T, E, D]``, ``actions``, ``rewards``, ``dones``
    ``[T, E]``, and ``last_obs [E, D]`` (the observation after the last step)."""

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    dones: torch.Tensor
    last_obs: torch.Tensor


@dataclass
class LossParts:
    loss: torch.Tensor
    policy_loss: float
    value_loss: float
    entropy: float


def actor_critic_loss(model: ActorCritic, rollout: Rollout, cfg: LossConfig) -> LossParts:
    """The A2C loss of one rollout (module docstring); ``loss`` carries the graph."""
    steps, envs = rollout.actions.shape
    logits, values = model(rollout.obs.reshape(steps * envs, -1))
    values = values.reshape(steps, envs)
    with torch.no_grad():
        last_value = model.value(rollout.last_obs).squeeze(-1)
        advantages, returns = gae(
            rollout.rewards, values, rollout.dones, last_value, cfg.gamma, cfg.gae_lambda
        )
        if cfg.normalize_advantages and advantages.numel() > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    log_probs = F.log_softmax(logits, dim=-1)
    taken = log_probs.gather(1, rollout.actions.reshape(-1, 1)).squeeze(1)
    entropy = -(log_probs.exp() * log_probs).sum(-1).mean()
    policy_loss = -(taken * advantages.reshape(-1)).mean()
    value_loss = 0.5 * (returns - values).pow(2).mean()
    loss = policy_loss + cfg.value_coef * value_loss - cfg.entropy_coef * entropy
    return LossParts(loss, policy_loss.item(), value_loss.item(), entropy.item())
