"""DVC stage `classify@<schedule>`: semi-supervised classification from a pretrained VAE's codes.

Reads ``models/pretrain/<schedule>/`` and ``data/prepared/``; writes
``metrics/classify/<schedule>.json`` (accuracy mean/std over seeds per method x label fraction)
and ``metrics/classify/<schedule>_accuracy.csv`` (plot data). One MLflow run tagged with the
schedule. Inputs are checked before anything is written (bad input: one line, exit 2).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

# Set before torch loads OpenMP: spinning threads on a shared, busy machine slow training down.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from betamcmc import tracking  # noqa: E402
from betamcmc.io import write_json, write_text  # noqa: E402
from betamcmc.params import load_params  # noqa: E402
from betamcmc.runner import run_stage, seed_everything  # noqa: E402
from betamcmc.stopping import signals_deferred  # noqa: E402

KEYS = [
    "seed",
    "finetune.label",
    "finetune.label_fractions",
    "finetune.seeds",
    "finetune.classifier",
    "finetune.features",
    "finetune.finetune_encoder",
    "finetune.logreg_c",
    "finetune.mlp_hidden",
    "finetune.epochs",
    "finetune.lr",
    "finetune.finetune_epochs",
    "finetune.finetune_lr",
    "finetune.batch_size",
    "finetune.max_train",
    "finetune.max_test",
    "finetune.threads",
]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("schedule", help="a key of pretrain.schedules")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--models", default="models/pretrain")
    ap.add_argument("--out", default="metrics/classify")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    params.pretrain.require_schedule(args.schedule, args.params)

    from betamcmc.data.prepared import load_prepared
    from betamcmc.finetune import limit_threads
    from betamcmc.finetune.classify import accuracy_rows, pick_label, run_classification
    from betamcmc.vae.model import load_vae, seed_dirs

    corpus = load_prepared(args.prepared)
    label = pick_label(corpus, params.finetune.label, args.prepared)
    vaes = [load_vae(d) for d in seed_dirs(Path(args.models) / args.schedule)]
    limit_threads(params.finetune.threads)
    seed_everything(params.seed)

    out = Path(args.out)
    with tracking.stage_run(
        params, stage="classify", item=args.schedule, keys=KEYS, tags={"schedule": args.schedule}
    ):
        metrics = {
            "schedule": args.schedule,
            **run_classification(vaes, corpus, params.finetune, label),
        }
        rows = accuracy_rows(metrics)
        with signals_deferred():  # the plot data and the metrics are written as a pair
            write_text(out / f"{args.schedule}_accuracy.csv", rows)
            write_json(out / f"{args.schedule}.json", metrics)
        flat = {
            f"acc_{method}_{key}_{stat}": value[stat]
            for key, row in metrics["fractions"].items()
            for method, value in row.items()
            if isinstance(value, dict)
            for stat in ("mean", "std")
        }
        tracking.log_metrics(flat)
        import mlflow

        mlflow.log_artifact(str(out / f"{args.schedule}.json"))
    best = metrics["fractions"]
    print(
        f"classify@{args.schedule} ({label}, {metrics['classifier']} on {metrics['features']}): "
        + ", ".join(
            f"{k}: vae {v['vae']['mean']:.3f} / bow {v['bow']['mean']:.3f}" for k, v in best.items()
        )
    )


if __name__ == "__main__":
    run_stage(main)
