"""Train and evaluate the dialog CVAE (:mod:`betamcmc.finetune.cvae`) under one beta schedule.

The stage ``dialog@<schedule>-<bow>`` calls :func:`check_dialog_corpus`, :func:`build_model`,
:func:`~betamcmc.finetune.dialog_train.train_cvae` (the training loop, in ``dialog_train``) and
:func:`evaluate_dialog`; :func:`respond` serves ``betamcmc respond``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from betamcmc import tracking
from betamcmc.core import pipeline, stats
from betamcmc.core.errors import InputError
from betamcmc.core.io import atomic_path, limit_threads, write_csv, write_json
from betamcmc.core.pipeline import StageItem
from betamcmc.core.runner import resolve_device, seed_everything
from betamcmc.core.stopping import signals_deferred
from betamcmc.data.prepared import Dialog, PreparedCorpus, Vocab, load_prepared, load_vocab
from betamcmc.finetune.cvae import CVAEConfig, DialogCVAE, collate
from betamcmc.finetune.dialog_metrics import (
    ActClassifier,
    corpus_bleu_precision_recall,
    distinct_n,
)
from betamcmc.finetune.dialog_train import (
    TrainResult,
    evaluate_elbo,
    minibatches,
    model_device,
    train_cvae,
)
from betamcmc.finetune.params import DialogParams
from betamcmc.tracking.progress import Progress
from betamcmc.vae.model import load_vae, seed_dirs

if TYPE_CHECKING:
    from betamcmc.params import Params


def check_dialog_corpus(corpus: PreparedCorpus) -> None:
    """A dialog corpus needs (context, response) examples in train, valid and test."""
    for split in ("train", "valid", "test"):
        examples = corpus.dialogs.get(split, [])
        if not examples or not any(d.response for d in examples):
            raise InputError(
                f"corpus '{corpus.meta.get('corpus', '?')}' has no dialog responses in its {split} "
                "split; the dialog stage needs a dialog corpus (data.corpus: synthetic or swda)",
                corpus.path,
            )


def check_same_vocab(corpus_vocab: Vocab, model_vocab_file: str | Path) -> None:
    """The pretrained encoder's embedding rows must mean the same words as the corpus ids."""
    theirs = load_vocab(model_vocab_file)
    if theirs.tokens != corpus_vocab.tokens:
        first = next(
            (i for i, (a, b) in enumerate(zip(theirs.tokens, corpus_vocab.tokens)) if a != b),
            min(len(theirs), len(corpus_vocab)),
        )
        raise InputError(
            f"vocabulary mismatch: the pretrained VAE has {len(theirs)} tokens, the prepared corpus "
            f"{len(corpus_vocab)}, first difference at id {first}; re-run pretrain on this corpus "
            "or set finetune.dialog.init_encoder: random",
            model_vocab_file,
        )


def build_model(
    params: DialogParams,
    bow: bool,
    vocab: Vocab,
    max_context: int,
    pretrained_dir: str | Path | None = None,
) -> DialogCVAE:
    """A fresh CVAE; with ``pretrained_dir`` its embedding and utterance encoder are copied from
    the pretrained text VAE there (sizes follow the VAE; vocabularies must match)."""
    sizes: dict[str, Any] = {
        "emb_dim": params.emb_dim,
        "utt_hidden": params.utt_hidden,
        "bidirectional": params.bidirectional,
    }
    vae = None
    if pretrained_dir is not None:
        vocab_file = Path(pretrained_dir) / "vocab.txt"
        if not vocab_file.exists():  # a seed<k>/ folder: the schedule folder holds the vocabulary
            vocab_file = Path(pretrained_dir).parent / "vocab.txt"
        check_same_vocab(vocab, vocab_file)
        vae = load_vae(pretrained_dir, map_location="cpu")
        cfg = vae.config
        sizes = {
            "emb_dim": cfg.emb_dim,
            "utt_hidden": cfg.hidden_dim,
            "bidirectional": bool(cfg.bidirectional),
        }
    config = CVAEConfig(
        vocab_size=len(vocab),
        ctx_hidden=params.ctx_hidden,
        latent_dim=params.latent_dim,
        dec_hidden=params.dec_hidden,
        prior_hidden=params.prior_hidden,
        dropout=params.dropout,
        bow=bow,
        max_context=max_context,
        **sizes,
    )
    model = DialogCVAE(config)
    if vae is not None:
        model.embedding.load_state_dict(vae.embedding.state_dict())
        model.utt_encoder.load_state_dict(vae.encoder.state_dict())
    return model


