"""DVC stage `dialog@<schedule>-<bow>`: a dialog CVAE (Zhao et al. 2017) whose KL weight follows
the schedule ``pretrain.schedules.<schedule>``, with or without the bag-of-words loss.

Reads ``data/prepared/`` (dialogs) and, with ``finetune.dialog.init_encoder: pretrained``,
``models/pretrain/<schedule>/`` (the utterance encoder starts from the pretrained VAE encoder).
Writes ``models/dialog/<schedule>-bow<true|false>/`` (model.pt, vocab.txt, samples.json),
``metrics/dialog/<schedule>-bow<true|false>.json`` and ``..._train.csv`` (per-iteration beta, loss,
rec, kl, bow). One MLflow run tagged with the schedule and the bow setting.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

# Set before torch loads OpenMP: spinning threads on a shared, busy machine slow training down.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from betamcmc import tracking  # noqa: E402
from betamcmc.io import atomic_path, write_json, write_text  # noqa: E402
from betamcmc.params import load_params  # noqa: E402
from betamcmc.runner import resolve_device, run_stage, seed_everything  # noqa: E402
from betamcmc.stopping import signals_deferred  # noqa: E402

KEYS = ["seed", "data.max_len", "data.dialog_context", "finetune.threads", "finetune.dialog"]


def parse_bool(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"--bow must be true or false (got {text!r})")
    return text.lower() == "true"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("schedule", help="a key of pretrain.schedules")
    ap.add_argument("--bow", type=parse_bool, required=True, help="bag-of-words loss: true|false")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--pretrained", default="models/pretrain")
    ap.add_argument("--models", default="models/dialog")
    ap.add_argument("--out", default="metrics/dialog")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    params.pretrain.require_schedule(args.schedule, args.params)
    schedules = params.pretrain.schedules
    from betamcmc.data.prepared import load_prepared
    from betamcmc.finetune import dialog, limit_threads
    from betamcmc.finetune.cvae import save_cvae

    dp = params.finetune.dialog
    limit_threads(params.finetune.threads)
    corpus = load_prepared(args.prepared)
    dialog.check_dialog_corpus(corpus, args.prepared)
    seed_everything(params.seed)
    pretrained = Path(args.pretrained) / args.schedule if dp.init_encoder == "pretrained" else None
    model = dialog.build_model(dp, args.bow, corpus.vocab, params.data.dialog_context, pretrained)
    model.to(resolve_device(params.device))  # a GPU under device: auto (bf16 autocast there)
    item = f"{args.schedule}-bow{'true' if args.bow else 'false'}"
    max_len = dp.max_decode_len or params.data.max_len
    keys = [*KEYS, f"pretrain.schedules.{args.schedule}"]

    with tracking.stage_run(
        params,
        stage="dialog",
        item=item,
        keys=keys,
        tags={"schedule": args.schedule, "bow": str(args.bow).lower()},
    ):
        result = dialog.train_cvae(
            model,
            corpus,
            schedules[args.schedule],
            dp,
            params.seed,
            on_epoch=lambda epoch, valid: tracking.log_metrics(
                {f"valid_{k}": v for k, v in valid.items()}, step=epoch
            ),
        )
        tracking.log_series(result.series, result.steps)
        metrics, samples = dialog.evaluate_dialog(model, corpus, dp, max_len, params.seed)
        metrics = {
            "schedule": args.schedule,
            "bow": args.bow,
            "init_encoder": dp.init_encoder,
            "iterations": result.iterations,
            "best_epoch": result.best_epoch,
            "valid_elbo": result.best_valid_elbo,
            **metrics,
        }
        out = Path(args.out)
        header = "step," + ",".join(result.series)
        lines = [header] + [
            f"{s}," + ",".join(f"{result.series[k][i]:.6g}" for k in result.series)
            for i, s in enumerate(result.steps)
        ]
        with signals_deferred():  # the model and its metrics are written as a pair
            with atomic_path(Path(args.models) / item) as tmp:
                save_cvae(tmp, model, corpus.vocab)
                (tmp / "samples.json").write_text(
                    json.dumps(samples, indent=2) + "\n", encoding="utf-8"
                )
            write_text(out / f"{item}_train.csv", "\n".join(lines) + "\n")
            write_json(out / f"{item}.json", metrics)
        tracking.log_metrics({k: v for k, v in metrics.items() if isinstance(v, int | float)})
        import mlflow

        mlflow.log_artifact(str(out / f"{item}.json"))
        mlflow.log_artifact(str(Path(args.models) / item / "samples.json"))
    print(
        f"dialog@{item}: test ELBO {metrics['test_elbo']:.2f} (rec {metrics['test_rec']:.2f}, "
        f"KL {metrics['test_kl']:.2f}), BLEU-{dp.bleu_order} P/R "
        f"{metrics[f'bleu{dp.bleu_order}_precision']:.3f}/{metrics[f'bleu{dp.bleu_order}_recall']:.3f}, "
        f"distinct-1/2 {metrics['distinct1']:.3f}/{metrics['distinct2']:.3f}"
    )


if __name__ == "__main__":
    run_stage(main)
