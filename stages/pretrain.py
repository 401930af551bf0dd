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

from betamcmc.core import pipeline
from betamcmc.core.paramfile import load_stage_params, require_item
from betamcmc.core.runner import run_stage
from betamcmc.vae.params import PretrainParams
from betamcmc.vae.pretrain import run_pretrain


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("schedule", help="a key of pretrain.schedules")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params = load_stage_params(args.params, pretrain=PretrainParams)
    require_item(args.params, "pretrain.schedules", args.schedule, params.pretrain.schedules)
    metrics = run_pretrain(params, pipeline.stage_item("pretrain", schedule=args.schedule))
    t = metrics["test"]

    def pm(key: str, digits: int = 2) -> str:  # mean +- std (std: none for a single seed)
        std = t.get(f"{key}_std")
        return f"{t[key]:.{digits}f}" + (f" +- {std:.{digits}f}" if std is not None else "")

    print(
        f"pretrain[{metrics['schedule']}]: {len(metrics['seeds'])} seed(s), test (mean +- std) "
        f"kl {pm('kl')}, mi {pm('mi')}, au {pm('au', 1)}, nll {pm('nll')}, ppl {t['ppl']:.2f}"
    )


if __name__ == "__main__":
    run_stage(main)
