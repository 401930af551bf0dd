"""DVC stage `pretrain_report`: compare every pretrain schedule (table, figures) in reports/pretrain/.

Reads every ``pretrain@<schedule>`` item's outputs and ``data/prepared/``; writes
``reports/pretrain/`` (comparison.md, schedules.png, curves.png, codes.png,
latent_<schedule>.png, toy.png, the studies), ``metrics/pretrain_comparison.json`` (the paired
per-seed schedule comparisons) and one MLflow run. The work:
``betamcmc.results.vae.run_report``.
"""

from __future__ import annotations

import argparse

from betamcmc.core import pipeline
from betamcmc.core.paramfile import load_stage_params
from betamcmc.core.runner import run_stage
from betamcmc.results.vae import run_report
from betamcmc.vae.params import PretrainParams


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params = load_stage_params(args.params, pretrain=PretrainParams)

    if params.runtime.threads:
        import torch  # lazy: torch loads only after the params check

        torch.set_num_threads(params.runtime.threads)
    stage = pipeline.stage_item("pretrain_report")
    result = run_report(params, stage)
    called = sum(c["verdict"] != "indistinguishable" for c in result["comparison"]["comparisons"])
    print(
        f"pretrain_report: wrote {stage.out}/comparison.md, figures and "
        f"{stage.path('pretrain_comparison.json')} ({called} of "
        f"{len(result['comparison']['comparisons'])} paired comparisons call an ordering)"
    )


if __name__ == "__main__":
    run_stage(main)
