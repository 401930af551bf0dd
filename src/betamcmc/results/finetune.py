"""The fine-tuning report (stage ``report``): markdown tables and the accuracy-vs-label-fraction
figure of the downstream stages.

Inputs are the metrics files of ``classify@<schedule>``, ``dialog@<schedule>-<bow>`` and
``sgmcmc_vae_head@<schedule>`` for ``finetune.schedules`` and the bow settings configured in
params.yaml (a missing file is an input error: the report never silently skips a schedule).

Every arm is shown on every metric, as mean ± std [95 % CI] over its seeds
(:func:`betamcmc.core.stats.fmt_ci`), and every pair of arms is compared on every metric that has a
direction, paired by seed (:func:`betamcmc.core.stats.paired`: wins over the seeds and the interval
of the mean difference) with :func:`betamcmc.core.stats.verdict`: an ordering is stated only when
the interval excludes 0, otherwise the pair is "indistinguishable" at this number of seeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from betamcmc.core import pipeline, stats
from betamcmc.core.errors import InputError
from betamcmc.core.io import atomic_path, read_json

if TYPE_CHECKING:
    from betamcmc.params import Params


def load_metrics(paths: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """The metrics file of every item (name -> path); a missing one is an input error."""
    out = {}
    for name, path in paths.items():
        if not path.exists():
            raise InputError("metrics file missing (run the stage that writes it first)", path)
        out[name] = read_json(path)
    return out


def _scaled(cell: dict[str, Any], scale: float) -> dict[str, Any]:
    return {
        k: None if cell.get(k) is None else scale * cell[k]
        for k in ("mean", "std", "ci_low", "ci_high")
    }


def _ci(cell: dict[str, Any], scale: float = 1.0) -> str:
    s = _scaled(cell, scale)
    if s["std"] == 0.0 and s["ci_low"] is None:  # one seed: no spread
        s["std"] = None
    return stats.fmt_ci(s)


def pairwise(arms: dict[str, list[float]], higher_is_better: bool) -> list[str]:
    """Markdown rows ``| A | B | verdict | wins/n, Δ [low, high] |`` for every pair of arms,
    paired by seed (arms with different seed counts are marked "not paired")."""
    names, rows = list(arms), []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if len(arms[a]) != len(arms[b]):
                rows.append(f"| {a} | {b} | not paired | - |")
                continue
            c = stats.paired(arms[a], arms[b], higher_is_better)
            rows.append(f"| {a} | {b} | {stats.verdict(c)} | {stats.fmt_paired(c)} |")
    return rows


PAIR_HEAD = ["| A | B | A vs B | A wins / seeds, Δ = A − B [95 % CI] |", "|---|---|---|---|"]


def _classify_arms(by_schedule: dict[str, dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    """Arm name -> cell of label fraction ``key`` (VAE per schedule, then the baselines)."""
    first = next(iter(by_schedule.values()))
    arms = {f"VAE code, {s}": m["fractions"][key]["vae"] for s, m in by_schedule.items()}
    if "vae_finetuned" in first["fractions"][key]:
        arms |= {
            f"VAE encoder fine-tuned, {s}": m["fractions"][key]["vae_finetuned"]
            for s, m in by_schedule.items()
        }
    arms["random-init encoder"] = first["fractions"][key]["random_encoder"]
    arms["bag-of-words logreg"] = first["fractions"][key]["bow"]
    return arms


def classify_table(by_schedule: dict[str, dict[str, Any]]) -> str:
    """Test accuracy (%) mean ± std [95 % CI] between VAE seeds, every pair of arms compared,
    and the validation accuracy of both readouts."""
    first = next(iter(by_schedule.values()))
    keys = list(first["fractions"])
    cols = [
        f"{100 * first['fractions'][k]['fraction']:g}% ({first['fractions'][k]['labeled']})"
        for k in keys
    ]
    readout = "posterior mean" if first["features"] == "mean" else "sampled z"
    lines = [
        f"Label `{first['label']}` ({first['classes']} classes), {first['classifier']} on the "
        f"{readout}; test accuracy in %, mean ± std [95 % CI] between the "
        f"{first.get('n_seeds', first['vae_models'])} pretrained VAE seeds (one value per VAE seed: "
        f"the mean over classifier seeds {first['seeds']}; the baselines use the same labeled "
        f"subsets); {first['test_sentences']} test sentences; majority class "
        f"{100 * first['majority_baseline']:.1f}%. Column: label fraction (labeled sentences).",
        "",
        "| arm | " + " | ".join(cols) + " |",
        "|" + "---|" * (len(cols) + 1),
    ]
    for arm in _classify_arms(by_schedule, keys[0]):
        cells = [_ci(_classify_arms(by_schedule, k)[arm], 100) for k in keys]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    for k, col in zip(keys, cols, strict=True):
        arms = {a: c.get("per_seed", []) for a, c in _classify_arms(by_schedule, k).items()}
        lines += ["", f"Every pair of arms at {col} labels (paired by VAE seed index):", ""]
        lines += PAIR_HEAD + pairwise(arms, higher_is_better=True)
    return "\n".join(lines) + "\n" + valid_table(by_schedule)


def valid_table(by_schedule: dict[str, dict[str, Any]]) -> str:
    """Validation accuracy of both readouts, the data the readout is chosen on."""
    first = next(iter(by_schedule.values()))
    if "valid" not in first:
        return ""
    keys = list(first["valid"]["mean"])
    lines = [
        "",
        "## Readout on the validation split",
        "",
        f"Validation accuracy (%) of the same classifier on the posterior mean and on a sampled z "
        f"(`finetune.features` is `{first['features']}`: choose it from this table, not from the "
        "test table above); sample − mean paired by VAE seed.",
        "",
        "| schedule | fraction | mean readout | sample readout | sample vs mean |",
        "|---|---|---|---|---|",
    ]
    for schedule, m in by_schedule.items():
        for k in keys:
            mean, sample = m["valid"]["mean"][k], m["valid"]["sample"][k]
            c = stats.paired(sample["per_seed"], mean["per_seed"], higher_is_better=True)
            lines.append(
                f"| {schedule} | {k} | {_ci(mean, 100)} | {_ci(sample, 100)} | "
                f"{stats.verdict(c)} ({stats.fmt_paired(c)}) |"
            )
    return "\n".join(lines) + "\n"


def classify_figure(by_schedule: dict[str, dict[str, Any]], path: str | Path) -> None:
    """Accuracy against label fraction (log x), one line per schedule, baselines dashed."""
    import matplotlib  # lazy: a plotting import costs a second: only the figure pays it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    first = next(iter(by_schedule.values()))
    keys = list(first["fractions"])
    xs = [first["fractions"][k]["fraction"] for k in keys]
    for schedule, m in by_schedule.items():
        ys = [m["fractions"][k]["vae"]["mean"] for k in keys]
        es = [m["fractions"][k]["vae"]["std"] for k in keys]
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=f"VAE ({schedule})")
    for method, label in (("random_encoder", "random-init encoder"), ("bow", "bag-of-words")):
        ys = [first["fractions"][k][method]["mean"] for k in keys]
        ax.plot(xs, ys, linestyle="--", marker="x", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("fraction of training labels")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"Semi-supervised classification of '{first['label']}'")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# metric -> (label, higher is better; None: no direction, shown but not ordered)
DIALOG_METRICS: dict[str, tuple[str, bool | None]] = {
    "test_rec": ("rec (nats)", False),
    "test_kl": ("KL (nats)", None),
    "test_elbo": ("ELBO (nats)", True),
    "bleu1_precision": ("BLEU-1 precision", True),
    "bleu1_recall": ("BLEU-1 recall", True),
    "distinct1": ("distinct-1", True),
    "distinct2": ("distinct-2", True),
    "act_agreement": ("act agreement", True),
}


def _dialog_metrics(first: dict[str, Any]) -> dict[str, tuple[str, bool | None]]:
    order = max(int(k[4]) for k in first if k.startswith("bleu") and k.endswith("_precision"))
    out = dict(DIALOG_METRICS)
    for part in ("precision", "recall", "f1"):
        out[f"bleu{order}_{part}"] = (f"BLEU-{order} {part}", True)
    return {k: v for k, v in out.items() if first.get(k) is not None}


def _cell(m: dict[str, Any], key: str) -> dict[str, Any]:
    return {
        "mean": m[key],
        "std": m.get(f"{key}_std"),
        "ci_low": m.get(f"{key}_ci_low"),
        "ci_high": m.get(f"{key}_ci_high"),
    }


def dialog_table(by_item: dict[str, dict[str, Any]]) -> str:
    """Every (schedule, bow) arm on every test metric, and every pair of arms per metric."""
    first = next(iter(by_item.values()))
    metrics = _dialog_metrics(first)
    arms = {f"{m['schedule']}-{'bow' if m['bow'] else 'nobow'}": m for m in by_item.values()}
    lines = [
        f"Test split, {first['contexts_scored']} contexts, {first['samples_per_context']} responses "
        "sampled per context (z ~ p(z|c), greedy decoding); mean ± std [95 % CI] over the "
        f"{first.get('n_seeds', 1)} seeds {first.get('seeds', '')} (seed i: CVAE seed i on "
        "pretrained VAE seed i); rec / KL / ELBO in nats per response; BLEU smoothed sentence "
        "BLEU precision / recall against the reference; act agreement: share of samples whose "
        "predicted dialog act matches the reference's (act classifier accuracy on real "
        f"responses: {_three_decimals(first.get('act_classifier_accuracy'))}).",
        "",
        "| metric | " + " | ".join(arms) + " |",
        "|" + "---|" * (len(arms) + 1),
    ]
    for key, (label, _) in metrics.items():
        lines.append(f"| {label} | " + " | ".join(_ci(_cell(m, key)) for m in arms.values()) + " |")
    for key, (label, higher) in metrics.items():
        if higher is None:
            continue
        per_seed = {a: m.get("per_seed", {}).get(key, [m[key]]) for a, m in arms.items()}
        better = "higher" if higher else "lower"
        lines += ["", f"{label} ({better} is better), every pair of arms paired by seed:", ""]
        lines += PAIR_HEAD + pairwise(per_seed, higher_is_better=higher)
    return "\n".join(lines) + "\n"


def vae_head_table(by_schedule: dict[str, dict[str, Any]]) -> str:
    """BMA against MAP per schedule, with intervals over the chains and the convergence flag."""
    first = next(iter(by_schedule.values()))
    lines = [
        f"{first['head']} on the `{first['label']}` codes of each schedule's first VAE seed; "
        f"{first.get('n_seeds', 1)} independent chains (seeds {first.get('seeds', '')}), "
        f"{first['samples']} samples each; mean ± std [95 % CI] over the chains. Converged "
        "means rank-normalised split R-hat <= 1.05 and bulk and tail ESS >= 100 across the chains; "
        "the BMA of an unconverged head is not a posterior average and is flagged.",
        "",
        "| schedule | metric | SG-MCMC BMA | MAP | BMA vs MAP |",
        "|---|---|---|---|---|",
    ]
    for schedule, m in by_schedule.items():
        for key, higher in (("accuracy", True), ("log_likelihood", True), ("ece", False)):
            bma, point = _cell(m["sgmcmc"], key), _cell(m["point_estimate"], key)
            per = m.get("per_seed", {})
            a = [r[key] for r in per.get("sgmcmc", [])] or [bma["mean"]]
            b = [r[key] for r in per.get("point_estimate", [])] or [point["mean"]]
            c = stats.paired(a, b, higher_is_better=higher)
            lines.append(
                f"| {schedule} | {key} | {_ci(bma)} | {_ci(point)} | "
                f"{stats.verdict(c)} ({stats.fmt_paired(c)}) |"
            )
    lines += [
        "",
        "| schedule | R-hat max | bulk ESS min | tail ESS min | converged |",
        "|---|---|---|---|---|",
    ]
    for schedule, m in by_schedule.items():
        flag = "yes" if m.get("converged") else "**NO: do not read its BMA as a posterior average**"
        lines.append(
            f"| {schedule} | {stats.fmt(m.get('rhat_max'), 4)} | "
            f"{stats.fmt(m.get('ess_bulk_min'))} | {stats.fmt(m.get('ess_tail_min'))} | {flag} |"
        )
    return "\n".join(lines) + "\n"


def _three_decimals(value: float | None) -> str:
    """The act classifier's accuracy as the dialog table prints it: 3 decimals, ``n/a`` without acts
    (not :func:`betamcmc.core.stats.fmt`: that rounds to significant figures and prints ``-``)."""
    return "n/a" if value is None else f"{value:.3f}"


def write_report(
    out_dir: str | Path,
    classify: dict[str, dict[str, Any]],
    dialog: dict[str, dict[str, Any]],
    vae_head: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Write ``classify.md``, ``classify_accuracy.png``, ``dialog.md`` (and ``vae_head.md``)
    into ``out_dir`` (a fresh directory; the caller renames it into place)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "classify.md").write_text(
        "# Semi-supervised classification\n\n"
        + classify_table(classify)
        + "\n![accuracy against label fraction](classify_accuracy.png)\n",
        encoding="utf-8",
    )
    classify_figure(classify, out / "classify_accuracy.png")
    (out / "dialog.md").write_text(
        "# Dialog response generation (CVAE)\n\n" + dialog_table(dialog), encoding="utf-8"
    )
    if vae_head:
        (out / "vae_head.md").write_text(
            "# Bayesian head on the VAE codes (SG-MCMC BMA vs MAP)\n\n" + vae_head_table(vae_head),
            encoding="utf-8",
        )


# --------------------------------------------------------------------------- the area
Area = tuple[dict[str, dict[str, Any]], ...]  # (classify, dialog, vae_head) by item


def read_area(params: Params) -> Area:
    """The metrics of every classify, dialog and Bayesian-head item of ``finetune.schedules``
    (a missing or bad file: an input error)."""
    schedules = list(params.finetune.schedules)
    classify = load_metrics(
        {s: pipeline.stage_item("classify", schedule=s).path(".json") for s in schedules}
    )
    dialog = load_metrics(
        {
            f"{s}-{b}": pipeline.stage_item("dialog", schedule=s, bow=b).path(".json")
            for s in schedules
            for b in params.finetune.dialog.bow
        }
    )
    vae_head = load_metrics(
        {s: pipeline.stage_item("sgmcmc_vae_head", schedule=s).path(".json") for s in schedules}
    )
    return classify, dialog, vae_head


def write_area(area: Area, out_dir: Path) -> None:
    """Tables and the accuracy figure of :func:`read_area`'s items into ``out_dir``
    (atomically)."""
    with atomic_path(out_dir) as tmp:
        write_report(tmp, *area)
