"""DVC stage `finetune_report`: markdown tables and the accuracy-vs-label-fraction figure.

Reads ``metrics/classify/<schedule>.json`` and ``metrics/dialog/<schedule>-bow<b>.json`` for every
configured schedule and bow setting; writes ``reports/finetune/`` (classify.md,
classify_accuracy.png, dialog.md) as one directory, atomically. One MLflow run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from betamcmc import tracking
from betamcmc.io import atomic_path
from betamcmc.params import load_params
from betamcmc.runner import run_stage

KEYS = ["pretrain.schedules", "finetune.dialog.bow"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--metrics", default="metrics")
    ap.add_argument("--out", default="reports/finetune")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    from betamcmc.finetune.report import load_metrics, write_report

    schedules = list(params.pretrain.schedules)
    items = [
        f"{s}-bow{'true' if b else 'false'}" for s in schedules for b in params.finetune.dialog.bow
    ]
    classify = load_metrics(Path(args.metrics) / "classify", schedules)
    dialog = load_metrics(Path(args.metrics) / "dialog", items)
    with tracking.stage_run(params, stage="finetune_report", keys=KEYS):
        with atomic_path(args.out) as tmp:
            write_report(tmp, classify, dialog)
        import mlflow

        mlflow.log_artifacts(args.out, artifact_path="reports")
    print(f"wrote {args.out}/classify.md, classify_accuracy.png, dialog.md")


if __name__ == "__main__":
    run_stage(main)
