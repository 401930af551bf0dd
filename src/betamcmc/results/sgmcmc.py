"""Figures, a table and paired protocol comparisons across the sgmcmc items (stage ``report``).

Reads the metrics file and running-BMA CSVs of every ``sgmcmc@<protocol>-<W>`` item of
``sgmcmc.items`` and the SGD baseline (paths: dvc.yaml), and writes to ``reports/sgmcmc/``:
``accuracy_vs_time.png``, ``loglik_vs_time.png`` (seed-mean running BMA),
``speedup_vs_workers.png`` (mean time for the BMA to reach 0.95 accuracy relative to ``single-1``,
and gradient throughput relative to it), ``bytes.png`` (bytes communicated per collected sample),
``table.md`` and ``comparisons.json``.

What the report may say (and nothing else):

* every number over seeds is ``mean ± std [95 % CI]`` (:mod:`betamcmc.core.stats`);
* every item's chains are judged by one rule (:data:`~betamcmc.sgmcmc.evaluate.RHAT_MAX`,
  :data:`~betamcmc.sgmcmc.evaluate.ESS_MIN`, Vehtari et al. 2021); an item that fails it is
  marked "unconverged: no posterior conclusion", and its comparisons are of predictive numbers
  only;
* an ordering ("better", "worse") only where :func:`betamcmc.core.stats.verdict` of the paired
  per-seed comparison says so, printed with its interval and win count; otherwise
  "indistinguishable";
* each item's gradient budget against ``single-1``'s (the arms collect the same samples with the
  same burn-in and thinning, but not every protocol spends the same gradient evaluations on it).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from betamcmc.core import pipeline
from betamcmc.core.errors import InputError
from betamcmc.core.io import atomic_path
from betamcmc.core.pipeline import StageItem
from betamcmc.core.stats import fmt, fmt_ci, fmt_paired, paired, verdict

if TYPE_CHECKING:
    from betamcmc.params import Params

ORDER = {"single": 0, "sync": 1, "downpour": 2, "elastic": 3}
REFERENCE = "single-1"
UNCONVERGED = "unconverged: no posterior conclusion"
# (metric, label, higher is better) of the paired comparisons
COMPARED = (
    ("accuracy", "BMA accuracy", True),
    ("log_likelihood", "BMA log-likelihood", True),
    ("time_to_acc95_s", "seconds to BMA accuracy 0.95", False),
)


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
            csv_path = stage.path(f"_{col}.csv")
            if not csv_path.exists():
                raise InputError("running-BMA CSV not found (run the sgmcmc stage first)", csv_path)
            with open(csv_path, encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
            m[f"_{col}"] = ([float(r["wall_s"]) for r in rows], [float(r[col]) for r in rows])
        out.append(m)
    return sorted(out, key=lambda m: (ORDER.get(m["protocol"], 9), m["workers"]))


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b not in (None, 0) else None


def _summary(m: dict[str, Any], key: str) -> dict[str, Any]:
    """The :func:`betamcmc.core.stats.mean_std_ci` shape of metric ``key`` of a metrics file."""
    return {
        "mean": m.get(key),
        "std": m.get(f"{key}_std"),
        "ci_low": m.get(f"{key}_ci_low"),
        "ci_high": m.get(f"{key}_ci_high"),
    }


def _cell(m: dict[str, Any], key: str, digits: int = 3) -> str:
    """``mean ± std [low, high]`` of a metric, with ``(k/n seeds)`` where only some have it."""
    text = fmt_ci(_summary(m, key), digits) if m.get(key) is not None else "-"
    if f"{key}_n" in m:
        text += f" ({m[f'{key}_n']}/{m['n_seeds']} seeds)"
    return text


def compare(a: dict[str, Any], b: dict[str, Any], keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """Paired per-seed comparisons of arm ``a`` against ``b`` on :data:`COMPARED` (those in
    ``keys`` if given; over the seeds both have a value for), each with its verdict."""
    by_seed_a = {s["seed"]: s for s in a["per_seed"]}
    by_seed_b = {s["seed"]: s for s in b["per_seed"]}
    out: dict[str, Any] = {}
    for key, _, higher in COMPARED:
        if keys and key not in keys:
            continue
        seeds = [
            s
            for s in by_seed_a
            if s in by_seed_b
            and by_seed_a[s].get(key) is not None
            and by_seed_b[s].get(key) is not None
        ]
        if not seeds:
            out[key] = None
            continue
        comparison = paired(
            [by_seed_a[s][key] for s in seeds], [by_seed_b[s][key] for s in seeds], higher
        )
        out[key] = {**comparison, "seeds": seeds, "verdict": verdict(comparison)}
    return out


def _verdict_cell(c: dict[str, Any] | None) -> str:
    if c is None:
        return "- (no seed has both)"
    return f"{c['verdict']}: {fmt_paired(c)}"


def _converged_cell(m: dict[str, Any]) -> str:
    return "yes" if m.get("converged") else f"**{UNCONVERGED}**"


def draw_figures(items: list[dict[str, Any]], sgd: dict[str, Any] | None, tmp: Path) -> None:
    """The four figures of the module docstring into ``tmp``."""
    import matplotlib  # lazy: a plotting import costs a second: only the figures pay it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = next((m for m in items if m["item"] == REFERENCE), None)
    for key, fname, label in (
        ("_bma_accuracy", "accuracy_vs_time.png", "BMA test accuracy (mean over seeds)"),
        ("_bma_log_likelihood", "loglik_vs_time.png", "BMA mean test log-likelihood (mean)"),
    ):
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for m in items:
            xs, ys = m[key]
            ax.plot(xs, ys, label=m["item"], linestyle="-" if m["workers"] > 1 else "--")
        if sgd is not None:
            value = sgd["accuracy" if "accuracy" in key else "log_likelihood"]
            ax.axhline(value, color="k", lw=0.8, label="SGD (mean)")
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
            g = [_ratio(m["grad_evals_per_s"], base["grad_evals_per_s"]) for m in ms]
            nan = float("nan")
            axes[0].plot(ws, [v if v is not None else nan for v in t], "o-", label=protocol)
            axes[1].plot(ws, [v if v is not None else nan for v in g], "o-", label=protocol)
    axes[0].set(xlabel="workers W", ylabel=f"speedup to BMA acc 0.95 vs {REFERENCE}")
    axes[1].set(xlabel="workers W", ylabel=f"gradient throughput vs {REFERENCE}")
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


def items_table(items: list[dict[str, Any]], sgd: dict[str, Any] | None) -> list[str]:
    """One row per item (numbers over seeds) and the SGD baseline."""
    lines = [
        "| item | seeds | accuracy | log-lik | ECE | wall s | t->0.95 s | grad evals | grads/s "
        "| MB/sample | staleness | dead | chains | R-hat max | ESS bulk min | ESS tail min "
        "| converged |",
        "|" + "---|" * 17,
    ]
    for m in items:
        lines.append(
            f"| {m['item']} | {m['n_seeds']} | {_cell(m, 'accuracy', 4)} "
            f"| {_cell(m, 'log_likelihood')} | {_cell(m, 'ece')} | {_cell(m, 'wall_s')} "
            f"| {_cell(m, 'time_to_acc95_s')} | {fmt(m['grad_evals'], 4)} "
            f"| {fmt(m['grad_evals_per_s'], 4)} | {fmt(m['bytes_per_sample'] / 1e6)} "
            f"| {fmt(m['staleness_mean'])} | {fmt(m['dead_workers'])} | {m['chains']} "
            f"| {fmt(m['rhat_max'])} | {fmt(m['ess_bulk_min'])} | {fmt(m['ess_tail_min'])} "
            f"| {_converged_cell(m)} |"
        )
    if sgd is not None:
        lines.append(
            f"| SGD ({sgd['steps']} steps) | {sgd['n_seeds']} | {_cell(sgd, 'accuracy', 4)} "
            f"| {_cell(sgd, 'log_likelihood')} | {_cell(sgd, 'ece')} | {_cell(sgd, 'wall_s')} "
            "| - | - | - | - | - | - | - | - | - | - | point estimate |"
        )
    return lines


def comparisons_table(
    items: list[dict[str, Any]], sgd: dict[str, Any] | None
) -> tuple[list[str], dict[str, Any]]:
    """Each item against ``single-1`` (and against SGD), paired by seed: table lines and data."""
    base = next((m for m in items if m["item"] == REFERENCE), None)
    data: dict[str, Any] = {}
    lines = [
        f"| item | against | {' | '.join(label for _, label, _ in COMPARED)} | chains |",
        "|" + "---|" * (3 + len(COMPARED)),
    ]
    for m in items:
        rows = []
        if base is not None and m is not base:
            rows.append((REFERENCE, base, compare(m, base)))
        if sgd is not None:
            rows.append(("SGD", sgd, compare(m, sgd, ("accuracy", "log_likelihood"))))
        for name, other, comparison in rows:
            data.setdefault(m["item"], {})[name] = comparison
            both = m.get("converged") and other.get("converged", True)
            cells = [
                _verdict_cell(comparison.get(key)) if key in comparison else "-"
                for key, _, _ in COMPARED
            ]
            note = "converged" if both else "predictive only (unconverged)"
            lines.append(f"| {m['item']} | {name} | {' | '.join(cells)} | {note} |")
    return lines, data


def budget_lines(items: list[dict[str, Any]]) -> list[str]:
    """Each item's gradient evaluations against the reference's (the arms' budgets)."""
    base = next((m for m in items if m["item"] == REFERENCE), None)
    if base is None:
        return []
    out = []
    for m in items:
        ratio = _ratio(m["grad_evals"], base["grad_evals"])
        same = ratio is not None and abs(ratio - 1.0) < 1e-9
        out.append(
            f"- {m['item']}: {fmt(m['grad_evals'], 5)} gradient evaluations "
            + ("(the same as " if same else f"({fmt(ratio)} x ")
            + f"{REFERENCE}'s {fmt(base['grad_evals'], 5)})"
        )
    return out


def report_text(items: list[dict[str, Any]], sgd: dict[str, Any] | None) -> tuple[str, dict]:
    """``table.md`` and the comparisons (for ``comparisons.json``)."""
    comparison_lines, data = comparisons_table(items, sgd)
    unconverged = [m["item"] for m in items if not m.get("converged")]
    # the thresholds the items were judged by (evaluate.RHAT_MAX, ESS_MIN: not imported here,
    # which would load torch into the report stage)
    rhat_max = items[0].get("rhat_threshold") if items else None
    ess_min = items[0].get("ess_threshold") if items else None
    seeds = sorted({s for m in items for s in m.get("seeds", [])})
    parts = [
        "# SG-MCMC: protocols and workers",
        "",
        f"Every item runs seeds {seeds}; numbers are mean ± std [95 % t-interval] over seeds.",
        "",
        *items_table(items, sgd),
        "",
        "## Convergence",
        "",
        f"An item's chains count as converged when the rank-normalised split R-hat is at most "
        f"{rhat_max} and the bulk and tail ESS are at least {fmt(ess_min)} for every monitored "
        "functional (the test log-likelihoods log p(y_i | x_i, θ) of the first `eval_points` "
        "test points), computed by arviz over every seed's chains of the item pooled (one chain "
        "per seed and sampler chain). Thresholds after Vehtari et al. (2021), who recommend "
        "R-hat < 1.01 and ESS > 100 per chain for final inference: these looser ones are a "
        "screen a posterior sample must pass at the least.",
        "",
        *(
            [f"- {name}: **{UNCONVERGED}**" for name in unconverged]
            or ["Every item passes the thresholds."]
        ),
        "",
        "## Paired comparisons (per seed)",
        "",
        "Each item against the reference chain "
        f"{REFERENCE} and against the SGD point estimate, paired by seed: verdict "
        "(better / worse / indistinguishable: the 95 % interval of the per-seed difference "
        "excludes 0 or not), wins over the seeds, mean difference (item − other) [interval]. "
        "An unconverged item's BMA is compared as a predictor only.",
        "",
        *comparison_lines,
        "",
        "## Equal arms",
        "",
        "Every item collects `sgmcmc.samples` samples after `sgmcmc.burn_in` chain steps every "
        "`sgmcmc.thinning` chain steps, with the same step size; the gradient evaluations this "
        "costs differ by protocol (per item, mean over seeds):",
        "",
        *budget_lines(items),
        "",
        "Times are wall-clock seconds of sampling (burn-in included, process start-up excluded), "
        "measured on whatever else the machine was running; the running-BMA curves and "
        "figures are the mean over seeds at each collected sample.",
    ]
    return "\n".join(parts) + "\n", data


def read_area(params: Params) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The metrics and running-BMA curves of every configured sgmcmc item, and the SGD
    baseline's metrics (None when that file is absent); a missing item file is an input error."""
    items = {
        name: pipeline.stage_item("sgmcmc", protocol=p, workers=w)
        for name, (p, w) in zip(params.sgmcmc.items, params.sgmcmc.item_pairs(), strict=True)
    }
    sgd_path = pipeline.stage_item("sgmcmc_sgd").path(".json")
    return load_items(items), (json.loads(sgd_path.read_text()) if sgd_path.exists() else None)


def write_area(
    area: tuple[list[dict[str, Any]], dict[str, Any] | None], out_dir: Path
) -> dict[str, Any]:
    """Figures, ``table.md`` and ``comparisons.json`` of :func:`read_area`'s items into
    ``out_dir`` (atomically); returns the per-item summary (speedup, convergence) logged to
    MLflow."""
    items, sgd = area
    base = next((m for m in items if m["item"] == REFERENCE), None)
    summary = {
        m["item"]: {
            "speedup_to_acc95": _ratio(base["time_to_acc95_s"], m["time_to_acc95_s"])
            if base
            else None,
            "converged": int(bool(m.get("converged"))),
        }
        for m in items
    }
    text, data = report_text(items, sgd)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        draw_figures(items, sgd, tmp)
        (tmp / "table.md").write_text(text)
        (tmp / "comparisons.json").write_text(json.dumps(data, indent=1) + "\n")
    return summary
