"""The ``pretrain_report`` stage's work: compare every schedule in one table and a few figures.

Writes ``reports/pretrain/`` (atomically, as a whole):

- ``comparison.md``   valid/test recon, KL, ELBO, IS-NLL, PPL, MI, AU per schedule + toy results
- ``schedules.png``   beta over the iterations of every configured schedule
- ``curves.png``      training beta / reconstruction / KL per schedule
- ``codes.png``       validation KL, MI and active units at every evaluation, per schedule
- ``latent_<name>.png`` 2-D PCA of test posterior means coloured by the corpus labels
- ``toy.png``         the toy experiment (constant vs monotonic vs cyclical on 10 sequences)
- ``study_<name>.md``, ``.png``  every study collected in ``metrics/studies/`` (DVC experiments,
  :mod:`betamcmc.vae.study`)

and logs the same files and the table's numbers to one MLflow run (stage ``pretrain_report``).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from betamcmc import pipeline, tracking
from betamcmc.data.prepared import load_prepared
from betamcmc.errors import InputError
from betamcmc.io import atomic_path, read_json
from betamcmc.params import Params
from betamcmc.pipeline import StageItem
from betamcmc.vae.study import STUDIES, load_studies
from betamcmc.vae.study import render as render_study

COLUMNS = (("recon", ".2f"), ("kl", ".2f"), ("elbo", ".2f"), ("nll", ".2f"), ("ppl", ".2f"),
           ("mi", ".2f"), ("au", "d"))  # fmt: skip


def read_curve_csv(path: Path) -> dict[str, list[float]]:
    with open(path, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return {key: [float(r[key]) for r in rows] for key in (rows[0].keys() if rows else [])}


def _cell(m: dict[str, Any], key: str, fmt: str) -> str:
    value = format(m[key], ".1f" if fmt == "d" else fmt)
    std = m.get(f"{key}_std")
    return f"{value} ± {format(std, '.1f' if fmt == 'd' else fmt)}" if std else value


def comparison_table(metrics: dict[str, dict[str, Any]], split: str) -> str:
    """One row per schedule: mean ± std over the seeds (a single seed: its value)."""
    names = {"recon": "recon", "kl": "KL", "elbo": "ELBO", "nll": "NLL (IS)", "ppl": "PPL",
             "mi": "MI", "au": "AU"}  # fmt: skip
    head = "| schedule | kind | best it. | " + " | ".join(names[c] for c, _ in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (3 + len(COLUMNS))]
    for name, m in metrics.items():
        cells = [_cell(m[split], c, f) for c, f in COLUMNS]
        lines.append(
            f"| {name} | {m['kind']} | {m['best_iteration']} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def per_seed_table(metrics: dict[str, dict[str, Any]], split: str) -> str:
    """Every seed's own numbers (MI with the standard error of its estimate)."""
    lines = [
        "| schedule | seed | best it. | KL | MI ± s.e. | AU | NLL (IS) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in metrics.items():
        for seed, per in m.get("per_seed", {}).items():
            v = per[split]
            lines.append(
                f"| {name} | {seed} | {per['best_iteration']} | {v['kl']:.2f} | "
                f"{v['mi']:.2f} ± {v.get('mi_se', 0.0):.2f} | {v['au']} | {v['nll']:.2f} |"
            )
    return "\n".join(lines)


def code_probe(schedule_dirs: dict[str, list[Path]], corpus: Any, cap: int = 5000) -> list[str]:
    """What each schedule's code carries: accuracy of a logistic regression that predicts every
    label factor from one sampled code z ~ q(z|x) per sentence (the code the decoder receives;
    a collapsed code is noise and scores the majority rate), trained on up to ``cap`` training
    sentences, scored on the test split; mean ± std over the schedule's seeds."""
    # lazy: numpy, torch and sklearn stay out of this module's import (the results page reads
    # verdict from it; the stage checks its inputs first)
    import numpy as np

    from betamcmc.finetune.classify import encode_sentences, fit_predict_logreg
    from betamcmc.vae.model import load_vae

    factors = list(corpus.label_names)
    if not factors:
        return []
    train, test = corpus.sentences["train"][:cap], corpus.sentences["test"]
    majority = {
        f: float(np.bincount([s.labels[f] for s in test]).max() / len(test)) for f in factors
    }
    lines = ["| schedule | " + " | ".join(factors) + " |", "|---|" + "---|" * len(factors),
             "| (majority class) | " + " | ".join(f"{majority[f]:.3f}" for f in factors) + " |"]  # fmt: skip
    for name, dirs in schedule_dirs.items():
        acc: dict[str, list[float]] = {f: [] for f in factors}
        for d in dirs:
            vae = load_vae(d)
            x_tr = encode_sentences(vae, [s.ids for s in train], "sample", 0)
            x_te = encode_sentences(vae, [s.ids for s in test], "sample", 1)
            for f in factors:
                y_tr = np.array([s.labels[f] for s in train])
                y_te = np.array([s.labels[f] for s in test])
                acc[f].append(
                    float((fit_predict_logreg(x_tr, y_tr, x_te, 1.0, True) == y_te).mean())
                )
        cells = [f"{np.mean(acc[f]):.3f} ± {np.std(acc[f]):.3f}" for f in factors]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def verdict(metrics: dict[str, dict[str, Any]], latent_dim: int) -> list[str]:
    """Plain sentences on the paper's claims, computed from the test metrics (no hand-written
    conclusions): does constant beta = 1 collapse, does cyclical keep an informative code, at
    what likelihood cost."""
    out = []
    t = {n: m["test"] for n, m in metrics.items()}
    for name, m in t.items():
        kind = metrics[name]["kind"]
        state = "collapsed" if m["kl"] < 0.1 and m["au"] < 1 else "in use"
        out.append(f"- {name} ({kind}): KL {m['kl']:.2f} nats, {m['au']:.1f} of {latent_dim} "
                   f"units active, MI {m['mi']:.2f} → the code is **{state}**.")  # fmt: skip
    base = next((n for n, m in metrics.items() if m["kind"] == "constant"), None)
    for name, m in metrics.items():
        if base is None or m["kind"] != "cyclical":
            continue
        gap = t[name]["kl"] - t[base]["kl"]
        ratio = t[name]["nll"] / t[base]["nll"]
        out.append(
            f"- {name} vs {base}: KL {gap:+.2f} nats, NLL ratio {ratio:.4f} "
            f"({'better' if ratio < 1 else 'worse'} by {abs(ratio - 1):.2%})."
        )
    return out


def run_report(params: Params, stage: StageItem, studies_dir: Path = STUDIES) -> dict[str, Any]:
    """Read every schedule's outputs (where dvc.yaml puts them), write ``stage.out``, log the run."""
    corpus = load_prepared(pipeline.stage_item("prepare").out)  # fails fast, before heavy imports

    # lazy: mlflow, torch and matplotlib (seconds) load only after the corpus check
    import mlflow
    import torch

    from betamcmc.vae import figures
    from betamcmc.vae.evaluate import posterior_params
    from betamcmc.vae.model import load_vae, seed_dirs

    names = list(params.pretrain.schedules)
    items = {n: pipeline.stage_item("pretrain", schedule=n) for n in names}
    metrics: dict[str, dict[str, Any]] = {}
    for name in names:
        path = items[name].path(".json")
        if not path.exists():
            raise InputError(
                f"metrics of schedule {name!r} not found (run `dvc repro pretrain`)", path
            )
        metrics[name] = read_json(path)
    test = corpus.sentences["test"]
    total = params.pretrain.train.iterations
    torch.manual_seed(params.seed)

    out = stage.out
    with tracking.stage_run(params, stage):
        with atomic_path(out) as tmp:
            tmp.mkdir(parents=True)
            figures.plot_schedules(params.pretrain.schedules, total, tmp / "schedules.png")
            curves = {n: read_curve_csv(items[n].path("_train.csv")) for n in names}
            figures.plot_curves(curves, tmp / "curves.png")
            valid_curves = {n: read_curve_csv(items[n].path("_valid.csv")) for n in names}
            figures.plot_code_curves(valid_curves, tmp / "codes.png")
            labels = {f: [s.labels.get(f, 0) for s in test] for f in corpus.label_names}
            for name in names:
                model = load_vae(items[name].out)
                mu, _ = posterior_params(model, [s.ids for s in test])
                m = metrics[name]["test"]
                first = (
                    metrics[name].get("per_seed", {}).get(str(metrics[name].get("seeds", [0])[0]))
                )
                m = first["test"] if first else m
                figures.plot_latent(
                    mu.numpy(), labels, corpus.label_names,
                    f"{name}, first seed: test posterior means (KL {m['kl']:.2f}, MI {m['mi']:.2f}, AU {m['au']})",
                    tmp / f"latent_{name}.png",
                )  # fmt: skip
            studies = load_studies(studies_dir) if studies_dir.is_dir() else []
            study_metrics: dict[str, float] = {}
            for study in studies:
                study_metrics |= render_study(study, tmp)
            toy = figures.toy_experiment(
                tmp / "toy.png", params.seed, params.pretrain.report.toy_iterations
            )
            seeds = params.pretrain.seeds
            text = [
                "# Text VAE: beta schedules compared",
                "",
                f"Corpus: {corpus.meta.get('corpus', '?')}; {total} training iterations per seed and "
                f"schedule, seeds {seeds} (mean ± std over them); the best-validation model of each "
                f"seed, evaluated at beta = 1. IS-NLL with k = {params.pretrain.eval.importance_samples}. "
                "Per sentence, nats; PPL per token incl. <eos>; ELBO: Monte Carlo with the NLL's k "
                "samples; MI: the estimator of He et al. (2019) over the split, not clipped (around 0 "
                "for a collapsed code; each seed's standard error is in the per-seed table); AU: "
                f"Cov_x(E_q[z_d]) > {params.pretrain.eval.active_threshold} of "
                f"{params.pretrain.model.latent_dim} dims.",
                "",
                "## What the test split says",
                "",
                *verdict(metrics, params.pretrain.model.latent_dim),
                "",
                "## What the codes carry (test accuracy of each label from a sampled code)",
                "",
                *code_probe({n: seed_dirs(items[n].out) for n in names}, corpus),
                "",
                "## Test",
                "",
                comparison_table(metrics, "test"),
                "",
                "## Validation",
                "",
                comparison_table(metrics, "valid"),
                "",
                "## Per seed (test)",
                "",
                per_seed_table(metrics, "test"),
                "",
                "## Toy experiment (10 random sequences, 2-D latent; toy.png)",
                "",
                "| schedule | KL | recon | MI |",
                "|---|---|---|---|",
                *[f"| {n} | {r['kl']:.2f} | {r['recon']:.2f} | {r['mi']:.2f} |" for n, r in toy.items()],
                "",
                *(["Studies (DVC experiments, collected in metrics/studies/): "
                    + ", ".join(f"[{st['name']}](study_{st['name']}.md)" for st in studies), ""]
                  if studies else []),
                "Figures: schedules.png, curves.png (training), codes.png (validation KL / MI / AU "
                "at every evaluation), " + ", ".join(f"latent_{n}.png" for n in names)
                + ", toy.png",
                "",
            ]  # fmt: skip
            (tmp / "comparison.md").write_text("\n".join(text), encoding="utf-8")
        flat = {f"{n}.test.{c}": metrics[n]["test"][c] for n in names for c, _ in COLUMNS}
        flat.update({f"toy.{n}.{k}": v for n, r in toy.items() for k, v in r.items()})
        flat.update(study_metrics)
        tracking.log_metrics(flat)
        mlflow.log_artifacts(str(out), artifact_path=out.as_posix())
    return {"metrics": metrics, "toy": toy}
