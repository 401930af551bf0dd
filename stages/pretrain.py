"""DVC stage `pretrain@<schedule>` (matrix over pretrain.schedules): one text VAE per beta schedule.

``python stages/pretrain.py <schedule>`` reads ``data/prepared/`` and the params listed in
dvc.yaml, trains one VAE per seed of ``pretrain.seeds`` under that schedule (resuming from
``models/.resume/pretrain/<schedule>/seed<k>/`` if a previous run was interrupted), evaluates
them on valid and test, and writes the outputs dvc.yaml declares (``models/pretrain/<schedule>/``,
``metrics/pretrain/<schedule>.json`` and the curves ``..._{train,valid}.csv``) plus MLflow runs.
The work: ``betamcmc.vae.pretrain.run_pretrain``.
"""

from __future__ import annotations

import argparse

from betamcmc import pipeline
from betamcmc.params import load_params, require_item
from betamcmc.runner import run_stage
from betamcmc.vae.pretrain import run_pretrain


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("schedule", help="a key of pretrain.schedules")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    require_item(args.params, "pretrain.schedules", args.schedule, params.pretrain.schedules)
    metrics = run_pretrain(params, pipeline.stage_item("pretrain", schedule=args.schedule))
    t = metrics["test"]
    print(
        f"pretrain[{metrics['schedule']}]: {len(metrics['seeds'])} seed(s), test (mean +- std) "
        f"kl {t['kl']:.2f} +- {t['kl_std']:.2f}, mi {t['mi']:.2f} +- {t['mi_std']:.2f}, "
        f"au {t['au']:.1f}, nll {t['nll']:.2f} +- {t['nll_std']:.2f}, ppl {t['ppl']:.2f}"
    )


if __name__ == "__main__":
    run_stage(main)
