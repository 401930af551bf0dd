"""DVC stage `prepare`: corpus -> data/prepared/ (vocabulary, token ids, labels, dialogs).

Reads ``seed`` and ``data`` from params.yaml; writes ``data/prepared/`` (format:
``src/betamcmc/data/prepared.py``) and ``metrics/prepare.json`` (paths: dvc.yaml). Both are
written atomically, and only after the whole corpus loaded and validated: bad input leaves
nothing behind. The work: ``betamcmc.data.prepare.run_prepare``.
"""

from __future__ import annotations

import argparse

from betamcmc.core import pipeline
from betamcmc.core.paramfile import load_stage_params
from betamcmc.core.runner import run_stage
from betamcmc.data.params import DataParams
from betamcmc.data.prepare import run_prepare


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)

    params = load_stage_params(args.params, data=DataParams)
    stats = run_prepare(params, pipeline.stage_item("prepare"))
    print(
        f"prepared {params.data.corpus}: "
        + ", ".join(
            f"{s} {stats[s]['sentences']} sentences / {stats[s]['dialog_examples']} dialog examples"
            for s in ("train", "valid", "test")
        )
        + f"; vocabulary {stats['vocab_size']}"
    )


if __name__ == "__main__":
    run_stage(main)
