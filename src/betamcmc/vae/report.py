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

``metrics/pretrain_comparison.json`` holds the paired per-seed comparisons (:func:`comparisons`:
cyclical / monotonic / constant, and cyclical-restart against cyclical) on test KL, MI, AU and
NLL: wins / ties / losses, the difference's 95 % interval and :func:`betamcmc.stats.verdict`.
The same files and the table's numbers go to one MLflow run (stage ``pretrain_report``).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from betamcmc import pipeline, stats, tracking
from betamcmc.data.prepared import load_prepared
from betamcmc.errors import InputError
from betamcmc.io import atomic_path, read_json, write_json
from betamcmc.params import Params
from betamcmc.pipeline import StageItem
from betamcmc.vae.study import STUDIES, load_studies
from betamcmc.vae.study import render as render_study

# the paired comparisons: (A, B) of the headline (every arm the same learning-rate schedule) and
# what the reference recipe's learning-rate restarts add; metrics with "higher is better"
HEADLINE_PAIRS = (("cyclical", "constant"), ("cyclical", "monotonic"), ("monotonic", "constant"))
RESTART_PAIRS = (("cyclical-restart", "cyclical"),)
COMPARED = (("test.kl", True), ("test.mi", True), ("test.au", True), ("test.nll", False))
METRIC_LABELS = {"test.kl": "KL", "test.mi": "MI", "test.au": "AU", "test.nll": "NLL"}
COLUMNS = (("recon", ".2f"), ("kl", ".2f"), ("elbo", ".2f"), ("nll", ".2f"), ("ppl", ".2f"),
           ("mi", ".2f"), ("au", "d"))  # fmt: skip


