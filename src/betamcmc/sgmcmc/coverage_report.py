"""The 25-Gaussian coverage study in words and pictures (``sgmcmc_cyclical``): its table, the
verdict read from the paired comparisons, and the figure.

:func:`verdict_lines` and :func:`table_rows` take the metrics file as written by
:mod:`betamcmc.sgmcmc.coverage` (also what the results page reads), so every sentence is
computed from the numbers: "more modes" only where the paired 95 % interval of the difference
(arm - the arm it is compared with, same seeds) is above 0, "fewer" only where it is below.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from betamcmc.core.stats import fmt, fmt_ci, fmt_paired

if TYPE_CHECKING:
    from betamcmc.sgmcmc.engine.samples import Samples
    from betamcmc.sgmcmc.mixture import Mixture

TABLE_HEAD = [
    "arm", "modes visited", "TV to the weights", "off-mode share", "gradients", "wall s",
    "samples kept",
]  # fmt: skip
WORDS = {
    "modes_visited": {"better": "more modes", "worse": "fewer modes"},
    "mode_tv": {"better": "a smaller TV distance", "worse": "a larger TV distance"},
}


def summary(arm: dict[str, Any], key: str) -> dict[str, Any]:
    """The ``mean_std_ci``-shaped summary of ``key`` from an arm's flat aggregate entries."""
    return {
        "mean": arm.get(key),
        **{k: arm.get(f"{key}_{k}") for k in ("std", "ci_low", "ci_high")},
    }


def cell(arm: dict[str, Any], key: str, digits: int = 3) -> str:
    s = summary(arm, key)
    if s["mean"] is None:
        return "-"
    return fmt(s["mean"], digits) if s["std"] is None else fmt_ci(s, digits)


def table_rows(metrics: dict[str, Any]) -> list[list[str]]:
    """One row per arm: coverage with its interval over seeds, gradients, time, samples."""
    return [
        [name, cell(a, "modes_visited"), cell(a, "mode_tv"), fmt(a.get("off_mode")),
         fmt(a.get("grads"), 6), fmt(a.get("wall_s")), fmt(a.get("samples_kept"), 6)]
        for name, a in (metrics.get("arms") or {}).items()
    ]  # fmt: skip


def verdict_lines(metrics: dict[str, Any]) -> list[str]:
    """Per compared pair and metric, in words, with the paired interval."""
    lines = []
    for c in metrics.get("comparisons") or []:
        said = WORDS[c["metric"]].get(c["verdict"])
        what = "modes visited" if c["metric"] == "modes_visited" else "TV distance"
        if said is None:
            text = f"no difference in {what} shown at {c['n']} seeds"
        else:
            text = f"**{said}** for {c['arm']}"
        overlap = "overlap" if c.get("intervals_overlap") else "do not overlap"
        lines.append(
            f"- {c['arm']} vs {c['against']}: {text} "
            f"({fmt_paired(c)}; the arms' 95 % intervals {overlap})."
        )
    return lines


def table_text(metrics: dict[str, Any]) -> str:
    """``table.md``: settings, the table over seeds and the verdict."""
    s = metrics["settings"]
    head = "| " + " | ".join(TABLE_HEAD) + " |\n|" + "---|" * len(TABLE_HEAD)
    rows = "\n".join("| " + " | ".join(r) + " |" for r in table_rows(metrics))
    return (
        "# Cyclical against constant steps on the 25-Gaussian target\n\n"
        f"{s['modes']} modes {s['spacing']:g} apart, variance {s['variance']:g}, gradient noise "
        f"std {s['noise_std']:g}; {s['kind']}, step budget K = {s['chain_steps']} steps per chain "
        f"block (burn-in {s['burn_in']}, thinning {s['thinning']}); constant eta "
        f"{s['step_size']:g}, cyclical alpha_0 {s['cyclical_step_size']:g} over {s['cycles']} "
        f"cycles, exploration {s['exploration']:g}, phase {s['phase']:g}; {s['workers']} workers "
        f"(single: 1), tau {s['period']}, elastic alpha {s['alpha']:g}. Samples of all chains of "
        f"a run pooled; mean ± sample std [95 % t-interval] over seeds {metrics['seeds']}.\n\n"
        f"{head}\n{rows}\n\n"
        "## Does the cyclical schedule visit more modes?\n\n"
        "Per protocol cyclical against constant steps, then each asynchronous cyclical arm "
        "against the single cyclical chain; paired by seed (wins = seeds where the first arm is "
        "better; Δ = first − second); an ordering only where the interval of Δ excludes 0.\n\n"
        + "\n".join(verdict_lines(metrics))
        + "\n\n![samples and coverage](mixture.png)\n"
    )


def draw_figure(
    path: Path,
    mixture: Mixture,
    samples: dict[str, list[Samples]],
    rows: list[dict[str, Any]],
    radius: float,
) -> None:
    """One panel per arm (target density contours, the first seed's samples), then modes
    visited and TV against gradients per arm (seed mean with its 95 % interval)."""
    import matplotlib  # lazy: a plotting import costs a second: only the figure pays it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(samples)
    cols = 4
    n_rows = -(-(len(names) + 2) // cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(3.3 * cols, 3.2 * n_rows), squeeze=False)
    flat = list(axes.flat)
    grid = np.linspace(-6.0, 6.0, 160)
    xx, yy = np.meshgrid(grid, grid)
    dens = np.exp(mixture.log_density(np.c_[xx.ravel(), yy.ravel()])).reshape(xx.shape)
    for ax, name in zip(flat, names, strict=False):
        theta = samples[name][0].theta
        ax.contour(xx, yy, dens, levels=4, colors="0.6", linewidths=0.6)
        ax.scatter(theta[:, 0], theta[:, 1], s=3, alpha=0.5, color="C3")
        ax.set(title=f"{name} ({len(theta)} samples)", xlim=(-6, 6), ylim=(-6, 6), aspect="equal")
        ax.title.set_fontsize(8)
        ax.tick_params(labelsize=7)
    for ax, key, label in (
        (flat[len(names)], "modes_visited", "modes visited"),
        (flat[len(names) + 1], "mode_tv", "TV to the weights"),
    ):
        _curve_panel(ax, rows, key, label)
    for ax in flat[len(names) + 2 :]:
        ax.axis("off")
    fig.suptitle("samples: first seed; curves: seed mean, 95 % interval", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _curve_panel(ax: Any, rows: list[dict[str, Any]], key: str, label: str) -> None:
    """``key`` against gradients, one line per arm with its interval as a band."""
    protocols = list(dict.fromkeys(r["protocol"] for r in rows))
    for arm in dict.fromkeys(r["arm"] for r in rows):
        mine = [r for r in rows if r["arm"] == arm and r["axis"] == "grads"]
        x = np.array([r["x"] for r in mine])
        color = f"C{protocols.index(mine[0]['protocol'])}"
        style = "-" if mine[0]["schedule"] == "cyclical" else "--"
        ax.plot(x, [r[key] for r in mine], style, color=color, label=arm, lw=1.2)
        low, high = (
            [np.nan if r[k] is None else r[k] for r in mine]
            for k in (f"{key}_ci_low", f"{key}_ci_high")
        )
        ax.fill_between(x, low, high, color=color, alpha=0.15)
    ax.set(xlabel="gradients", ylabel=label)
    ax.legend(fontsize=6)
