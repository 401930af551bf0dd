"""The ``pretrain_report`` stage's work: compare every schedule in one table and a few vae_figures.

Writes ``reports/pretrain/`` (atomically, as a whole):

- ``comparison.md``   valid/test recon, KL, ELBO, IS-NLL, PPL, MI, AU per schedule + toy results
- ``schedules.png``   beta over the iterations of every configured schedule
- ``curves.png``      training beta / reconstruction / KL per schedule
- ``codes.png``       validation KL, MI and active units at every evaluation, per schedule
- ``latent_<name>.png`` 2-D PCA of test posterior means coloured by the corpus labels
- ``toy.png``         the toy experiment (constant vs monotonic vs cyclical on 10 sequences)
- ``study_<name>.md``, ``.png``  every study collected in ``metrics/studies/`` (DVC experiments,
  :mod:`betamcmc.results.vae_study`)

``metrics/pretrain_comparison.json`` holds the paired per-seed comparisons
(:func:`betamcmc.results.verdict.comparisons`:
cyclical / monotonic / constant, and cyclical-restart against cyclical) on test KL, MI, AU and
NLL: wins / ties / losses, the difference's 95 % interval and :func:`betamcmc.core.stats.verdict`.
The same files and the table's numbers go to one MLflow run (stage ``pretrain_report``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from betamcmc import tracking
from betamcmc.core import pipeline, stats
from betamcmc.core.errors import InputError
from betamcmc.core.io import atomic_path, read_csv, read_json, write_json, write_text
from betamcmc.core.pipeline import StageItem
from betamcmc.data.prepared import PreparedCorpus, load_prepared
from betamcmc.results.vae_study import STUDIES, load_studies
from betamcmc.results.vae_study_render import render as render_study
from betamcmc.results.verdict import METRIC_LABELS, comparison_json, spread_cell, verdict

if TYPE_CHECKING:
    from betamcmc.params import Params

COLUMNS = (("recon", ".2f"), ("kl", ".2f"), ("elbo", ".2f"), ("nll", ".2f"), ("ppl", ".2f"),
           ("mi", ".2f"), ("au", "d"))  # fmt: skip
PROBE_CAP = 5000  # training sentences the code probe fits on


# --------------------------------------------------------------------------- load
def load_metrics(items: dict[str, StageItem]) -> dict[str, dict[str, Any]]:
    """Every schedule's metrics file; an :class:`InputError` naming the first one missing."""
    metrics: dict[str, dict[str, Any]] = {}
    for name, item in items.items():
        path = item.path(".json")
        if not path.exists():
            raise InputError(
                f"metrics of schedule {name!r} not found (run `dvc repro pretrain`)", path
            )
        metrics[name] = read_json(path)
    return metrics


# --------------------------------------------------------------------------- compute
def probe_codes(
    schedule_dirs: dict[str, list[Path]], corpus: PreparedCorpus, cap: int = PROBE_CAP
) -> dict[str, Any]:
    """What each schedule's code carries: accuracy of a logistic regression that predicts every
    label factor from one sampled code z ~ q(z|x) per sentence (the code the decoder receives;
    a collapsed code is noise and scores the majority rate), trained on up to ``cap`` training
    sentences, scored on the test split; per schedule and factor the
    :func:`betamcmc.core.stats.mean_std_ci` over the schedule's seeds, and the majority rate."""
    # lazy: numpy, torch and sklearn load only after the stage checked its inputs
    import numpy as np

    from betamcmc.vae.codes import encode_sentences, fit_predict_logreg
    from betamcmc.vae.model import load_vae

    factors = list(corpus.label_names)
    if not factors:
        return {"factors": [], "majority": {}, "accuracy": {}}
    train, test = corpus.sentences["train"][:cap], corpus.sentences["test"]
    majority = {
        f: float(np.bincount([s.labels[f] for s in test]).max() / len(test)) for f in factors
    }
    accuracy: dict[str, dict[str, dict[str, Any]]] = {}
    for name, dirs in schedule_dirs.items():
        per_seed: dict[str, list[float]] = {f: [] for f in factors}
        for directory in dirs:
            vae = load_vae(directory)
            x_tr = encode_sentences(vae, [s.ids for s in train], "sample", 0)
            x_te = encode_sentences(vae, [s.ids for s in test], "sample", 1)
            for f in factors:
                y_tr = np.array([s.labels[f] for s in train])
                y_te = np.array([s.labels[f] for s in test])
                pred = fit_predict_logreg(x_tr, y_tr, x_te, 1.0, True)
                per_seed[f].append(float((pred == y_te).mean()))
        accuracy[name] = {f: stats.mean_std_ci(per_seed[f]) for f in factors}
    return {"factors": factors, "majority": majority, "accuracy": accuracy}


