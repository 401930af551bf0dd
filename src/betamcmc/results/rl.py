"""The RL report (stage ``report``): a markdown table and learning-curve figures of every item.

Reads the metrics file and curve of every ``rl@<method>-<W>`` item of ``rl.methods`` x
``rl.workers`` (paths: dvc.yaml) and writes ``reports/rl/`` (one directory, atomically):
``table.md`` (final return, steps to the solve threshold, wall-clock, throughput), ``curves.png``
(return mean +- std over seeds against environment steps and against wall-clock seconds, policy
entropy against steps).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from betamcmc.core import pipeline
from betamcmc.core.errors import InputError
from betamcmc.core.io import atomic_path, read_json
from betamcmc.core.stats import fmt_ci, fmt_paired, paired, verdict
from betamcmc.rl.evaluate import read_curve

if TYPE_CHECKING:
    from betamcmc.params import Params

Items = list[tuple[str, dict[str, Any], dict[str, list[float]]]]  # (item, metrics, curve)
BASELINE = "sgd-downpour"  # the noise-free method every SG-MCMC method is compared with


def _steps_or_never(steps: float | None) -> str:
    """Steps to the threshold as the table prints them: whole steps, ``never`` for None (not
    :func:`betamcmc.core.stats.fmt`, which rounds to 3 significant figures and prints None as
    ``-``)."""
    return "never" if steps is None else f"{steps:.0f}"


def markdown_table(items: Items) -> str:
    first = items[0][1]
    lines = [
        f"# rl: {first['env']} (solve threshold {first['reward_threshold']})",
        "",
        "Final return: the master's policy after the budget, mean over `final_episodes` episodes "
        "per seed, then mean ± std [95 % t-interval] over seeds. Curve mean: mean return over the snapshots "
        "(area under the learning curve / length). Steps to solve: median over seeds of the first "
        "snapshot reaching the threshold ('never' unless at least half the seeds got there); "
        "solved = seeds whose curve reached it, nothing more is claimed.",
        "",
        "| item | T | seeds | final return | curve mean | solved | steps to solve | env steps "
        "| wall s | env steps/s | entropy (final) | dead workers |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for item, s, _ in items:
        lines.append(
            f"| {item} | {s['temperature']:g} | {s['seeds']} | {_ci(s, 'final_return')} "
            f"| {_ci(s, 'curve_return')} | {s['solved_runs']}/{s['seeds']} "
            f"| {_steps_or_never(s['steps_to_threshold_median'])} | {s['env_steps_mean']:.0f} "
            f"| {_ci(s, 'wall_s')} | {s['env_steps_per_s']:.0f} | {s['entropy_final_mean']:.3f} "
            f"| {s['dead_workers']} |"
        )
    lines += ["", *comparison_lines(items)]
    return "\n".join(lines) + "\n"


def _ci(s: dict[str, Any], name: str) -> str:
    """``mean ± std [low, high]`` of ``<name>_mean`` and its spread keys."""
    return fmt_ci(
        {
            "mean": s[f"{name}_mean"],
            "std": s.get(f"{name}_std"),
            "ci_low": s.get(f"{name}_ci_low"),
            "ci_high": s.get(f"{name}_ci_high"),
        }
    )


def compare_items(
    items: list[tuple[str, dict[str, Any], dict[str, list[float]]]],
) -> dict[str, dict[str, Any]]:
    """Each method against :data:`BASELINE` at the same W, paired by seed, on the final and
    the curve-mean return (higher is better), each with its :func:`betamcmc.core.stats.verdict`."""
    by_item = {item: s for item, s, _ in items}
    out: dict[str, dict[str, Any]] = {}
    for item, s, _ in items:
        base = by_item.get(f"{BASELINE}-{s['workers']}")
        if base is None or s["method"] == BASELINE:
            continue
        seeds = [k for k in s["per_seed"] if k in base["per_seed"]]
        out[item] = {}
        for key in ("final_return", "curve_return"):
            if not seeds or any(key not in s["per_seed"][k] for k in seeds):
                continue
            comparison = paired(
                [s["per_seed"][k][key] for k in seeds], [base["per_seed"][k][key] for k in seeds]
            )
            out[item][key] = {**comparison, "verdict": verdict(comparison)}
    return out


def comparison_lines(items: Items) -> list[str]:
    """The paired comparisons as a table: the only orderings the report states."""
    comparisons = compare_items(items)
    if not comparisons:
        return []
    lines = [
        f"## Against {BASELINE} (paired by seed)",
        "",
        "Verdict from the 95 % t-interval of the per-seed difference (method − baseline): "
        "better / worse only where it excludes 0, else indistinguishable; wins = seeds where the "
        "method's return is higher.",
        "",
        "| item | final return | curve mean |",
        "|---|---|---|",
    ]
    for item, c in comparisons.items():
        cells = [
            f"{c[k]['verdict']}: {fmt_paired(c[k], 3)}" if k in c else "-"
            for k in ("final_return", "curve_return")
        ]
        lines.append(f"| {item} | {' | '.join(cells)} |")
    return lines


def curves_figure(
    path: Path,
    items: list[tuple[str, dict[str, Any], dict[str, list[float]]]],
    threshold: float | None,
) -> None:
    import matplotlib  # lazy: a plotting import costs a second: only the report's figure pays it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for item, _, c in items:
        mean, std = np.asarray(c["return_mean"]), np.asarray(c["return_std"])
        for ax, x in ((axes[0], c["env_steps"]), (axes[1], c["wall_s"])):
            (line,) = ax.plot(x, mean, marker=".", label=item)
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.15)
        ent, ent_std = np.asarray(c["entropy_mean"]), np.asarray(c["entropy_std"])
        (line,) = axes[2].plot(c["env_steps"], ent, marker=".", label=item)
        axes[2].fill_between(
            c["env_steps"], ent - ent_std, ent + ent_std, color=line.get_color(), alpha=0.15
        )
    for ax in axes[:2]:
        if threshold is not None:
            ax.axhline(threshold, color="grey", linestyle="--", linewidth=0.8)
        ax.set_ylabel("evaluation return (mean +- std over seeds)")
    axes[0].set_xlabel("environment steps (all workers)")
    axes[1].set_xlabel("wall-clock seconds (after process start-up)")
    axes[2].set(xlabel="environment steps (all workers)", ylabel="policy entropy (nats)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def read_area(params: Params) -> Items:
    """Every rl item's metrics and learning curve (a missing or bad file: an input error)."""
    out = []
    for workers in params.rl.workers:
        for method in params.rl.methods:
            stage = pipeline.stage_item("rl", method=method, workers=workers)
            item, path = stage.key, stage.path(".json")
            try:
                summary = read_json(path)
            except FileNotFoundError:
                raise InputError("metrics not found (run the rl stage first)", path) from None
            except ValueError as err:
                raise InputError(f"metrics are not JSON ({err})", path) from None
            out.append((item, summary, read_curve(stage.path("_curve.csv"))))
    return out


def write_area(items: Items, out_dir: Path) -> None:
    """``table.md`` and ``curves.png`` of the rl items into ``out_dir`` (atomically)."""
    threshold = items[0][1]["reward_threshold"]
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        (tmp / "table.md").write_text(markdown_table(items), encoding="utf-8")
        curves_figure(tmp / "curves.png", items, threshold)
