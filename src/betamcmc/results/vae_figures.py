"""Figures of the pretrain study: schedules, training curves, latent projections, toy experiment.

All functions write a PNG with matplotlib's non-interactive Agg backend and return nothing but
what they measured (the toy experiment returns its final numbers for the report table).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from betamcmc.vae.params import (  # noqa: E402
    ConstantSchedule,
    CyclicalSchedule,
    MonotonicSchedule,
    Schedule,
    VAEModelParams,
)
from betamcmc.vae.schedules import beta_at, beta_curve  # noqa: E402

if TYPE_CHECKING:
    import torch

    from betamcmc.vae.model import TextVAE


def _save(fig: Any, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_schedules(schedules: Mapping[str, Any], total: int, path: str | Path) -> None:
    """beta against the iteration for every configured schedule (one panel each)."""
    names = list(schedules)
    fig, axes = plt.subplots(
        len(names), 1, figsize=(7, 1.6 * len(names) + 0.6), sharex=True, squeeze=False
    )
    steps = np.arange(total)
    for ax, name in zip(axes[:, 0], names, strict=True):
        ax.plot(steps, beta_curve(schedules[name], total), lw=1.5)
        ax.set_ylabel("beta")
        ax.set_title(f"{name} ({schedules[name].kind})", fontsize=9)
        ax.set_ylim(-0.05, max(1.05, max(beta_curve(schedules[name], total)) + 0.05))
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("iteration")
    _save(fig, path)


def plot_curves(curves: Mapping[str, Mapping[str, Sequence[float]]], path: str | Path) -> None:
    """Training beta / reconstruction / KL per iteration, every schedule overlaid."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for name, c in curves.items():
        for ax, key in zip(axes, ("beta", "recon", "kl"), strict=True):
            ax.plot(c["iteration"], c[key], label=name, lw=1.2)
    for ax, title in zip(
        axes, ("beta", "reconstruction (nats/sentence)", "KL (nats/sentence)"), strict=True
    ):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    _save(fig, path)


