"""DVC stage `classify@<schedule>`: semi-supervised classification from a pretrained VAE's codes.

Reads ``models/pretrain/<schedule>/`` (every seed) and ``data/prepared/``; writes the metrics
file (accuracy mean/std/95 % CI between VAE seeds per method x label fraction, and
validation accuracy of both readouts) and the accuracy-vs-fraction
plot data that dvc.yaml declares, and one MLflow run. Inputs are checked before anything is
written (bad input: one line, exit 2). The work: ``betamcmc.finetune.classify.run_classify``.
"""

from __future__ import annotations

import argparse

from betamcmc.core import pipeline
from betamcmc.core.paramfile import load_stage_params, require_item
from betamcmc.core.runner import run_stage
from betamcmc.finetune.params import FinetuneParams


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("schedule", help="an entry of finetune.schedules")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params = load_stage_params(args.params, finetune=FinetuneParams)
    require_item(args.params, "finetune.schedules", args.schedule, params.finetune.schedules)

    # lazy: torch loads only after the params check (a bad value fails in a fraction of a second)
    from betamcmc.finetune.classify import run_classify

    m = run_classify(params, pipeline.stage_item("classify", schedule=args.schedule))
    print(
        f"classify@{args.schedule} ({m['label']}, {m['classifier']} on {m['features']}): "
        + ", ".join(
            f"{k}: vae {v['vae']['mean']:.3f} / bow {v['bow']['mean']:.3f}"
            for k, v in m["fractions"].items()
        )
    )


if __name__ == "__main__":
    run_stage(main)