def build_report(
    params: Params,
    corpus: PreparedCorpus,
    metrics: dict[str, dict[str, Any]],
    probe: dict[str, Any],
    toy: dict[str, dict[str, float]],
    studies: list[dict[str, Any]],
) -> dict[str, Any]:
    """Everything comparison.md prints, as plain data (:func:`render_report` draws it)."""
    pretrain = params.pretrain
    return {
        "corpus": corpus.meta.get("corpus", "?"),
        "iterations": pretrain.train.iterations,
        "seeds": pretrain.seeds,
        "lr_cycles": {n: pretrain.lr_cycles_of(n) for n in metrics},
        "importance_samples": pretrain.eval.importance_samples,
        "active_threshold": pretrain.eval.active_threshold,
        "latent_dim": pretrain.model.latent_dim,
        "metrics": metrics,
        "comparison": comparison_json(metrics, pretrain.seeds),
        "probe": probe,
        "toy": toy,
        "studies": [study["name"] for study in studies],
    }


# --------------------------------------------------------------------------- render
def comparison_table(metrics: dict[str, dict[str, Any]], split: str) -> str:
    """One row per schedule: mean ± std (ddof = 1) [95 % CI of the mean] over the seeds."""
    names = {
        "recon": "recon",
        "kl": "KL",
        "elbo": "ELBO",
        "nll": "NLL (IS)",
        "ppl": "PPL",
        "mi": "MI",
        "au": "AU",
    }
    head = "| schedule | kind | best it. | " + " | ".join(names[c] for c, _ in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (3 + len(COLUMNS))]
    for name, m in metrics.items():
        cells = [spread_cell(m[split], c, f) for c, f in COLUMNS]
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


