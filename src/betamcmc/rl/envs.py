"""Gymnasium environments: checking an id, stepping E copies in lockstep, collecting rollouts.

:func:`check_env` is called by the stage before anything is written: an unknown id or an
environment whose actions are not discrete (the policy is a softmax over actions) is a one-line
:class:`~betamcmc.core.errors.ParamsError`.

:class:`EnvPool` steps ``E`` environments with its own autoreset (a finished episode is reset at
once and its return recorded), so a worker keeps its environments, their current observations and
their running episode returns across gradient steps: a rollout continues where the last stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from betamcmc.core.errors import ParamsError
from betamcmc.rl.agent import ActorCritic, Rollout


def as_tensor(array: np.ndarray) -> torch.Tensor:
    """Copy a NumPy array into torch-allocated (64-byte aligned) memory.

    ``torch.from_numpy`` would share NumPy's buffer, whose alignment varies from run to run; CPU
    kernels pick SIMD paths by alignment, so the same inputs could round differently and a
    deterministic run (same seed, W = 1) would not repeat bit for bit.
    """
    return torch.tensor(array)


@dataclass(frozen=True)
class EnvInfo:
    env_id: str
    obs_dim: int
    n_actions: int
    reward_threshold: float | None
    max_episode_steps: int | None


def make_env(env_id: str, **kwargs: Any) -> Any:
    import gymnasium as gym  # lazy: it costs a second: the master of a non-RL run never pays it

    return gym.make(env_id, **kwargs)


def check_env(env_id: str, where: str = "rl.env") -> EnvInfo:
    """Make ``env_id`` once and check that a discrete-action policy can drive it."""
    import gymnasium as gym  # lazy: see make_env

    try:
        env = make_env(env_id)
    except gym.error.Error as err:
        raise ParamsError(
            f"{where}: unknown gymnasium environment id ({str(err).splitlines()[0]}) "
            f"(got {env_id!r})"
        ) from None
    try:
        if not isinstance(env.action_space, gym.spaces.Discrete):
            raise ParamsError(
                f"{where}: the policy needs discrete actions, {env_id} has "
                f"{type(env.action_space).__name__} actions {env.action_space} (got {env_id!r})"
            )
        shape = env.observation_space.shape
        if (
            not isinstance(env.observation_space, gym.spaces.Box)
            or shape is None
            or len(shape) != 1
        ):
            raise ParamsError(
                f"{where}: the policy needs a flat vector observation, {env_id} has "
                f"{env.observation_space} (got {env_id!r})"
            )
        spec = env.spec
        return EnvInfo(
            env_id=env_id,
            obs_dim=int(shape[0]),
            n_actions=int(env.action_space.n),
            reward_threshold=None if spec is None else spec.reward_threshold,
            max_episode_steps=None if spec is None else spec.max_episode_steps,
        )
    finally:
        env.close()


@dataclass
class EnvPool:
    """``n`` copies of an environment, seeded ``seed, seed + 1, ...``, stepped in lockstep."""

    env_id: str
    n: int
    seed: int
    envs: list[Any] = field(init=False)
    obs: np.ndarray = field(init=False)
    running: np.ndarray = field(init=False)
    episode_returns: list[float] = field(init=False, default_factory=list)
    steps: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.envs = [make_env(self.env_id) for _ in range(self.n)]
        first = [env.reset(seed=self.seed + i)[0] for i, env in enumerate(self.envs)]
        self.obs = np.asarray(first, dtype=np.float32)
        self.running = np.zeros(self.n)

    def rollout(
        self, model: ActorCritic, length: int, gamma: float, generator: torch.Generator
    ) -> Rollout:
        """Act ``length`` steps in every environment with ``model``'s policy (no gradient)."""
        obs_buf = np.empty((length, self.n, self.obs.shape[1]), dtype=np.float32)
        act_buf = np.empty((length, self.n), dtype=np.int64)
        rew_buf = np.zeros((length, self.n), dtype=np.float32)
        done_buf = np.zeros((length, self.n), dtype=np.float32)
        for t in range(length):
            obs_buf[t] = self.obs
            actions, _ = model.act(as_tensor(self.obs), generator)
            act_buf[t] = actions.numpy()
            for i, env in enumerate(self.envs):
                obs, reward, terminated, truncated, _ = env.step(int(act_buf[t, i]))
                self.running[i] += reward
                rew_buf[t, i] = reward
                if terminated or truncated:
                    if truncated and not terminated:  # a time limit is not a terminal state
                        with torch.no_grad():
                            tail = model.value(as_tensor(np.asarray(obs, dtype=np.float32)[None]))
                        rew_buf[t, i] += gamma * float(tail)
                    done_buf[t, i] = 1.0
                    self.episode_returns.append(float(self.running[i]))
                    self.running[i] = 0.0
                    obs, _ = env.reset()
                self.obs[i] = obs
        self.steps += length * self.n
        return Rollout(
            obs=as_tensor(obs_buf),
            actions=as_tensor(act_buf),
            rewards=as_tensor(rew_buf),
            dones=as_tensor(done_buf),
            last_obs=as_tensor(self.obs),
        )

    def close(self) -> None:
        for env in self.envs:
            env.close()


@dataclass
class EpisodeStats:
    returns: list[float]
    lengths: list[int]
    entropy: float  # mean policy entropy over every state visited

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))


@torch.no_grad()
def run_episodes(
    model: ActorCritic,
    env_id: str,
    episodes: int,
    seed: int,
    greedy: bool = True,
    record: int | None = None,
) -> tuple[EpisodeStats, list[np.ndarray]]:
    """Play ``episodes`` full episodes (environment ``i`` seeded ``seed + i``), all in lockstep.

    Returns the statistics and, when ``record`` is an episode index, that episode's raw states
    (for a frame strip). Deterministic for a given seed (greedy, or sampling from a generator
    seeded with ``seed``).
    """
    generator = torch.Generator().manual_seed(seed)
    envs = [make_env(env_id) for _ in range(episodes)]
    obs = np.asarray([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)], dtype=np.float32)
    returns = np.zeros(episodes)
    lengths = np.zeros(episodes, dtype=int)
    active = np.ones(episodes, dtype=bool)
    entropy_sum, entropy_n = 0.0, 0
    states: list[np.ndarray] = []
    while active.any():
        idx = np.flatnonzero(active)
        if record is not None and active[record]:
            states.append(obs[record].copy())
        actions, entropy = model.act(as_tensor(obs[idx]), generator, greedy=greedy)
        entropy_sum += float(entropy.sum())
        entropy_n += len(idx)
        for j, i in enumerate(idx):
            new_obs, reward, terminated, truncated, _ = envs[i].step(int(actions[j]))
            returns[i] += reward
            lengths[i] += 1
            obs[i] = new_obs
            if terminated or truncated:
                active[i] = False
    for env in envs:
        env.close()
    stats = EpisodeStats(
        [float(r) for r in returns], [int(n) for n in lengths], entropy_sum / entropy_n
    )
    return stats, states