def read_curve_csv(path: Path) -> dict[str, list[float]]:
    with open(path, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return {key: [float(r[key]) for r in rows] for key in (rows[0].keys() if rows else [])}


def _cell(m: dict[str, Any], key: str, fmt: str) -> str:
    """``mean ± std [ci_low, ci_high]`` of ``key`` (the mean alone for a single seed)."""
    f = ".1f" if fmt == "d" else fmt
    text, std = format(m[key], f), m.get(f"{key}_std")
    if std is None:
        return text
    low, high = m.get(f"{key}_ci_low"), m.get(f"{key}_ci_high")
    interval = f" [{format(low, f)}, {format(high, f)}]" if low is not None else ""
    return f"{text} ± {format(std, f)}{interval}"


def comparison_table(metrics: dict[str, dict[str, Any]], split: str) -> str:
    """One row per schedule: mean ± std (ddof = 1) [95 % CI of the mean] over the seeds."""
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
    sentences, scored on the test split; mean ± std [95 % CI] over the schedule's seeds."""
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
        cells = [stats.fmt_ci(stats.mean_std_ci(acc[f])) for f in factors]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _seed_values(m: dict[str, Any], metric: str) -> dict[str, float]:
    """Each seed's own value of ``metric`` (``test.kl``) from a metrics file's ``per_seed``."""
    split, key = metric.split(".")
    return {seed: float(per[split][key]) for seed, per in m["per_seed"].items()}


def compare(metrics: dict[str, dict[str, Any]], a: str, b: str) -> list[dict[str, Any]]:
    """Schedule ``a`` against ``b`` on every metric of :data:`COMPARED`, paired over the seeds
    both ran (:func:`betamcmc.stats.paired`), each with its :func:`betamcmc.stats.verdict`."""
    out = []
    for metric, higher in COMPARED:
        va, vb = _seed_values(metrics[a], metric), _seed_values(metrics[b], metric)
        seeds = sorted(set(va) & set(vb), key=int)
        c = stats.paired([va[s] for s in seeds], [vb[s] for s in seeds], higher)
        out.append({"a": a, "b": b, "metric": metric, **c, "verdict": stats.verdict(c)})
    return out


def comparisons(metrics: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every pair of :data:`HEADLINE_PAIRS` and :data:`RESTART_PAIRS` whose two schedules ran."""
    pairs = [p for p in (*HEADLINE_PAIRS, *RESTART_PAIRS) if p[0] in metrics and p[1] in metrics]
    return [c for a, b in pairs for c in compare(metrics, a, b)]


def comparison_json(metrics: dict[str, dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    """``metrics/pretrain_comparison.json``: the seeds and every paired comparison."""
    return {"seeds": list(seeds), "comparisons": comparisons(metrics)}


def _clause(c: dict[str, Any]) -> str:
    """One metric of one pair: the difference with its interval, the per-seed wins, the call."""
    d, label = c["diff"], METRIC_LABELS[c["metric"]]
    interval = (
        f" [{stats.fmt(d['ci_low'])}, {stats.fmt(d['ci_high'])}]" if d["std"] is not None else ""
    )
    call = {
        "better": f"**{c['a']} better**",
        "worse": f"**{c['b']} better**",
        "indistinguishable": f"not distinguishable at {c['n']} seeds",
    }[c["verdict"]]
    return (
        f"{label} Δ {stats.fmt(d['mean'])}{interval}, {c['a']} ahead on {c['wins']}/{c['n']} "
        f"seeds ({c['ties']} tied, {c['losses']} behind) → {call}"
    )


def _pair_lines(cs: list[dict[str, Any]]) -> list[str]:
    pairs = dict.fromkeys((c["a"], c["b"]) for c in cs)
    return [
        f"- {a} vs {b} (Δ = {a} − {b}, 95 % CI): "
        + "; ".join(_clause(c) for c in cs if (c["a"], c["b"]) == (a, b))
        + "."
        for a, b in pairs
    ]


def verdict(metrics: dict[str, dict[str, Any]], latent_dim: int) -> list[str]:
    """Plain sentences on the paper's claims, computed from the test metrics (no hand-written
    conclusions): which codes collapse; what the beta schedule alone does (the headline
    schedules share one learning-rate schedule) and what the learning-rate restarts add; an
    ordering only where :func:`betamcmc.stats.verdict` calls one, with its interval and wins."""
    out = []
    for name, m in metrics.items():
        t = m["test"]
        state = "collapsed" if t["kl"] < 0.1 and t["au"] < 1 else "in use"
        out.append(f"- {name} ({m['kind']}): KL {_cell(t, 'kl', '.2f')} nats, "
                   f"{_cell(t, 'au', '.1f')} of {latent_dim} units active, MI "
                   f"{_cell(t, 'mi', '.2f')} → the code is **{state}** (mean ± std [95 % CI]).")  # fmt: skip
    cs = comparisons(metrics)
    head = [c for c in cs if (c["a"], c["b"]) in HEADLINE_PAIRS]
    restart = [c for c in cs if (c["a"], c["b"]) in RESTART_PAIRS]
    if head:
        cycles = {str(metrics[n].get("lr_cycles", "?")) for c in head for n in (c["a"], c["b"])}
        lr = (
            f"the same learning-rate schedule for every arm: {cycles.pop()} cosine cycle(s)"
            if len(cycles) == 1
            else f"learning-rate cycles differ: {sorted(cycles)}"
        )
        out += ["", f"What the β schedule alone does ({lr}):", "", *_pair_lines(head)]  # fmt: skip
    if restart:
        out += ["", "What the learning-rate restarts add (Fu et al.'s recipe, one cosine restart "
                "per β cycle, against the same β schedule without them):", "",
                *_pair_lines(restart)]  # fmt: skip
    return out


def paired_table(cs: list[dict[str, Any]]) -> str:
    """Every paired comparison: per-seed wins / ties / losses of A, Δ = A − B with its interval."""
    lines = ["| A | B | metric | A better / tie / worse | Δ = A − B [95 % CI] | verdict |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for c in cs:
        d = c["diff"]
        interval = (
            f" [{stats.fmt(d['ci_low'])}, {stats.fmt(d['ci_high'])}]"
            if d["std"] is not None
            else ""
        )
        lines.append(f"| {c['a']} | {c['b']} | {METRIC_LABELS[c['metric']]} | {c['wins']} / "
                     f"{c['ties']} / {c['losses']} | {stats.fmt(d['mean'])}{interval} | "
                     f"{c['verdict']} |")  # fmt: skip
    return "\n".join(lines)


def _background() -> Any:
    """One worker process for the toy experiment, which trains while this process draws the
    other figures (the report is single-threaded: the second core was idle for ~8 s)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(1, mp_context=mp.get_context("forkserver"))


def _toy(path: Path, seed: int, iterations: int, threads: int) -> dict[str, dict[str, float]]:
    """:func:`figures.toy_experiment` in the worker, on the parent's number of torch threads."""
    import torch

    from betamcmc.vae import figures

    torch.set_num_threads(threads)
    return figures.toy_experiment(path, seed, iterations)


def run_report(params: Params, stage: StageItem, studies_dir: Path = STUDIES) -> dict[str, Any]:
    """Read every schedule's outputs (where dvc.yaml puts them), write ``stage.out``, log the run."""
    corpus = load_prepared(pipeline.stage_item("prepare").out)  # fails fast, before heavy imports

    # lazy: torch and matplotlib (seconds) load only after the corpus check
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
    with tracking.stage_run(params, stage), _background() as pool:
        with atomic_path(out) as tmp:
            tmp.mkdir(parents=True)
            toy_job = pool.submit(_toy, tmp / "toy.png", params.seed,
                                  params.pretrain.report.toy_iterations, torch.get_num_threads())  # fmt: skip
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
            toy = toy_job.result()
            seeds = params.pretrain.seeds
            compared = comparison_json(metrics, seeds)
            text = [
                "# Text VAE: beta schedules compared",
                "",
                f"Corpus: {corpus.meta.get('corpus', '?')}; {total} training iterations per seed and "
                f"schedule, seeds {seeds} (mean ± sample std [95 % t-interval of the mean] over them); "
                "cosine learning-rate cycles per schedule: "
                + ", ".join(f"{n} {params.pretrain.lr_cycles_of(n)}" for n in names)
                + "; the best-validation model of each "
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
                "## Paired comparisons per seed (test; metrics/pretrain_comparison.json)",
                "",
                "A better: higher KL, MI, AU; lower NLL. An ordering is called only where the 95 % "
                "interval of the paired difference excludes 0.",
                "",
                paired_table(compared["comparisons"]),
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
        write_json(stage.path("pretrain_comparison.json"), compared)
        flat = {f"{n}.test.{c}": metrics[n]["test"][c] for n in names for c, _ in COLUMNS}
        flat.update({f"toy.{n}.{k}": v for n, r in toy.items() for k, v in r.items()})
        flat.update(study_metrics)
        tracking.log_metrics(flat)
        tracking.log_artifacts(out, artifact_path=out.as_posix())
        tracking.log_artifact(stage.path("pretrain_comparison.json"))
    return {"metrics": metrics, "toy": toy, "comparison": compared}
