"""Block renderers for the default pipeline's results in ``docs/results`` templates.

Each reads the committed metrics files (``metrics/``, the baseline of the last ``make repro``) and
returns a Markdown table or a list of paired comparisons: the same cells as ``reports/index.md``
(:mod:`betamcmc.results.cells`), so a docs page and the results page can never disagree.
Registered on import by :mod:`betamcmc.results.docs`.
"""

from __future__ import annotations

from typing import Any

from betamcmc.core import stats
from betamcmc.core.io import read_csv_rows
from betamcmc.results.cells import against, ci_cell, convergence_cell, fixed, paired_line, table
from betamcmc.results.docs_blocks import block
from betamcmc.results.docs_values import LookupFailed, Source

PRETRAIN_METRICS = (("kl", "KL"), ("mi", "MI"), ("au", "AU"), ("nll", "NLL (IS)"))
SGMCMC_COMPARED = [
    ("accuracy", "accuracy", True),
    ("log_likelihood", "log-likelihood", True),
    ("time_to_acc95_s", "s to 0.95", False),
]


def _md(lines: list[str]) -> str:
    return "\n".join(lines)


@block("pretrain_table")
def pretrain_table(src: Source, *schedules: str) -> str:
    """One row per schedule: kind, lr cycles, seeds, then test KL / MI / AU / NLL with intervals."""
    rows = []
    for name in schedules:
        m = src.load(f"metrics/pretrain/{name}.json")
        rows.append([name, m["kind"], str(m.get("lr_cycles", "–")), str(m.get("n_seeds", "–")),
                     *(ci_cell(m["test"], k) for k, _ in PRETRAIN_METRICS)])  # fmt: skip
    head = ["schedule", "kind", "lr cycles", "seeds", *(label for _, label in PRETRAIN_METRICS)]
    return _md(table(head, rows))


@block("pretrain_pairs")
def pretrain_pairs(src: Source, rel: str = "metrics/pretrain_comparison.json") -> str:
    """Every paired comparison of ``pretrain_report``: wins / ties / losses, Δ and its interval."""
    rows = []
    for c in src.get(rel, "comparisons"):
        d = c["diff"]
        interval = (
            "–" if d["ci_low"] is None else f"[{stats.fmt(d['ci_low'])}, {stats.fmt(d['ci_high'])}]"
        )
        rows.append([f"{c['a']} − {c['b']}", c["metric"], f"{c['wins']}/{c['ties']}/{c['losses']}",
                     stats.fmt(d["mean"]), interval, c["verdict"]])  # fmt: skip
    return _md(table(["Δ", "metric", "wins/ties/losses", "mean Δ", "95 % CI", "call"], rows))


@block("classify_table")
def classify_table(src: Source, *schedules: str) -> str:
    """Test accuracy between VAE seeds per label fraction: each schedule's codes, both baselines."""
    metrics = {s: src.load(f"metrics/classify/{s}.json") for s in schedules}
    first = metrics[schedules[0]]
    fracs = list(first["fractions"])
    rows = [[f"codes, {s}", *(ci_cell(m, f"fractions.{f}.vae") for f in fracs)]
            for s, m in metrics.items()]  # fmt: skip
    for method, label in (("random_encoder", "random-init encoder"), ("bow", "bag-of-words")):
        rows.append([label, *(ci_cell(first, f"fractions.{f}.{method}") for f in fracs)])
    head = ["features", *(f"{100 * first['fractions'][f]['fraction']:g} % labels" for f in fracs)]
    return _md(table(head, rows))


@block("classify_pairs")
def classify_pairs(src: Source, *schedules: str) -> str:
    """Each later schedule against each earlier one, per label fraction, paired by VAE seed."""
    metrics = {s: src.load(f"metrics/classify/{s}.json") for s in schedules}
    lines = []
    for i, a in enumerate(schedules):
        for b in schedules[:i]:
            for f in metrics[a]["fractions"]:
                va = metrics[a]["fractions"][f]["vae"]["per_seed"]
                vb = metrics[b]["fractions"][f]["vae"]["per_seed"]
                lines.append(paired_line(a, b, va, vb, f"accuracy at {f} labels", True))
    return _md(lines)


@block("readout_table")
def readout_table(src: Source, *schedules: str) -> str:
    """Validation accuracy of the two readouts (one sampled code, the posterior mean) per fraction,
    and the readouts paired by VAE seed: the evidence the default readout is judged on."""
    rows = []
    for s in schedules:
        valid = src.get(f"metrics/classify/{s}.json", "valid")
        for f in valid["sample"]:
            c = stats.paired(valid["mean"][f]["per_seed"], valid["sample"][f]["per_seed"])
            rows.append([s, f, ci_cell(valid, f"sample.{f}"), ci_cell(valid, f"mean.{f}"),
                         f"{stats.fmt_paired(c)} → {stats.verdict(c)}"])  # fmt: skip
    head = ["schedule", "labels", "valid, sampled code", "valid, posterior mean", "mean − sample"]
    return _md(table(head, rows))


