"""DVC stage `dialog@<schedule>-<bow>`: a dialog CVAE (Zhao et al. 2017) whose KL weight follows
the schedule ``pretrain.schedules.<schedule>``, without (``nobow``) or with (``bow``) the
bag-of-words loss; one CVAE per ``finetune.dialog.seeds`` seed (metrics: mean, std, 95 % CI).

Reads ``data/prepared/`` (dialogs) and, with ``finetune.dialog.init_encoder: pretrained``,
``models/pretrain/<schedule>/`` (the utterance encoder starts from the pretrained VAE encoder).
Writes the outputs dvc.yaml declares: ``models/dialog/<item>/`` (model.pt, vocab.txt,
samples.json), the metrics file and the training curve (per-iteration beta, loss, rec, kl, bow);
one MLflow run. The work: ``betamcmc.finetune.dialog.run_dialog``.
"""

from __future__ import annotations

import argparse

from betamcmc.core import pipeline
from betamcmc.core.paramfile import load_stage_params, require_item
from betamcmc.core.runner import run_stage
from betamcmc.data.params import DataParams
from betamcmc.finetune.params import BOW, FinetuneParams
from betamcmc.vae.params import PretrainParams


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("schedule", help="an entry of finetune.schedules")
    ap.add_argument("--bow", required=True, help="the bag-of-words setting (finetune.dialog.bow)")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    params = load_stage_params(
        args.params, data=DataParams, finetune=FinetuneParams, pretrain=PretrainParams
    )
    require_item(args.params, "finetune.schedules", args.schedule, params.finetune.schedules)
    require_item(args.params, "finetune.dialog.bow", args.bow, BOW)

    # lazy: torch loads only after the params check (a bad value fails in a fraction of a second)
    from betamcmc.finetune.dialog import run_dialog

    m = run_dialog(params, pipeline.stage_item("dialog", schedule=args.schedule, bow=args.bow))
    n = params.finetune.dialog.bleu_order
    print(
        f"dialog@{args.schedule}-{args.bow}: test ELBO {m['test_elbo']:.2f} "
        f"(rec {m['test_rec']:.2f}, KL {m['test_kl']:.2f}), BLEU-{n} P/R "
        f"{m[f'bleu{n}_precision']:.3f}/{m[f'bleu{n}_recall']:.3f}, "
        f"distinct-1/2 {m['distinct1']:.3f}/{m['distinct2']:.3f}"
    )


if __name__ == "__main__":
    run_stage(main)