def plot_code_curves(curves: Mapping[str, Mapping[str, Sequence[float]]], path: str | Path) -> None:
    """Validation KL, mutual information and active units at every evaluation, per schedule:
    whether and when each schedule's latent code collapses."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for name, c in curves.items():
        for ax, key in zip(axes, ("kl", "mi", "au"), strict=True):
            ax.plot(c["iteration"], c[key], label=name, lw=1.2, marker="o", ms=3)
    for ax, title in zip(
        axes, ("KL (nats/sentence)", "mutual information I(x; z)", "active units"), strict=True
    ):
        ax.set_title(f"validation: {title}", fontsize=10)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    _save(fig, path)


def project_2d(mu: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """PCA of the posterior means to 2-D; returns the points and the explained variance shares."""
    centred = mu - mu.mean(0, keepdims=True)
    if centred.shape[1] == 1:
        centred = np.concatenate([centred, np.zeros_like(centred)], 1)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    total = float((s**2).sum()) or 1.0
    return centred @ vt[:2].T, [float(v) / total for v in (s[:2] ** 2)]


def plot_latent(
    mu: np.ndarray,
    labels: Mapping[str, Sequence[int]],
    label_names: Mapping[str, Sequence[str]],
    title: str,
    path: str | Path,
) -> None:
    """2-D PCA of posterior means, one panel per label factor (or one grey panel if unlabeled)."""
    points, share = project_2d(mu)
    factors = [f for f in label_names if f in labels] or [None]
    fig, axes = plt.subplots(1, len(factors), figsize=(4.2 * len(factors), 3.8), squeeze=False)
    for ax, factor in zip(axes[0], factors, strict=True):
        if factor is None:
            ax.scatter(points[:, 0], points[:, 1], s=6, c="grey", alpha=0.6)
        else:
            values = np.asarray(labels[factor])
            cmap = plt.get_cmap("tab10")
            for k, cls in enumerate(label_names[factor]):
                sel = values == k
                ax.scatter(
                    points[sel, 0], points[sel, 1], s=6, color=cmap(k % 10), alpha=0.7, label=cls
                )
            ax.legend(fontsize=7, markerscale=2, title=factor, title_fontsize=8)
        ax.set_xlabel(f"PC1 ({share[0]:.0%})")
        ax.set_ylabel(f"PC2 ({share[1]:.0%})" if len(share) > 1 else "PC2")
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


TOY_SCHEDULES = {
    "constant": ConstantSchedule(kind="constant"),
    "monotonic": MonotonicSchedule(kind="monotonic", ratio=0.25),
    "cyclical": CyclicalSchedule(kind="cyclical", cycles=4, ratio=0.5),
}
# the toy's LSTM VAE (vocabulary 100): small, 2-D latent space, no dropout
TOY_MODEL = VAEModelParams(
    emb_dim=32,
    hidden_dim=64,
    latent_dim=2,
    bidirectional=False,
    z_to_decoder="both",
    dropout=0.0,
    word_dropout=0.0,
)
TOY_VOCAB, TOY_LR, TOY_CLIP = 100, 3e-3, 5.0


def toy_experiment(
    path: str | Path, seed: int = 0, iterations: int = 1200
) -> dict[str, dict[str, float]]:
    """The paper's toy illustration: a handful of sequences, constant vs monotonic vs cyclical beta.

    Ten random sequences of ten tokens (vocabulary 100) are modelled by a small LSTM VAE with a
    2-D latent space (no dropout), trained full-batch for ``iterations`` steps under beta = 1,
    a monotonic ramp (first 25 %) and a cyclical schedule (4 cycles, ramp 50 %). The figure shows
    beta, the KL term and the posterior means (+-1 std) of the ten sequences at the end: under
    constant beta the codes collapse onto the prior and cannot tell the sequences apart.
    Returns the final KL, reconstruction and mutual information per schedule.
    """
    # lazy: torch (a second) only for this figure, not for `betamcmc schedule plot`
    import torch

    from betamcmc.vae.model import pad_batch

    gen = torch.Generator().manual_seed(seed)
    ids, lengths = pad_batch(torch.randint(4, TOY_VOCAB, (10, 10), generator=gen).tolist())
    results: dict[str, dict[str, float]] = {}
    fig, axes = plt.subplots(len(TOY_SCHEDULES), 3, figsize=(12, 3.0 * len(TOY_SCHEDULES)))
    for row, (name, schedule) in enumerate(TOY_SCHEDULES.items()):
        model, curves = train_toy(ids, lengths, schedule, seed, iterations)
        results[name], codes = measure_toy(model, ids, lengths, seed)
        plot_toy_row(axes[row], name, curves, codes, results[name])
    _save(fig, path)
    return results


def train_toy(
    ids: torch.Tensor, lengths: torch.Tensor, schedule: Schedule, seed: int, iterations: int
) -> tuple[TextVAE, dict[str, list[float]]]:
    """The toy VAE (initialized from ``seed``) trained full-batch under ``schedule`` with plain
    Adam; returns it and its beta, KL and reconstruction at every step."""
    # lazy: torch, as in toy_experiment
    import torch

    from betamcmc.vae.step import train_step
    from betamcmc.vae.train import build_model

    torch.manual_seed(seed)
    model = build_model(TOY_MODEL, TOY_VOCAB)
    optimizer = torch.optim.Adam(model.parameters(), lr=TOY_LR)
    curves: dict[str, list[float]] = {"beta": [], "kl": [], "recon": []}
    for iteration in range(iterations):
        beta = beta_at(schedule, iteration, iterations)
        out = train_step(model, optimizer, ids, lengths, beta, TOY_CLIP, "toy", iteration)
        curves["beta"].append(beta)
        curves["kl"].append(float(out["kl"]))
        curves["recon"].append(float(out["recon"]))
    return model, curves


def measure_toy(
    model: TextVAE, ids: torch.Tensor, lengths: torch.Tensor, seed: int
) -> tuple[dict[str, float], tuple[np.ndarray, np.ndarray]]:
    """The trained toy model's KL, reconstruction (at z = mu) and mutual information, and the
    posterior means and standard deviations of the ten sequences."""
    # lazy: torch, as in toy_experiment
    import torch

    from betamcmc.vae.evaluate import mutual_information
    from betamcmc.vae.model import gaussian_kl

    model.eval()
    with torch.no_grad():
        mu, logvar = model.encode(ids, lengths)
        recon = float(model.reconstruction_nll(ids, lengths, mu).mean())
        kl = float(gaussian_kl(mu, logvar).mean())
        mi, _ = mutual_information(mu, logvar, torch.Generator().manual_seed(seed))
    return {"kl": kl, "recon": recon, "mi": mi}, (mu.numpy(), np.exp(0.5 * logvar.numpy()))


def plot_toy_row(
    axes: Sequence[Any],
    name: str,
    curves: Mapping[str, Sequence[float]],
    codes: tuple[np.ndarray, np.ndarray],
    measured: Mapping[str, float],
) -> None:
    """One schedule's row of the toy figure: beta, the KL and reconstruction curves, and the
    posteriors (mean +-1 std) of the ten sequences."""
    ax_b, ax_k, ax_z = axes
    ax_b.plot(curves["beta"], color="k", lw=1)
    ax_b.set_ylabel(f"{name}\nbeta")
    ax_k.plot(curves["kl"], label="KL", lw=1)
    ax_k.plot(curves["recon"], label="recon", lw=1)
    ax_k.set_yscale("symlog")
    ax_k.legend(fontsize=7)
    mean, std = codes
    cmap = plt.get_cmap("tab10")
    for i in range(len(mean)):
        ax_z.errorbar(
            mean[i, 0],
            mean[i, 1],
            xerr=std[i, 0],
            yerr=std[i, 1],
            fmt="o",
            ms=4,
            color=cmap(i),
            alpha=0.8,
        )
    kl, mi = measured["kl"], measured["mi"]
    ax_z.set_title(f"q(z|x) of 10 sequences: KL {kl:.2f}, MI {mi:.2f}", fontsize=9)
    lim = max(3.0, float(np.abs(mean).max() + std.max()) * 1.1)
    ax_z.set_xlim(-lim, lim)
    ax_z.set_ylim(-lim, lim)
    for ax in (ax_b, ax_k):
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
