"""DVC stage `finetune_report`: markdown tables and the accuracy-vs-label-fraction figure.

Reads the metrics files of every ``classify``, ``dialog`` and ``sgmcmc_vae_head`` item of
``finetune.schedules``; writes ``reports/finetune/`` (classify.md, classify_accuracy.png,
dialog.md, vae_head.md) as one directory, atomically; one MLflow run.
The work: ``betamcmc.finetune.report.run_report``.
"""

from __future__ import annotations

import argparse

from betamcmc.core import pipeline
from betamcmc.core.paramfile import load_stage_params
from betamcmc.core.runner import run_stage
from betamcmc.finetune.params import FinetuneParams
from betamcmc.finetune.report import run_report


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params = load_stage_params(args.params, finetune=FinetuneParams)

    stage = pipeline.stage_item("finetune_report")
    run_report(params, stage)
    print(f"wrote {stage.out}/classify.md, classify_accuracy.png, dialog.md, vae_head.md")


if __name__ == "__main__":
    run_stage(main)
