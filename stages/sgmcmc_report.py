"""Stage ``sgmcmc_report``: figures and a table across the sgmcmc matrix into ``reports/sgmcmc/``.

python stages/sgmcmc_report.py [--params params.yaml]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from betamcmc.params import load_params
from betamcmc.runner import run_stage


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    load_params(args.params)
    from betamcmc.sgmcmc.report import write_report

    write_report(Path("metrics/sgmcmc"), Path("metrics/sgmcmc_sgd.json"), Path("reports/sgmcmc"))
    print((Path("reports/sgmcmc") / "table.md").read_text())


if __name__ == "__main__":
    run_stage(main)