@torch.no_grad()
def sample_responses(
    model: DialogCVAE, dialogs: list[Dialog], n: int, max_len: int, seed: int, batch_size: int = 64
) -> list[list[list[int]]]:
    """``n`` sampled responses (ids) per example, from a fixed seed."""
    model.eval()
    state = torch.random.get_rng_state()
    torch.manual_seed(seed + 104729)
    out: list[list[list[int]]] = []
    for chunk in minibatches(dialogs, batch_size, None):
        out.extend(
            model.sample(
                collate(chunk, model.config.max_context).to(model_device(model)), n, max_len
            )
        )
    torch.random.set_rng_state(state)
    return out


def evaluate_dialog(
    model: DialogCVAE,
    corpus: PreparedCorpus,
    params: DialogParams,
    max_len: int,
    seed: int,
    acts: ActClassifier | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Test-split metrics (ELBO terms, BLEU-n precision/recall/F1 over N samples, distinct-1/2,
    dialog-act agreement when the corpus has acts) and some sample rows for the report."""
    test = corpus.dialogs["test"]
    metrics: dict[str, Any] = {
        f"test_{k}": v for k, v in evaluate_elbo(model, test, params.batch_size, seed).items()
    }
    scored = test[: params.eval_contexts] if params.eval_contexts else test
    samples = sample_responses(model, scored, params.samples, max_len, seed)
    vocab = corpus.vocab
    hyps = [[vocab.decode(s) for s in per] for per in samples]
    refs = [[vocab.decode(d.response)] for d in scored]
    metrics.update(corpus_bleu_precision_recall(hyps, refs, params.bleu_order))
    flat = [h for per in hyps for h in per]
    metrics["distinct1"] = distinct_n(flat, 1)
    metrics["distinct2"] = distinct_n(flat, 2)
    metrics["mean_response_len"] = sum(len(h.split()) for h in flat) / max(len(flat), 1)
    metrics["contexts_scored"] = len(scored)
    metrics["samples_per_context"] = params.samples
    clf = acts if acts is not None else act_classifier(corpus)
    if clf is not None:
        metrics["act_classifier_accuracy"] = clf.accuracy(
            [d.response for d in scored], [int(d.act) for d in scored]
        )
        metrics["act_agreement"] = clf.agreement(samples, [int(d.act) for d in scored])
    else:
        metrics["act_classifier_accuracy"] = None
        metrics["act_agreement"] = None
    rows = []
    for d, per in list(zip(scored, hyps, strict=True))[:10]:
        rows.append(
            {
                "context": [vocab.decode(u) for u in d.context[-model.config.max_context :]],
                "reference": vocab.decode(d.response),
                "samples": per,
            }
        )
    return metrics, rows


def act_classifier(corpus: PreparedCorpus) -> ActClassifier | None:
    """The dialog-act classifier fitted on the train responses; None when the corpus has no
    acts. It does not depend on the CVAE: fit once per stage item, shared by every seed."""
    if not all(d.act is not None for split in ("train", "test") for d in corpus.dialogs[split]):
        return None
    train = corpus.dialogs["train"]
    return ActClassifier.fit(
        [d.response for d in train], [int(d.act) for d in train], len(corpus.vocab)
    )


@torch.no_grad()
def respond(
    model: DialogCVAE, vocab: Vocab, context: list[str], n: int, max_len: int, seed: int
) -> list[str]:
    """Sample ``n`` responses to a context given as utterances (oldest first, alternating speakers
    and ending with the other speaker, so the response comes from the speaker before the last)."""
    if not context:
        raise InputError("give at least one context utterance")
    turns = [vocab.encode(u.lower().split()) for u in context]
    speakers = ["A" if (len(turns) - i) % 2 == 1 else "B" for i in range(len(turns))]
    example = Dialog(context=turns, speakers=speakers, response=[], response_speaker="B")
    torch.manual_seed(seed)
    model.eval()
    ids = model.sample(
        collate([example], model.config.max_context).to(model_device(model)), n, max_len
    )[0]
    return [vocab.decode(s) for s in ids]


# --------------------------------------------------------------------------- the stage
CONSTANT_KEYS = ("iterations", "contexts_scored", "samples_per_context")


def aggregate_seeds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One metrics dict from the per-seed ones: every numeric metric m becomes its mean over the
    seeds, with ``m_std`` (ddof = 1), ``m_ci_low``/``m_ci_high`` (95 % t-interval; None for one
    seed), plus ``n_seeds`` and ``per_seed`` (m -> list in seed order); constants and
    non-numeric values (e.g. ``act_agreement: null`` without acts) are kept from the first."""
    out: dict[str, Any] = {}
    per_seed: dict[str, list[Any]] = {}
    for key, value in runs[0].items():
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if not numeric or key in CONSTANT_KEYS:
            out[key] = value
            continue
        values = [float(r[key]) for r in runs]
        s = stats.mean_std_ci(values)
        out.update(
            {
                key: s["mean"],
                f"{key}_std": s["std"],
                f"{key}_ci_low": s["ci_low"],
                f"{key}_ci_high": s["ci_high"],
            }
        )
        per_seed[key] = values
    out["n_seeds"] = len(runs)
    out["per_seed"] = per_seed
    return out


def _one_seed(
    params: Params,
    stage: StageItem,
    corpus: PreparedCorpus,
    position: int,
    progress: Any,
    acts: ActClassifier | None,
) -> tuple[DialogCVAE, TrainResult, dict[str, Any], list[dict[str, Any]]]:
    """Train and evaluate the CVAE of ``finetune.dialog.seeds[position]``; its utterance encoder
    starts from pretrained VAE seed ``position`` (cycling over the VAE seeds)."""
    schedule, bow = stage.identity["schedule"], stage.identity["bow"] == "bow"
    dialog = params.finetune.dialog
    seed = dialog.seeds[position]
    seed_everything(seed)
    pretrained = None
    if dialog.init_encoder == "pretrained":
        dirs = seed_dirs(pipeline.stage_item("pretrain", schedule=schedule).out)
        pretrained = dirs[position % len(dirs)]
    model = build_model(dialog, bow, corpus.vocab, params.data.dialog_context, pretrained)
    model.to(resolve_device(params.device))  # a GPU under device: auto (bf16 autocast there)
    offset = position * dialog.epochs
    result = train_cvae(
        model,
        corpus,
        params.pretrain.schedules[schedule],
        dialog,
        seed,
        on_epoch=lambda epoch, valid: tracking.log_metrics(
            {f"valid_epoch.{k}": v for k, v in valid.items()}, step=offset + epoch
        ),
        report=progress,
    )
    max_len = dialog.max_decode_len or params.data.max_len
    measured, samples = evaluate_dialog(model, corpus, dialog, max_len, seed, acts)
    metrics = {
        "iterations": result.iterations,
        "best_epoch": result.best_epoch,
        "valid_elbo": result.best_valid_elbo,
        **measured,
    }
    return model, result, metrics, samples


def run_dialog(params: Params, stage: StageItem) -> dict[str, Any]:
    """Train the dialog CVAE with the schedule's beta (and the bag-of-words loss or not), once
    per ``finetune.dialog.seeds`` seed; the metrics are mean, std and 95 % CI over the seeds.
    The model directory and training curve are the first seed's."""
    from betamcmc.finetune.cvae import save_cvae  # lazy: looked up at call time (tests patch it)

    dialog = params.finetune.dialog
    limit_threads(params.runtime.threads)
    corpus = load_prepared(pipeline.stage_item("prepare").out)
    check_dialog_corpus(corpus)
    with (
        tracking.stage_run(params, stage),
        Progress(stage.name, mlflow=True, prefix="train.") as progress,  # live curves
    ):
        runs, first, acts = [], None, act_classifier(corpus)
        for position in range(len(dialog.seeds)):
            out = _one_seed(params, stage, corpus, position, progress, acts)
            first = first or out
            runs.append(out[2])
        model, result, _, samples = first
        metrics = {
            "schedule": stage.identity["schedule"],
            "bow": stage.identity["bow"] == "bow",
            "init_encoder": dialog.init_encoder,
            "seeds": list(dialog.seeds),
            **aggregate_seeds(runs),
        }
        with signals_deferred():  # the model and its metrics are written as a pair
            with atomic_path(stage.out) as tmp:
                save_cvae(tmp, model, corpus.vocab)
                (tmp / "samples.json").write_text(json.dumps(samples, indent=2) + "\n", "utf-8")
            write_train_curve(stage.path("_train.csv"), result)
            write_json(stage.path(".json"), metrics)
        tracking.log_result(
            metrics,
            as_params=("iterations", "contexts_scored", "samples_per_context", "n_seeds"),
            skip=("per_seed",),
        )
        tracking.log_artifact(stage.path(".json"))
        tracking.log_artifact(stage.out / "samples.json")
    return metrics


def _step_or_six_figures(value: str | float) -> str:
    """A cell of ``<item>_train.csv``: the step (already text) as it is, a series value to 6
    significant figures (always ``:.6g``, unlike :func:`betamcmc.core.io.csv_cell`, which writes a
    whole number such as 1e+06 in full)."""
    return value if isinstance(value, str) else f"{value:.6g}"


def write_train_curve(path: Path, result: TrainResult) -> None:
    """``<item>_train.csv``: ``step`` and the per-iteration series (beta, loss, rec, kl, bow)."""
    rows = [
        {"step": str(step), **{k: values[i] for k, values in result.series.items()}}
        for i, step in enumerate(result.steps)
    ]
    write_csv(path, ["step", *result.series], rows, cell=_step_or_six_figures)
