"""DVC stage `pretrain_report`: compare every pretrain schedule (table, figures) in reports/pretrain/.

Reads ``metrics/pretrain/<schedule>.json`` and ``_train.csv``, ``models/pretrain/<schedule>/`` and
``data/prepared/``; writes ``reports/pretrain/`` (comparison.md, schedules.png, curves.png,
latent_<schedule>.png, toy.png) and one MLflow run. See ``betamcmc.vae.report``.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP (shared machine)

from betamcmc.params import load_params  # noqa: E402
from betamcmc.runner import run_stage  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params = load_params(args.params)

    from betamcmc.vae.report import REPORTS, run_report

    if params.pretrain.train.threads:
        import torch

        torch.set_num_threads(params.pretrain.train.threads)
    run_report(params)
    print(f"pretrain_report: wrote {REPORTS}/comparison.md and figures")


if __name__ == "__main__":
    run_stage(main)