@block("labels_table")
def labels_table(src: Source, rel: str) -> str:
    """The labels study (validation only): per label and fraction, the majority class, bag of words
    and each schedule's codes, mean ± std [95 % CI] over the VAE seeds."""
    m = src.load(rel)
    rows = []
    for label in m["labels"]:
        first = m["by_schedule"][m["schedules"][0]][label]
        for f in first["fractions"]:
            cells = [
                ci_cell(m["by_schedule"][s][label]["fractions"][f], "vae") for s in m["schedules"]
            ]
            rows.append([label, f, fixed(first["majority"], ".3f"),
                         ci_cell(first["fractions"][f], "bow"), *cells])  # fmt: skip
    return _md(table(["label", "labels", "majority", "bag of words", *m["schedules"]], rows))


@block("labels_pairs")
def labels_pairs(src: Source, rel: str) -> str:
    """The schedule pairs of the labels study whose paired interval excludes 0, and how many did not."""
    pairs = src.load(rel)["pairs"]
    called = [c for c in pairs if c["verdict"] != "indistinguishable"]
    lines = [
        f"- {c['label']}, {c['fraction']}: {c['a']} vs {c['b']}: {stats.fmt_paired(c)} → "
        f"{c['verdict']}"
        for c in called
    ]
    lines.append(
        f"- the other {len(pairs) - len(called)} of {len(pairs)} pairs: indistinguishable "
        "(paired 95 % interval includes 0)"
    )
    return _md(lines)


@block("dialog_table")
def dialog_table(src: Source, *items: str) -> str:
    """Test KL, BLEU-4 F1, distinct-2 and dialog-act agreement per CVAE item, over its seeds."""
    rows = []
    for item in items:
        m = src.load(f"metrics/dialog/{item}.json")
        rows.append([item, str(m.get("n_seeds", "–")), ci_cell(m, "test_kl"),
                     ci_cell(m, "bleu4_f1"), ci_cell(m, "distinct2"), ci_cell(m, "act_agreement")])  # fmt: skip
    return _md(table(["item", "seeds", "KL", "BLEU-4 F1", "distinct-2", "act agreement"], rows))


@block("dialog_pairs")
def dialog_pairs(src: Source, metric: str, *items: str) -> str:
    """Each later item against each earlier one on ``metric`` (higher is better), by seed."""
    metrics = {i: src.load(f"metrics/dialog/{i}.json") for i in items}
    return _md(
        [
            paired_line(
                a, b, metrics[a]["per_seed"][metric], metrics[b]["per_seed"][metric], metric, True
            )
            for k, a in enumerate(items)
            for b in items[:k]
        ]
    )


@block("head_table")
def head_table(src: Source, *schedules: str) -> str:
    """The Bayesian head: BMA and MAP test accuracy and log-likelihood, BMA − MAP by seed, chains."""
    rows = []
    for s in schedules:
        m = src.load(f"metrics/sgmcmc_vae_head/{s}.json")
        acc = m["comparison"]["accuracy"]
        rows.append([s, ci_cell(m, "sgmcmc.accuracy"), ci_cell(m, "point_estimate.accuracy"),
                     ci_cell(m, "sgmcmc.log_likelihood"), ci_cell(m, "point_estimate.log_likelihood"),
                     f"{stats.fmt_paired(acc)} → {acc['verdict']}", convergence_cell(m)])  # fmt: skip
    head = [
        "schedule",
        "BMA acc.",
        "MAP acc.",
        "BMA log-lik",
        "MAP log-lik",
        "BMA − MAP acc.",
        "chains",
    ]
    return _md(table(head, rows))


@block("sgmcmc_table")
def sgmcmc_table(src: Source, *items: str) -> str:
    """Per item, over its seeds: BMA accuracy, log-likelihood, seconds and gradients to accuracy
    0.95 (over the seeds that reached it), MB per sample, and the chains' diagnostics."""
    rows = []
    for item in items:
        m = src.load(f"metrics/sgmcmc/{item}.json")
        reached = m.get("time_to_acc95_s_n", m.get("n_seeds"))
        rows.append([item, ci_cell(m, "accuracy", 4), ci_cell(m, "log_likelihood"),
                     f"{ci_cell(m, 'time_to_acc95_s')} ({reached}/{m.get('n_seeds')})",
                     ci_cell(m, "grad_evals", 4), fixed(m.get("bytes_per_sample", 0) / 1e6, ".3f"),
                     convergence_cell(m)])  # fmt: skip
    head = ["item", "accuracy", "log-lik", "s to 0.95 (seeds)", "gradients", "MB/sample", "chains"]
    return _md(table(head, rows))


