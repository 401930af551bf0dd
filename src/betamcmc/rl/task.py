"""The RL task plugged into the SG-MCMC engine (its task API: ``betamcmc/sgmcmc/tasks.py``).

The engine calls, in every worker process, ``task.minibatch_nll(model, generator)`` once per
gradient and turns ``n_train * grad + theta / prior_std^2`` into a sampler step. Here that call
collects a rollout of ``rollout_length`` steps in the worker's ``envs_per_worker`` environments
with the worker's current parameters and returns the actor-critic loss (``agent.py``); with
``n_train = 1`` the "posterior" the samplers target is ``exp(-L(theta) / T) p(theta)``, i.e. the
temperature ``T`` sets how far the injected Langevin noise moves the policy from the gradient's path.

The task object lives for the whole run in its worker process, so the environments (and their
running episodes) persist across gradient steps. Worker environments are seeded from the worker's
engine generator (itself seeded from the run seed and the worker's rank) on the first call, so a
run is reproducible for a given seed; the master builds the model but never touches an
environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from betamcmc.rl.agent import ActorCritic, LossConfig, actor_critic_loss
from betamcmc.rl.envs import EnvPool, check_env


@dataclass
class RlTask:
    """Picklable description of the task (sent to the spawned workers); state built lazily."""

    env_id: str
    hidden: list[int]
    envs_per_worker: int
    rollout_length: int
    loss: LossConfig
    n_train: int = 1
    pool: EnvPool | None = field(default=None, init=False, repr=False)
    last_entropy: float = field(default=float("nan"), init=False)

    def __call__(self) -> RlTask:  # the engine's ``task_factory``
        return RlTask(
            env_id=self.env_id,
            hidden=self.hidden,
            envs_per_worker=self.envs_per_worker,
            rollout_length=self.rollout_length,
            loss=self.loss,
        )

    def build_model(self) -> nn.Module:
        info = check_env(self.env_id)
        return ActorCritic(info.obs_dim, info.n_actions, self.hidden)

    def to(self, device: str) -> RlTask:
        return self  # environments run on the CPU; the engine keeps RL on the CPU

    @property
    def steps_per_gradient(self) -> int:
        return self.envs_per_worker * self.rollout_length

    def minibatch_nll(self, model: nn.Module, generator: torch.Generator) -> torch.Tensor:
        """Collect one rollout with ``model``'s policy and return its actor-critic loss."""
        assert isinstance(model, ActorCritic)
        if self.pool is None:
            env_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
            self.pool = EnvPool(self.env_id, self.envs_per_worker, env_seed)
        rollout = self.pool.rollout(model, self.rollout_length, self.loss.gamma, generator)
        parts = actor_critic_loss(model, rollout, self.loss)
        self.last_entropy = parts.entropy
        return parts.loss

    def describe(self) -> dict[str, Any]:
        return {"task": "rl", "env": self.env_id, "hidden": self.hidden}
