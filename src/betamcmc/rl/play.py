"""``betamcmc rl play <run>``: replay a saved policy, print its returns, draw a CartPole frame strip.

``<run>`` is an item directory (``models/rl/sgld-downpour-2``), an item name (its folder as dvc.yaml declares it, under
``models/rl/``) or a ``policy.pt`` file. gymnasium's ``render_mode="rgb_array"`` needs pygame,
which this project does not install; the CartPole frame strip is drawn from the environment's
state (cart position, pole angle) with matplotlib instead, which costs a fraction of a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from betamcmc.core import pipeline
from betamcmc.core.errors import InputError
from betamcmc.rl.agent import ActorCritic
from betamcmc.rl.envs import check_env, run_episodes


def _item_dir(name: str) -> Path | None:
    """The model folder of item ``<method>-<W>`` as dvc.yaml declares it (None if not one)."""
    method, _, workers = name.rpartition("-")
    if not workers.isdigit():
        return None
    try:
        return pipeline.stage_item("rl", method=method, workers=int(workers)).out
    except InputError:  # no dvc.yaml here
        return None


def resolve_policy(run: str, seed: int | None = None) -> Path:
    path = Path(run)
    item = _item_dir(run) if not path.exists() else None
    if item is not None and item.exists():
        path = item
    if path.is_file():
        return path
    if not path.is_dir():
        raise InputError(
            "no such run (an item directory, an item name under models/rl, or a policy.pt)", run
        )
    seeds = sorted(path.glob("seed*/policy.pt"), key=lambda p: int(p.parent.name[4:] or 0))
    if seed is not None:
        chosen = path / f"seed{seed}" / "policy.pt"
        if not chosen.exists():
            have = [p.parent.name for p in seeds]
            raise InputError(f"no policy for seed {seed} (have {have})", path)
        return chosen
    if (path / "policy.pt").exists():
        return path / "policy.pt"
    if not seeds:
        raise InputError("no seed*/policy.pt in this directory", path)
    return seeds[0]


def load_policy(path: Path) -> tuple[ActorCritic, dict[str, Any]]:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        model = ActorCritic(ckpt["obs_dim"], ckpt["n_actions"], ckpt["hidden"])
        model.load_state_dict(ckpt["state_dict"])
    except Exception as err:  # noqa: BLE001 - any failure to read a user-given file is bad input
        raise InputError(
            f"not a saved rl policy ({str(err).splitlines()[0][:160]})", path
        ) from None
    model.eval()
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    return model, meta


def cartpole_strip(states: list[np.ndarray], path: Path, frames: int = 8) -> Path:
    """Draw ``frames`` evenly spaced CartPole states (x, x_dot, theta, theta_dot) side by side."""
    import matplotlib  # lazy: a plotting import costs a second: only a frame strip pays it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picks = np.unique(np.linspace(0, len(states) - 1, min(frames, len(states))).astype(int))
    fig, axes = plt.subplots(1, len(picks), figsize=(1.8 * len(picks), 2.0), squeeze=False)
    for ax, t in zip(axes[0], picks, strict=True):
        x, _, theta, _ = (float(v) for v in states[t])
        ax.plot([-2.4, 2.4], [0, 0], color="grey", linewidth=1)
        ax.add_patch(plt.Rectangle((x - 0.25, -0.12), 0.5, 0.24, color="tab:blue"))
        ax.plot(
            [x, x + np.sin(theta)], [0.12, 0.12 + np.cos(theta)], color="tab:brown", linewidth=4
        )
        ax.set(xlim=(-2.6, 2.6), ylim=(-0.4, 1.3), aspect="equal", title=f"t={t}")
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(path)
    return path


def play(
    run: str,
    episodes: int = 5,
    seed: int | None = None,
    env_seed: int = 0,
    greedy: bool = True,
    strip: Path | None = None,
) -> tuple[list[float], dict[str, Any], Path | None]:
    """Run ``episodes`` episodes of a saved policy; write a frame strip of episode 0 if asked."""
    path = resolve_policy(run, seed)
    model, meta = load_policy(path)
    env_id = str(meta.get("env", ""))
    info = check_env(env_id, where=f"{path}: env")
    if (info.obs_dim, info.n_actions) != (model.obs_dim, model.n_actions):
        raise InputError(
            f"policy does not fit {env_id} ({model.obs_dim} obs, {model.n_actions} actions)", path
        )
    want_strip = strip is not None and env_id.startswith("CartPole")
    stats, states = run_episodes(
        model, env_id, episodes, env_seed, greedy, record=0 if want_strip else None
    )
    written = cartpole_strip(states, strip) if want_strip and strip is not None else None
    return stats.returns, {**meta, "policy": str(path)}, written
