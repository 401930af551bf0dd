"""The ``rl`` params section: environment, methods x workers, sampler knobs, agent, budget.

A method is ``<update>-<protocol>``: the update is ``sgd`` (the noise-free A3C-style baseline),
``sgdm`` (SGD with momentum ``1 - friction``, SGHMC's noise-free baseline), ``sgld`` or ``sghmc``
(the engine's samplers at ``temperature``); the protocol is ``downpour`` or ``elastic`` (see
``betamcmc.sgmcmc.engine.protocols``). ``sgld`` at temperature 0 *is* ``sgd`` and ``sghmc`` at
temperature 0 *is* ``sgdm``, update for update.

Step sizes. ``step_size`` is the learning rate of ``sgd`` / ``sgld``. For ``sgdm`` / ``sghmc`` the
sampler's eta is ``step_size * friction``, so that the long-run effective learning rate
``eta / friction`` is ``step_size`` for every method (a fair comparison at one setting).

Budget. ``total_steps`` environment steps per run, all workers together; a gradient uses
``envs_per_worker * rollout_length`` environment steps; the master's policy is snapshotted about
every ``eval_every`` environment steps and each snapshot evaluated over ``eval_episodes`` episodes.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import Field, model_validator

from betamcmc.core.chainparams import Exchange, Prior, SamplerNoise
from betamcmc.core.schema import Seeds

UPDATES: tuple[str, ...] = ("sgd", "sgdm", "sgld", "sghmc")
RL_PROTOCOLS: tuple[str, ...] = ("downpour", "elastic")
Method = Literal[
    "sgd-downpour",
    "sgdm-downpour",
    "sgld-downpour",
    "sghmc-downpour",
    "sgd-elastic",
    "sgdm-elastic",
    "sgld-elastic",
    "sghmc-elastic",
]
METHODS: tuple[str, ...] = get_args(Method)


def split_method(method: str) -> tuple[str, str]:
    """``"sgld-downpour"`` -> ``("sgld", "downpour")``."""
    update, protocol = method.split("-", 1)
    return update, protocol


class RlParams(SamplerNoise, Prior, Exchange):
    """The ``rl`` section; ``friction`` / ``temperature`` (of sgld and sghmc; 0: the baseline),
    ``prior_std`` and ``period`` / ``alpha`` / ``overlap`` come from the engine's blocks
    (:mod:`betamcmc.core.chainparams`). ``step_size`` is the learning rate (module docstring), not
    the sampler's eta, so it is declared here."""

    env: str = Field(min_length=1, description="gymnasium id (discrete actions)")
    methods: list[Method] = Field(min_length=1)
    workers: list[Annotated[int, Field(ge=1)]] = Field(min_length=1)
    seeds: Seeds = Field(
        description="one run per seed (model init, worker env seeds, noise); >= 3 for mean +- std",
    )
    # sampler: the learning rate (friction, temperature, prior, exchange: the blocks)
    step_size: float = Field(gt=0.0, description="learning rate (see module docstring)")
    # agent
    hidden: list[Annotated[int, Field(ge=1)]] = Field(min_length=1, description="tanh MLP widths")
    envs_per_worker: int = Field(ge=1)
    rollout_length: int = Field(ge=1, description="steps per env per gradient")
    gamma: float = Field(gt=0.0, le=1.0)
    gae_lambda: float = Field(ge=0.0, le=1.0, description="1: n-step returns")
    entropy_coef: float = Field(ge=0.0)
    value_coef: float = Field(ge=0.0)
    normalize_advantages: bool
    # budget and evaluation
    total_steps: int = Field(ge=1, description="environment steps per run (all workers)")
    eval_every: int = Field(ge=1, description="environment steps between snapshots")
    eval_episodes: int = Field(ge=1, description="episodes per snapshot")
    final_episodes: int = Field(ge=1, description="episodes of the final master policy")
    eval_mode: Literal["greedy", "sample"]
    allow_partial: bool = Field(
        description="accept a seed whose run lost workers and collected fewer snapshots than "
        "its budget (default: the stage fails)"
    )

    @model_validator(mode="after")
    def _budget(self) -> RlParams:
        batch = self.envs_per_worker * self.rollout_length
        if self.eval_every < batch:
            raise ValueError(
                f"eval_every must be >= envs_per_worker * rollout_length = {batch} "
                f"(one gradient's environment steps) (got {self.eval_every})"
            )
        if self.total_steps < self.eval_every:
            raise ValueError(
                f"total_steps must be >= eval_every = {self.eval_every} (got {self.total_steps})"
            )
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods must not repeat (got {self.methods})")
        return self
