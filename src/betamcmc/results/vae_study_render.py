"""Draw a collected study (:mod:`betamcmc.results.vae_study`) into ``study_<name>.md`` and ``.png``:
the ``pretrain_report`` stage does it for every file of ``metrics/studies/``.

A grid study with two varying params is drawn as lines against the first, one per value of the
second (dashed: the reference schedules of its ``extra`` blocks); any other study as bars of the
test metrics per experiment and the validation curves of every experiment. The table below the
figure gives the test metrics as mean ± std over the seeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def render(study: dict[str, Any], out_dir: Path) -> dict[str, float]:
    """``study_<name>.md`` and ``study_<name>.png``: a grid study (two varying params) as lines
    against the first, one per value of the second; any other study as a table and bars."""
    grid = study["spec"].get("grid")
    if grid and len(grid) == 2:
        return _render_grid(study, out_dir)
    return _render_list(study, out_dir)


def _mean_std(test: dict[str, float], key: str) -> str:
    """``mean ± std`` of a test metric to two decimals (the mean alone without a std)."""
    std = test.get(f"{key}_std")
    return f"{test[key]:.2f} ± {std:.2f}" if std is not None else f"{test[key]:.2f}"


def _table_lines(study: dict[str, Any]) -> list[str]:
    lines = [
        "| experiment | settings | schedule | KL | MI | AU | NLL (IS) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in study["experiments"]:
        name = row["name"]
        sets = ", ".join(f"`{k}={v}`" for k, v in row["set"].items()) or "(defaults)"
        for schedule, m in row["schedules"].items():
            t = m["test"]
            lines.append(
                f"| {name} | {sets} | {schedule} | {_mean_std(t, 'kl')} | "
                f"{_mean_std(t, 'mi')} | {_mean_std(t, 'au')} | {_mean_std(t, 'nll')} |"
            )
            name = sets = ""  # named once per experiment
    return lines


def _write_markdown(study: dict[str, Any], out_dir: Path, intro: list[str]) -> None:
    name = study["name"]
    missing = study.get("missing") or []
    text = [
        f"# Study `{name}` ({len(study['experiments'])} DVC experiments)",
        "",
        *intro,
        "",
        *_table_lines(study),
        "",
    ]
    if missing:
        text += [f"Not (yet) collected: {', '.join(missing)}.", ""]
    file = study.get("file", f"studies/{name}.yaml")
    text += [
        f"Figure: study_{name}.png. Reproduce: `betamcmc study queue {file}`, "
        f"`dvc queue start`, `betamcmc study collect {file}` (docs/pretrain.md).",
        "",
    ]
    (out_dir / f"study_{name}.md").write_text("\n".join(text), encoding="utf-8")


def _render_grid(study: dict[str, Any], out_dir: Path) -> dict[str, float]:
    import matplotlib  # lazy: a plotting import costs a second: only drawing pays it, not the CLI

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (x_param, xs), (s_param, series) = list(study["spec"]["grid"].items())
    refs = {}  # reference schedules (from `extra`) by the series value
    points: dict[Any, list[tuple[Any, dict[str, float]]]] = {s: [] for s in series}
    for row in study["experiments"]:
        for schedule, m in row["schedules"].items():
            if x_param in row["set"]:
                points[row["set"][s_param]].append((row["set"][x_param], m["test"]))
            elif s_param in row["set"]:
                refs[row["set"][s_param]] = (schedule, m["test"])
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.4))
    for ax, key, title in zip(
        axes,
        ("kl", "mi", "au", "nll"),
        ("KL (nats)", "MI", "active units", "NLL (IS, nats)"),
        strict=True,
    ):
        for k, s in enumerate(series):
            pts = sorted(points[s], key=lambda p: p[0])
            if pts:
                ax.errorbar(
                    [p[0] for p in pts],
                    [p[1][key] for p in pts],
                    yerr=[p[1].get(f"{key}_std") or 0.0 for p in pts],
                    marker="o",
                    capsize=3,
                    color=f"C{k}",
                    label=f"{s_param.split('.')[-1]}={s}",
                )
            if s in refs:
                ax.axhline(
                    refs[s][1][key],
                    color=f"C{k}",
                    ls="--",
                    lw=1,
                    label=f"{refs[s][0]} ({s_param.split('.')[-1]}={s})",
                )
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(xs), [str(x) for x in xs])
        ax.set_xlabel(x_param.split(".")[-1])
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / f"study_{study['name']}.png", dpi=110)
    plt.close(fig)
    intro = [
        f"Test metrics (mean ± std over seeds) against `{x_param}`, one line per `{s_param}`; "
        "dashed: the reference schedule at the same setting."
    ]
    _write_markdown(study, out_dir, intro)
    return {f"{study['name']}_points": float(sum(len(p) for p in points.values()))}


# one line style per schedule of a listed study, in sorted order: matplotlib's code -> its name
_LINESTYLES = {"-": "solid", "--": "dashed", ":": "dotted", "-.": "dash-dot"}


def _render_list(study: dict[str, Any], out_dir: Path) -> dict[str, float]:
    import matplotlib  # lazy: see _render_grid

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = study["experiments"]
    schedules = sorted({s for r in rows for s in r["schedules"]})
    fig = plt.figure(figsize=(15, 6.8))
    _draw_bars(fig, rows, schedules)
    _draw_curves(fig, rows, schedules)
    fig.axes[-3].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(out_dir / f"study_{study['name']}.png", dpi=110)
    plt.close(fig)
    _write_markdown(
        study, out_dir, ["Test metrics (mean ± std over seeds) of every experiment of the study."]
    )
    return {f"{study['name']}_experiments": float(len(rows))}


def _draw_bars(fig: Any, rows: list[dict[str, Any]], schedules: list[str]) -> None:
    """The top row: test KL, MI and NLL of every experiment, one bar per schedule."""
    import numpy as np  # lazy: see _render_grid

    bars = [fig.add_subplot(2, 3, i + 1) for i in range(3)]
    x = np.arange(len(rows))
    width = 0.8 / max(1, len(schedules))
    for k, schedule in enumerate(schedules):
        for ax, key in zip(bars, ("kl", "mi", "nll"), strict=True):
            vals = [r["schedules"].get(schedule, {}).get("test", {}).get(key, np.nan) for r in rows]
            errs = [
                r["schedules"].get(schedule, {}).get("test", {}).get(f"{key}_std") or 0.0
                for r in rows
            ]
            ax.bar(x + k * width, vals, width, yerr=errs, capsize=2, label=schedule, color=f"C{k}")
    for ax, title in zip(bars, ("test KL (nats)", "test MI", "test NLL (IS, nats)"), strict=True):
        ax.set_xticks(
            x + 0.4 - width / 2,
            [r["name"].split("-", 1)[1] for r in rows],
            rotation=40,
            ha="right",
            fontsize=7,
        )
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    nll = [s["test"]["nll"] for r in rows for s in r["schedules"].values()]
    bars[2].set_ylim(bottom=min(nll or [0]) * 0.97)
    bars[0].legend(fontsize=8)


def _draw_curves(fig: Any, rows: list[dict[str, Any]], schedules: list[str]) -> None:
    """The bottom row: validation KL, MI and AU during training of every experiment; colour =
    experiment, line style = schedule (the same in all three panels)."""
    codes = list(_LINESTYLES)
    style = {s: codes[k % len(codes)] for k, s in enumerate(schedules)}
    styles = ", ".join(f"{_LINESTYLES[style[s]]}: {s}" for s in schedules)
    for i, key in enumerate(("kl", "mi", "au")):
        ax = fig.add_subplot(2, 3, 4 + i)
        for j, row in enumerate(rows):
            label = row["name"].split("-", 1)[1]  # on the experiment's first curve only
            for schedule in schedules:
                c = row["schedules"].get(schedule, {}).get("curve")
                if c:
                    ax.plot(
                        c["iteration"],
                        c[key],
                        color=f"C{j % 10}",
                        ls=style[schedule],
                        lw=1,
                        label=label,
                    )
                    label = None
        if i == 0:  # the legend's key to the line styles
            for schedule in schedules:
                ax.plot([], [], color="0.3", ls=style[schedule], lw=1, label=schedule)
        ax.set_title(f"validation {key.upper()} during training ({styles})", fontsize=8)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
