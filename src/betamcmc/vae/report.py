"""The ``pretrain_report`` stage's work: compare every schedule in one table and a few figures.

Writes ``reports/pretrain/`` (atomically, as a whole):

- ``comparison.md``   valid/test recon, KL, ELBO, IS-NLL, PPL, MI, AU per schedule + toy results
- ``schedules.png``   beta over the iterations of every configured schedule
- ``curves.png``      training beta / reconstruction / KL per schedule
- ``latent_<name>.png`` 2-D PCA of test posterior means coloured by the corpus labels
- ``toy.png``         the toy experiment (constant vs monotonic vs cyclical on 10 sequences)

and logs the same files and the table's numbers to one MLflow run (stage ``pretrain_report``).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from betamcmc.errors import InputError
from betamcmc.io import atomic_path, read_json
from betamcmc.params import Params

REPORTS = Path("reports/pretrain")
COLUMNS = (("recon", ".2f"), ("kl", ".2f"), ("elbo", ".2f"), ("nll", ".2f"), ("ppl", ".2f"),
           ("mi", ".2f"), ("au", "d"))  # fmt: skip


def read_curve_csv(path: Path) -> dict[str, list[float]]:
    with open(path, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return {key: [float(r[key]) for r in rows] for key in (rows[0].keys() if rows else [])}


def comparison_table(metrics: dict[str, dict[str, Any]], split: str) -> str:
    head = (
        "| schedule | kind | best it. | "
        + " | ".join(
            {
                "recon": "recon",
                "kl": "KL",
                "elbo": "ELBO",
                "nll": "NLL (IS)",
                "ppl": "PPL",
                "mi": "MI",
                "au": "AU",
            }[c]
            for c, _ in COLUMNS  # fmt: skip
        )
        + " |"
    )
    lines = [head, "|" + "---|" * (3 + len(COLUMNS))]
    for name, m in metrics.items():
        cells = [format(m[split][c], f) for c, f in COLUMNS]
        lines.append(
            f"| {name} | {m['kind']} | {m['best_iteration']} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def run_report(params: Params, metrics_dir: Path = Path("metrics/pretrain"),
               models_dir: Path = Path("models/pretrain"), prepared: Path = Path("data/prepared"),
               out: Path = REPORTS) -> dict[str, Any]:  # fmt: skip
    from betamcmc.data.prepared import load_prepared

    corpus = load_prepared(prepared)  # fails fast (one line) before the heavy imports

    import mlflow
    import torch

    from betamcmc import tracking
    from betamcmc.vae import figures
    from betamcmc.vae.evaluate import posterior_params
    from betamcmc.vae.model import load_vae

    names = list(params.pretrain.schedules)
    metrics: dict[str, dict[str, Any]] = {}
    for name in names:
        path = metrics_dir / f"{name}.json"
        if not path.exists():
            raise InputError(
                f"metrics of schedule {name!r} not found (run `dvc repro pretrain`)", path
            )
        metrics[name] = read_json(path)
    test = corpus.sentences["test"]
    total = params.pretrain.train.iterations
    torch.manual_seed(params.seed)

    with tracking.stage_run(params, stage="pretrain_report", keys=["seed", "pretrain"]):
        with atomic_path(out) as tmp:
            tmp.mkdir(parents=True)
            figures.plot_schedules(params.pretrain.schedules, total, tmp / "schedules.png")
            curves = {n: read_curve_csv(metrics_dir / f"{n}_train.csv") for n in names}
            figures.plot_curves(curves, tmp / "curves.png")
            labels = {f: [s.labels.get(f, 0) for s in test] for f in corpus.label_names}
            for name in names:
                model = load_vae(models_dir / name)
                mu, _ = posterior_params(model, [s.ids for s in test])
                m = metrics[name]["test"]
                figures.plot_latent(
                    mu.numpy(), labels, corpus.label_names,
                    f"{name}: test posterior means (KL {m['kl']:.2f}, MI {m['mi']:.2f}, AU {m['au']})",
                    tmp / f"latent_{name}.png",
                )  # fmt: skip
            toy = figures.toy_experiment(
                tmp / "toy.png", params.seed, params.pretrain.report.toy_iterations
            )
            text = [
                "# Text VAE: beta schedules compared",
                "",
                f"Corpus: {corpus.meta.get('corpus', '?')}; {total} training iterations per schedule; "
                f"IS-NLL with k = {params.pretrain.eval.importance_samples}. Per sentence, nats; "
                "PPL per token incl. <eos>; ELBO: Monte Carlo with the NLL's k samples (= -(recon + KL) up to "
                "sampling error of the KL); MI: Hoffman & Johnson / He et al.; AU: Cov_x(E_q[z_d]) > "
                f"{params.pretrain.eval.active_threshold} of {params.pretrain.model.latent_dim} dims.",
                "",
                "## Test",
                "",
                comparison_table(metrics, "test"),
                "",
                "## Validation",
                "",
                comparison_table(metrics, "valid"),
                "",
                "## Toy experiment (10 random sequences, 2-D latent; toy.png)",
                "",
                "| schedule | KL | recon | MI |",
                "|---|---|---|---|",
                *[f"| {n} | {r['kl']:.2f} | {r['recon']:.2f} | {r['mi']:.2f} |" for n, r in toy.items()],
                "",
                "Figures: schedules.png, curves.png, " + ", ".join(f"latent_{n}.png" for n in names)
                + ", toy.png",
                "",
            ]  # fmt: skip
            (tmp / "comparison.md").write_text("\n".join(text), encoding="utf-8")
        flat = {f"{n}_test_{c}": metrics[n]["test"][c] for n in names for c, _ in COLUMNS}
        flat.update({f"toy_{n}_{k}": v for n, r in toy.items() for k, v in r.items()})
        tracking.log_metrics(flat)
        mlflow.log_artifacts(str(out), artifact_path="reports/pretrain")
    return {"metrics": metrics, "toy": toy}
