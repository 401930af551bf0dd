"""Figures and a table across the sgmcmc matrix (stage ``sgmcmc_report``).

Reads the metrics file and running-BMA CSVs of every ``sgmcmc@<protocol>-<W>`` item of
``sgmcmc.protocols`` x ``sgmcmc.workers`` and the SGD baseline (paths: dvc.yaml), and writes to
``reports/sgmcmc/``: ``accuracy_vs_time.png``, ``loglik_vs_time.png``,
``speedup_vs_workers.png`` (time for the BMA to reach 0.95 accuracy relative to ``single-1``, and
gradient throughput relative to it), ``bytes.png`` (bytes communicated per collected sample) and
``table.md``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from betamcmc import pipeline, tracking
from betamcmc.errors import InputError
from betamcmc.io import atomic_path
from betamcmc.params import Params
from betamcmc.pipeline import StageItem

ORDER = {"single": 0, "sync": 1, "downpour": 2, "elastic": 3}


def load_items(items: dict[str, StageItem]) -> list[dict[str, Any]]:
    """Metrics and running-BMA curves of every item (a missing file is an input error)."""
    out = []
    for name, stage in items.items():
        path = stage.path(".json")
        if not path.exists():
            raise InputError("metrics not found (run the sgmcmc stage first)", path)
        m = json.loads(path.read_text())
        m["item"] = name
        for col in ("bma_accuracy", "bma_log_likelihood"):
            with open(stage.path(f"_{col}.csv"), encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
            m[f"_{col}"] = ([float(r["wall_s"]) for r in rows], [float(r[col]) for r in rows])
        out.append(m)
    return sorted(out, key=lambda m: (ORDER.get(m["protocol"], 9), m["workers"]))


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b not in (None, 0) else None


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def write_report(
    items_by_name: dict[str, StageItem], sgd_path: Path | None, out_dir: Path
) -> dict[str, Any]:
    """Figures and ``table.md`` into ``out_dir`` (atomically); returns the speedups."""
    import matplotlib  # lazy: a plotting import costs a second: only the figures pay it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = load_items(items_by_name)
    sgd = json.loads(sgd_path.read_text()) if sgd_path is not None and sgd_path.exists() else None
    base = next((m for m in items if m["item"] == "single-1"), None)
    summary: dict[str, Any] = {}
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for key, fname, label in (
            ("_bma_accuracy", "accuracy_vs_time.png", "BMA test accuracy"),
            ("_bma_log_likelihood", "loglik_vs_time.png", "BMA mean test log-likelihood"),
        ):
            fig, ax = plt.subplots(figsize=(6.5, 4))
            for m in items:
                xs, ys = m[key]
                ax.plot(xs, ys, label=m["item"], linestyle="-" if m["workers"] > 1 else "--")
            if sgd is not None:
                ax.axhline(
                    sgd["accuracy" if "accuracy" in key else "log_likelihood"],
                    color="k",
                    lw=0.8,
                    label="SGD",
                )
            if "accuracy" in key:
                ax.set_ylim(0.85, 1.0)
            ax.set(xlabel="wall-clock seconds (burn-in included)", ylabel=label)
            ax.legend(fontsize=7)
            fig.tight_layout()
            fig.savefig(tmp / fname, dpi=110)
            plt.close(fig)

        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        for protocol in sorted({m["protocol"] for m in items}, key=lambda p: ORDER.get(p, 9)):
            ms = [m for m in items if m["protocol"] == protocol]
            ws = [m["workers"] for m in ms]
            if base is not None:
                t = [_ratio(base["time_to_acc95_s"], m["time_to_acc95_s"]) for m in ms]
                axes[0].plot(
                    ws, [v if v is not None else float("nan") for v in t], "o-", label=protocol
                )
                g = [_ratio(m["grad_evals_per_s"], base["grad_evals_per_s"]) for m in ms]
                axes[1].plot(
                    ws, [v if v is not None else float("nan") for v in g], "o-", label=protocol
                )
        axes[0].set(xlabel="workers W", ylabel="speedup to BMA acc 0.95 vs single-1")
        axes[1].set(xlabel="workers W", ylabel="gradient throughput vs single-1")
        for ax in axes:
            ax.axhline(1.0, color="k", lw=0.6)
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(tmp / "speedup_vs_workers.png", dpi=110)
        plt.close(fig)

        fig, ax = plt.subplots(figsize=(6.5, 3.5))
        ax.bar([m["item"] for m in items], [m["bytes_per_sample"] / 1e6 for m in items])
        ax.set(ylabel="MB sent per collected sample")
        ax.tick_params(axis="x", rotation=45, labelsize=7)
        fig.tight_layout()
        fig.savefig(tmp / "bytes.png", dpi=110)
        plt.close(fig)

        head = (
            "| item | accuracy | log-lik (mean / median / worst) | ECE | wall s | t->0.95 s | t->0.97 s "
            "| speedup 0.95 | grads/s | MB/sample | staleness | dead | ESS min | R-hat max |"
        )
        lines = [head, "|" + "---|" * 14]
        for m in items:
            speed = _ratio(base["time_to_acc95_s"], m["time_to_acc95_s"]) if base else None
            summary[m["item"]] = {"speedup_to_acc95": speed}
            lines.append(
                f"| {m['item']} | {_fmt(m['accuracy'])} | {_fmt(m['log_likelihood'], 3)} / "
                f"{_fmt(m['log_likelihood_median'], 3)} / {_fmt(m['log_likelihood_worst'], 3)} | {_fmt(m['ece'], 3)} "
                f"| {_fmt(m['wall_s'], 3)} | {_fmt(m['time_to_acc95_s'], 3)} | {_fmt(m['time_to_acc97_s'], 3)} "
                f"| {_fmt(speed, 3)} | {_fmt(m['grad_evals_per_s'], 4)} | {_fmt(m['bytes_per_sample'] / 1e6, 3)} "
                f"| {_fmt(m['staleness_mean'], 3)} | {m['dead_workers']} | {_fmt(m['ess_bulk_min'], 3)} | {_fmt(m['rhat_max'], 3)} |"
            )
        if sgd is not None:
            lines.append(
                f"| SGD ({sgd['steps']} steps) | {_fmt(sgd['accuracy'])} | {_fmt(sgd['log_likelihood'], 3)} / "
                f"{_fmt(sgd['log_likelihood_median'], 3)} / {_fmt(sgd['log_likelihood_worst'], 3)} | {_fmt(sgd['ece'], 3)} "
                f"| {_fmt(sgd['wall_s'], 3)} | - | - | - | - | - | - | - | - | - |"
            )
        text = "# SG-MCMC: protocols x workers\n\n" + "\n".join(lines) + "\n\n"
        text += (
            "Times are wall-clock seconds of sampling (burn-in included, process start-up excluded), "
            "measured on whatever else the machine was running; speedup = single-1's time to a BMA "
            "accuracy of 0.95 over the item's.\n"
        )
        (tmp / "table.md").write_text(text)
    return summary


def run_report(params: Params, stage: StageItem) -> dict[str, Any]:
    """The ``sgmcmc_report`` stage's work: the report of every configured item, one MLflow run."""
    sg = params.sgmcmc
    items = {
        f"{p}-{w}": pipeline.stage_item("sgmcmc", protocol=p, workers=w)
        for p in sg.protocols
        for w in sg.workers
    }
    sgd = pipeline.stage_item("sgmcmc_sgd").path(".json")
    with tracking.stage_run(params, stage):
        summary = write_report(items, sgd, stage.out)
        tracking.log_result(summary)
        tracking.log_artifacts(stage.out, stage.out.as_posix())
    return summary