@block("sgmcmc_pairs")
def sgmcmc_pairs(src: Source, ref: str, *items: str) -> str:
    """Each item against the reference item, paired by seed (accuracy, log-likelihood, time)."""
    base = src.load(f"metrics/sgmcmc/{ref}.json")
    return _md(
        [
            line
            for item in items
            for line in against(
                item, ref, src.load(f"metrics/sgmcmc/{item}.json"), base, SGMCMC_COMPARED
            )
        ]
    )


@block("consistency")
def consistency(src: Source, rel: str = "metrics/sgmcmc_consistency.json") -> str:
    """The consistency study: error of the posterior mean and variance per run, and each larger
    tau against the smallest, paired by seed."""
    m = src.load(rel)
    rows = [[n, ci_cell(r, "mean_error"), ci_cell(r, "var_error")] for n, r in m["runs"].items()]
    calls = [
        f"- {c['protocol']}: τ = {c['tau']} against τ = {c['against_tau']}: "
        f"{stats.fmt_paired(c)} → error {c['error_is']}."
        for c in m.get("tau_comparisons") or []
    ]
    return _md([*table(["run", "mean error", "variance error"], rows), "", *calls])


@block("rl_table")
def rl_table(src: Source, baseline: str, *items: str) -> str:
    """Final return per RL item over its seeds and each item against ``baseline``, paired by seed."""
    rows, lines = [], []
    base = src.load(f"metrics/rl/{baseline}.json")
    for item in items:
        m = src.load(f"metrics/rl/{item}.json")
        final = {k: m.get(f"final_return_{k}") for k in ("mean", "std", "ci_low", "ci_high")}
        rows.append([item, str(m.get("n_seeds", m.get("seeds"))), ci_cell({"r": final}, "r", 4),
                     f"{m.get('solved_runs')}/{m.get('seeds')}"])  # fmt: skip
        if item != baseline:
            ours, theirs = (_returns(x) for x in (m, base))
            both = sorted(set(ours) & set(theirs), key=int)
            lines.append(
                paired_line(
                    item,
                    baseline,
                    [ours[s] for s in both],
                    [theirs[s] for s in both],
                    "final return",
                    True,
                )
            )
    return _md([*table(["item", "seeds", "final return", "solved"], rows), "", *lines])


def _returns(m: dict[str, Any]) -> dict[str, float]:
    return {s: v["final_return"] for s, v in (m.get("per_seed") or {}).items()}


@block("study_valid")
def study_valid(src: Source, rel: str, *experiments: str) -> str:
    """A study's VALIDATION figures: the last evaluation of each schedule's validation curve
    (KL, MI, active units, negative ELBO), per named experiment (all when none is named)."""
    rows = []
    for exp in src.get(rel, "experiments"):
        if experiments and exp["name"] not in experiments:
            continue
        for name, s in exp["schedules"].items():
            curve = s["curve"]
            rows.append([f"`{exp['name']}`", name, f"{int(curve['iteration'][-1]):,}",
                         *(fixed(curve[k][-1], spec) for k, spec in
                           (("kl", ".2f"), ("mi", ".2f"), ("au", ".1f"), ("neg_elbo", ".2f")))])  # fmt: skip
    head = [
        "experiment",
        "schedule",
        "at iteration",
        "valid KL",
        "valid MI",
        "valid AU",
        "valid −ELBO",
    ]
    return _md(table(head, rows))


@block("budget")
def budget(src: Source, rel: str, seconds: str) -> str:
    """A ``bench/pipeline_times.py`` run's total against the pipeline's time budget, in words."""
    total = float(src.get(rel, "repro.total_wall_s"))
    limit = float(seconds)
    word = "within" if total <= limit else "**over**"
    return f"{total:.0f} s, {word} the budget of {limit:.0f} s ({total / limit:.2f} of it)"


@block("valid_curves")
def valid_curves(src: Source, column: str, *schedules: str) -> str:
    """One validation column (``metrics/pretrain/<schedule>_valid.csv``, mean over seeds) at every
    evaluation, one row per schedule: how far training had got when it stopped."""
    curves = {}
    for s in schedules:
        rel = f"metrics/pretrain/{s}_valid.csv"
        path = src.root / rel
        if not path.is_file():
            raise LookupFailed(f"no file {rel}")
        curves[s] = read_csv_rows(path)
    iterations = [row["iteration"] for row in curves[schedules[0]]]
    rows = [[s, *(fixed(float(r[column]), ".2f") for r in rows)] for s, rows in curves.items()]
    return _md(table(["schedule", *(f"it. {i}" for i in iterations)], rows))
