"""The ``rl_report`` stage's outputs: a markdown table and learning-curve figures of every item.

Reads the metrics file and curve of every ``rl@<method>-<W>`` item of ``rl.methods`` x
``rl.workers`` (paths: dvc.yaml) and writes ``reports/rl/`` (one directory, atomically): ``table.md`` (final return,
steps to the solve threshold, wall-clock, throughput), ``curves.png`` (return mean +- std over
seeds against environment steps and against wall-clock seconds, policy entropy against steps).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from betamcmc import pipeline, tracking
from betamcmc.errors import InputError
from betamcmc.io import atomic_path, read_json
from betamcmc.params import Params
from betamcmc.pipeline import StageItem
from betamcmc.rl.evaluate import read_curve


def load_items(params: Params) -> list[tuple[str, dict[str, Any], dict[str, list[float]]]]:
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


def _num(value: Any, fmt: str = "{:.1f}") -> str:
    return "never" if value is None else fmt.format(value)


def markdown_table(items: list[tuple[str, dict[str, Any], dict[str, list[float]]]]) -> str:
    first = items[0][1]
    lines = [
        f"# rl: {first['env']} (solve threshold {first['reward_threshold']})",
        "",
        "Final return: the master's policy after the budget, mean over `final_episodes` episodes "
        "per seed, then mean +- std over seeds. Curve mean: mean return over the snapshots "
        "(area under the learning curve / length). Steps to solve: median over seeds of the first "
        "snapshot reaching the threshold ('never' unless at least half the seeds got there).",
        "",
        "| item | T | seeds | final return | curve mean | solved | steps to solve | env steps "
        "| wall s | env steps/s | entropy (final) | dead workers |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for item, s, _ in items:
        std = s["final_return_std"]
        final = f"{s['final_return_mean']:.1f}" + (f" +- {std:.1f}" if std is not None else "")
        wall = f"{s['wall_s_mean']:.1f}" + (
            f" +- {s['wall_s_std']:.1f}" if s["wall_s_std"] is not None else ""
        )
        lines.append(
            f"| {item} | {s['temperature']:g} | {s['seeds']} | {final} "
            f"| {s['curve_return_mean']:.1f} | {s['solved_runs']}/{s['seeds']} "
            f"| {_num(s['steps_to_threshold_median'], '{:.0f}')} | {s['env_steps_mean']:.0f} "
            f"| {wall} | {s['env_steps_per_s']:.0f} | {s['entropy_final_mean']:.3f} "
            f"| {s['dead_workers']} |"
        )
    return "\n".join(lines) + "\n"


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


def write_report(params: Params, out_dir: Path) -> Path:
    items = load_items(params)
    threshold = items[0][1]["reward_threshold"]
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        (tmp / "table.md").write_text(markdown_table(items), encoding="utf-8")
        curves_figure(tmp / "curves.png", items, threshold)
    return out_dir


def run_report(params: Params, stage: StageItem) -> Path:
    """The ``rl_report`` stage's work: the report into ``stage.out``, one MLflow run."""
    with tracking.stage_run(params, stage):
        out = write_report(params, stage.out)
        tracking.log_artifacts(out, stage.out.as_posix())
    return out