def probe_table(probe: dict[str, Any]) -> list[str]:
    """The code probe's lines: the majority rate, then each schedule's accuracy per factor
    (none for a corpus without labels)."""
    factors = probe["factors"]
    if not factors:
        return []
    lines = [
        "| schedule | " + " | ".join(factors) + " |",
        "|---|" + "---|" * len(factors),
        "| (majority class) | " + " | ".join(f"{probe['majority'][f]:.3f}" for f in factors) + " |",
    ]
    for name, accuracy in probe["accuracy"].items():
        cells = [stats.fmt_ci(accuracy[f]) for f in factors]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def paired_table(cs: list[dict[str, Any]]) -> str:
    """Every paired comparison: per-seed wins / ties / losses of A, Δ = A − B with its interval."""
    lines = [
        "| A | B | metric | A better / tie / worse | Δ = A − B [95 % CI] | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for c in cs:
        d = c["diff"]
        interval = (
            f" [{stats.fmt(d['ci_low'])}, {stats.fmt(d['ci_high'])}]"
            if d["std"] is not None
            else ""
        )
        lines.append(
            f"| {c['a']} | {c['b']} | {METRIC_LABELS[c['metric']]} | {c['wins']} / "
            f"{c['ties']} / {c['losses']} | {stats.fmt(d['mean'])}{interval} | "
            f"{c['verdict']} |"
        )
    return "\n".join(lines)


def _intro(report: dict[str, Any]) -> str:
    """The paragraph under the title: corpus, budget, seeds, what each column means."""
    cycles = ", ".join(f"{n} {c}" for n, c in report["lr_cycles"].items())
    return (
        f"Corpus: {report['corpus']}; {report['iterations']} training iterations per seed and "
        f"schedule, seeds {report['seeds']} (mean ± sample std [95 % t-interval of the mean] "
        f"over them); cosine learning-rate cycles per schedule: {cycles}; the best-validation "
        "model of each seed, evaluated at beta = 1. IS-NLL with "
        f"k = {report['importance_samples']}. Per sentence, nats; PPL per token incl. <eos>; "
        "ELBO: Monte Carlo with the NLL's k samples; MI: the estimator of He et al. (2019) over "
        "the split, not clipped (around 0 for a collapsed code; each seed's standard error is in "
        f"the per-seed table); AU: Cov_x(E_q[z_d]) > {report['active_threshold']} of "
        f"{report['latent_dim']} dims."
    )


def render_report(report: dict[str, Any]) -> str:
    """comparison.md from :func:`build_report`'s data."""
    metrics, names = report["metrics"], list(report["metrics"])
    toy = [
        f"| {n} | {r['kl']:.2f} | {r['recon']:.2f} | {r['mi']:.2f} |"
        for n, r in report["toy"].items()
    ]
    studies = ", ".join(f"[{name}](study_{name}.md)" for name in report["studies"])
    lines = [
        "# Text VAE: beta schedules compared", "", _intro(report), "",
        "## What the test split says", "", *verdict(metrics, report["latent_dim"]), "",
        "## Paired comparisons per seed (test; metrics/pretrain_comparison.json)", "",
        "A better: higher KL, MI, AU; lower NLL. An ordering is called only where the 95 % "
        "interval of the paired difference excludes 0.", "",
        paired_table(report["comparison"]["comparisons"]), "",
        "## What the codes carry (test accuracy of each label from a sampled code)", "",
        *probe_table(report["probe"]), "",
        "## Test", "", comparison_table(metrics, "test"), "",
        "## Validation", "", comparison_table(metrics, "valid"), "",
        "## Per seed (test)", "", per_seed_table(metrics, "test"), "",
        "## Toy experiment (10 random sequences, 2-D latent; toy.png)", "",
        "| schedule | KL | recon | MI |", "|---|---|---|---|", *toy, "",
        *([f"Studies (DVC experiments, collected in metrics/studies/): {studies}", ""]
          if report["studies"] else []),
        "Figures: schedules.png, curves.png (training), codes.png (validation KL / MI / AU at "
        "every evaluation), " + ", ".join(f"latent_{n}.png" for n in names) + ", toy.png",
        "",
    ]  # fmt: skip
    return "\n".join(lines)


# --------------------------------------------------------------------------- figures
def _background() -> Any:
    """One worker process for the toy experiment, which trains while this process draws the
    other figures (the report is single-threaded: the second core was idle for ~8 s)."""
    # lazy: only the stage's run starts the worker
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(1, mp_context=mp.get_context("forkserver"))


def _toy(path: Path, seed: int, iterations: int, threads: int) -> dict[str, dict[str, float]]:
    """:func:`vae_figures.toy_experiment` in the worker, on the parent's number of torch threads."""
    # lazy: torch and matplotlib load in the worker process only
    import torch

    from betamcmc.results import vae_figures

    torch.set_num_threads(threads)
    return vae_figures.toy_experiment(path, seed, iterations)


def _first_seed_test(m: dict[str, Any]) -> dict[str, Any]:
    """The first seed's test metrics (the mean over seeds when a file has no ``per_seed``)."""
    first = m.get("per_seed", {}).get(str(m.get("seeds", [0])[0]))
    return first["test"] if first else m["test"]


def draw_figures(
    params: Params,
    corpus: PreparedCorpus,
    items: dict[str, StageItem],
    metrics: dict[str, dict[str, Any]],
    out: Path,
) -> None:
    """schedules.png, curves.png, codes.png and every schedule's latent_<name>.png."""
    # lazy: torch and matplotlib (seconds) load only after the stage checked its inputs
    from betamcmc.results import vae_figures
    from betamcmc.vae.evaluate import posterior_params
    from betamcmc.vae.model import load_vae

    pretrain = params.pretrain
    vae_figures.plot_schedules(pretrain.schedules, pretrain.train.iterations, out / "schedules.png")
    curves = {n: read_csv(item.path("_train.csv")) for n, item in items.items()}
    vae_figures.plot_curves(curves, out / "curves.png")
    valid_curves = {n: read_csv(item.path("_valid.csv")) for n, item in items.items()}
    vae_figures.plot_code_curves(valid_curves, out / "codes.png")
    test = corpus.sentences["test"]
    labels = {f: [s.labels.get(f, 0) for s in test] for f in corpus.label_names}
    for name, item in items.items():
        mu, _ = posterior_params(load_vae(item.out), [s.ids for s in test])
        m = _first_seed_test(metrics[name])
        title = (
            f"{name}, first seed: test posterior means "
            f"(KL {m['kl']:.2f}, MI {m['mi']:.2f}, AU {m['au']})"
        )
        vae_figures.plot_latent(
            mu.numpy(), labels, corpus.label_names, title, out / f"latent_{name}.png"
        )


def draw_studies(studies: list[dict[str, Any]], out: Path) -> dict[str, float]:
    """study_<name>.md and .png of every collected study; what each drew, for MLflow."""
    drawn: dict[str, float] = {}
    for study in studies:
        drawn |= render_study(study, out)
    return drawn


# --------------------------------------------------------------------------- log
def log_report(stage: StageItem, report: dict[str, Any], drawn: dict[str, float]) -> None:
    """The table's test numbers, the toy results and the studies' counts; every file written."""
    metrics = report["metrics"]
    flat = {f"{n}.test.{c}": metrics[n]["test"][c] for n in metrics for c, _ in COLUMNS}
    flat.update({f"toy.{n}.{k}": v for n, r in report["toy"].items() for k, v in r.items()})
    flat.update(drawn)
    tracking.log_metrics(flat)
    tracking.log_artifacts(stage.out, artifact_path=stage.out.as_posix())
    tracking.log_artifact(stage.path("pretrain_comparison.json"))


# --------------------------------------------------------------------------- the stage
def run_report(params: Params, stage: StageItem, studies_dir: Path = STUDIES) -> dict[str, Any]:
    """Read every schedule's outputs (where dvc.yaml puts them), write ``stage.out``, log the run."""
    corpus = load_prepared(pipeline.stage_item("prepare").out)  # fails fast, before heavy imports
    # lazy: torch (seconds) loads only after the corpus check
    import torch

    from betamcmc.vae.model import seed_dirs

    items = {n: pipeline.stage_item("pretrain", schedule=n) for n in params.pretrain.schedules}
    metrics = load_metrics(items)
    studies = load_studies(studies_dir) if studies_dir.is_dir() else []
    torch.manual_seed(params.seed)
    with tracking.stage_run(params, stage), _background() as pool:
        with atomic_path(stage.out) as tmp:
            tmp.mkdir(parents=True)
            toy_job = pool.submit(
                _toy,
                tmp / "toy.png",
                params.seed,
                params.pretrain.report.toy_iterations,
                torch.get_num_threads(),
            )
            draw_figures(params, corpus, items, metrics, tmp)
            drawn = draw_studies(studies, tmp)
            toy = toy_job.result()
            probe = probe_codes({n: seed_dirs(item.out) for n, item in items.items()}, corpus)
            report = build_report(params, corpus, metrics, probe, toy, studies)
            write_text(tmp / "comparison.md", render_report(report))
        write_json(stage.path("pretrain_comparison.json"), report["comparison"])
        log_report(stage, report, drawn)
    return {"metrics": metrics, "toy": toy, "comparison": report["comparison"]}
