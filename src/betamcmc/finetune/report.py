"""Markdown tables and the accuracy-vs-label-fraction figure for the downstream stages.

Inputs are the metrics files of ``classify@<schedule>`` and ``dialog@<schedule>-<bow>`` for the
schedules and bow settings configured in params.yaml (a missing file is an input error: the
report never silently skips a schedule).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from betamcmc import pipeline, tracking
from betamcmc.errors import InputError
from betamcmc.io import atomic_path, read_json
from betamcmc.params import Params
from betamcmc.pipeline import StageItem


def load_metrics(paths: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """The metrics file of every item (name -> path); a missing one is an input error."""
    out = {}
    for name, path in paths.items():
        if not path.exists():
            raise InputError("metrics file missing (run the stage that writes it first)", path)
        out[name] = read_json(path)
    return out


def _pct(value: dict[str, float]) -> str:
    return f"{100 * value['mean']:.1f} ± {100 * value['std']:.1f}"


def classify_table(by_schedule: dict[str, dict[str, Any]]) -> str:
    """Test accuracy (%) mean ± std over seeds: one row per schedule, then the baselines."""
    first = next(iter(by_schedule.values()))
    keys = list(first["fractions"])
    head = ["method"] + [
        f"{100 * first['fractions'][k]['fraction']:g}% ({first['fractions'][k]['labeled']})"
        for k in keys
    ]
    lines = [
        f"Label `{first['label']}` ({first['classes']} classes), {first['classifier']} on the "
        f"{'posterior mean' if first['features'] == 'mean' else 'sampled z'}; test accuracy in % "
        f"(mean ± std over seeds {first['seeds']}); {first['test_sentences']} test sentences; "
        f"majority class {100 * first['majority_baseline']:.1f}%. Column: label fraction (labeled sentences).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for schedule, m in by_schedule.items():
        lines.append(
            f"| VAE code, {schedule} | "
            + " | ".join(_pct(m["fractions"][k]["vae"]) for k in keys)
            + " |"
        )
    if "vae_finetuned" in first["fractions"][keys[0]]:
        for schedule, m in by_schedule.items():
            lines.append(
                f"| VAE encoder fine-tuned, {schedule} | "
                + " | ".join(_pct(m["fractions"][k]["vae_finetuned"]) for k in keys)
                + " |"
            )
    lines.append(
        "| random-init encoder | "
        + " | ".join(_pct(first["fractions"][k]["random_encoder"]) for k in keys)
        + " |"
    )
    lines.append(
        "| bag-of-words logreg | "
        + " | ".join(_pct(first["fractions"][k]["bow"]) for k in keys)
        + " |"
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


def dialog_table(by_item: dict[str, dict[str, Any]]) -> str:
    """Test metrics of every (schedule, bow) dialog model."""
    first = next(iter(by_item.values()))
    order = max(int(k[4]) for k in first if k.startswith("bleu") and k.endswith("_precision"))
    head = [
        "schedule",
        "bow",
        "rec",
        "KL",
        "ELBO",
        "BLEU-1 P/R",
        f"BLEU-{order} P/R/F1",
        "distinct-1",
        "distinct-2",
        "act agreement",
    ]
    lines = [
        f"Test split, {first['contexts_scored']} contexts, {first['samples_per_context']} responses "
        "sampled per context (z ~ p(z|c), greedy decoding); rec / KL / ELBO in nats per response; "
        "BLEU smoothed sentence BLEU (sacrebleu) precision / recall against the reference; act "
        "agreement: share of samples whose predicted dialog act matches the reference's "
        f"(act classifier accuracy on real responses: {_num(first.get('act_classifier_accuracy'))}).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for m in by_item.values():
        lines.append(
            "| "
            + " | ".join(
                [
                    m["schedule"],
                    "yes" if m["bow"] else "no",
                    f"{m['test_rec']:.2f}",
                    f"{m['test_kl']:.2f}",
                    f"{m['test_elbo']:.2f}",
                    f"{m['bleu1_precision']:.3f} / {m['bleu1_recall']:.3f}",
                    f"{m[f'bleu{order}_precision']:.3f} / {m[f'bleu{order}_recall']:.3f} / {m[f'bleu{order}_f1']:.3f}",
                    f"{m['distinct1']:.3f}",
                    f"{m['distinct2']:.3f}",
                    _num(m.get("act_agreement")),
                ]
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def write_report(
    out_dir: str | Path,
    classify: dict[str, dict[str, Any]],
    dialog: dict[str, dict[str, Any]],
) -> None:
    """Write ``classify.md``, ``classify_accuracy.png`` and ``dialog.md`` into ``out_dir``
    (a fresh directory; the caller renames it into place)."""
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


# --------------------------------------------------------------------------- the stage
def run_report(params: Params, stage: StageItem) -> None:
    """Tables and the accuracy figure of every classify and dialog item in ``stage.out``."""
    schedules = list(params.pretrain.schedules)
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
    with tracking.stage_run(params, stage):
        with atomic_path(stage.out) as tmp:
            write_report(tmp, classify, dialog)
        tracking.log_artifacts(stage.out, "reports")
