"""DVC stage `prepare`: corpus -> data/prepared/ (vocabulary, token ids, labels, dialogs).

Reads ``seed`` and ``data`` from params.yaml; writes ``data/prepared/`` (format:
``src/betamcmc/data/prepared.py``) and ``metrics/prepare.json``. Both are written atomically,
and only after the whole corpus loaded and validated: bad input leaves nothing behind.
"""

from __future__ import annotations

import argparse

from betamcmc import tracking
from betamcmc.data.prepare import prepare
from betamcmc.data.prepared import write_prepared
from betamcmc.io import write_json
from betamcmc.params import load_params
from betamcmc.runner import run_stage
from betamcmc.stopping import signals_deferred

KEYS = ["seed", "data"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="data/prepared")
    ap.add_argument("--metrics", default="metrics/prepare.json")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    corpus, stats = prepare(params.data, params.seed)
    with tracking.stage_run(
        params, stage="prepare", keys=KEYS, tags={"corpus": params.data.corpus}
    ):
        with signals_deferred():  # the corpus and its statistics are written as a pair
            write_prepared(args.out, corpus)
            write_json(args.metrics, stats)
        flat = {
            f"{split}.{k}": v
            for split in ("train", "valid", "test")
            for k, v in stats[split].items()
            if isinstance(v, int | float)
        }
        tracking.log_metrics({"vocab_size": stats["vocab_size"], **flat})
        import mlflow

        mlflow.log_artifact(args.metrics)
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
