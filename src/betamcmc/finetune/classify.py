"""Semi-supervised classification from a pretrained text VAE's codes (Fu et al. 2019, Sec. 5.2:
"unsupervised language pre-training"; Kingma et al. 2014's M1 setting).

Every sentence is encoded once by the frozen VAE encoder to its posterior mean mu (or one
sample z ~ q(z|x)); a classifier (logistic regression or a small MLP) is trained on a random,
class-stratified fraction of the training labels and scored on the test split. For every label
fraction and seed the same labeled subset is used by all the rows of the table:

    vae               the classifier on the pretrained encoder's codes
    random_encoder    the same classifier on the codes of an untrained encoder of the same shape
    bow               logistic regression on binary bag-of-words features (no pretraining at all)
    vae_finetuned     (finetune.finetune_encoder) encoder + linear layer trained end to end

Spread is measured between pretrained VAE seeds (``pretrain.seeds``: one VAE per seed), never
pooled over correlated classifier runs: VAE seed i gets one accuracy per method and label
fraction, the mean over the ``finetune.seeds`` classifier seeds (labeled subset and classifier
initialisation from :func:`pair_seed`), and each cell reports the mean, std (ddof = 1), 95 %
t-interval (:func:`betamcmc.core.stats.mean_std_ci`) and per-seed values over the VAE seeds. The
baselines use the same labeled subsets and seeds, matched to the VAE seed index, so that every
comparison can be paired by seed. Validation accuracy of both readouts (posterior mean and
sample) is recorded too (``valid.<readout>.<fraction>``), so the readout can be chosen on
validation data; the test split is scored only with the configured ``finetune.features``.
The classifiers live in :mod:`betamcmc.finetune.classifiers`, the encoding in
:mod:`betamcmc.vae.codes`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy import sparse

from betamcmc import tracking
from betamcmc.core import pipeline, stats
from betamcmc.core.errors import DivergenceError, InputError
from betamcmc.core.io import limit_threads, write_csv, write_json
from betamcmc.core.pipeline import StageItem
from betamcmc.core.runner import seed_everything
from betamcmc.core.stopping import signals_deferred
from betamcmc.data.prepared import PreparedCorpus, load_prepared
from betamcmc.finetune.classifiers import LabeledSplit, classify_codes, finetune_predict
from betamcmc.finetune.params import FinetuneParams
from betamcmc.tracking.progress import Progress
from betamcmc.vae.codes import encode_sentences, fit_predict_logreg
from betamcmc.vae.model import TextVAE, load_vae, pad_batch, seed_dirs

if TYPE_CHECKING:
    from betamcmc.params import Params


# --------------------------------------------------------------------------- inputs
def pick_label(corpus: PreparedCorpus, label: str | None) -> str:
    """The label factor to predict; an :class:`InputError` (naming the corpus folder) when the
    corpus has none / not this one."""
    names = corpus.label_names
    if not names:
        raise InputError(
            f"corpus '{corpus.meta.get('corpus', '?')}' has no sentence labels; the classify stage "
            "needs a labeled corpus (data.corpus: synthetic, yelp or swda)",
            corpus.path,
        )
    if label is None:
        return next(iter(names))
    if label not in names:
        raise InputError(
            f"finetune.label '{label}' is not a label of corpus '{corpus.meta.get('corpus', '?')}' "
            f"(it has: {', '.join(names)})",
            corpus.path,
        )
    return label


def labeled_split(corpus: PreparedCorpus, label: str, cap: int | None, split: str) -> LabeledSplit:
    rows = [s for s in corpus.sentences[split] if label in s.labels]
    if cap is not None:
        rows = rows[:cap]
    if not rows:
        raise InputError(f"no sentences with label '{label}' in the {split} split", corpus.path)
    return LabeledSplit(
        [s.ids for s in rows], np.array([s.labels[label] for s in rows], dtype=np.int64)
    )


def labeled_subset(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of a class-stratified random ``fraction`` of the examples: per class
    ``max(1, round(fraction * n_class))``, so that every class has at least one label."""
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        k = min(len(idx), max(1, int(round(fraction * len(idx)))))
        chosen.append(rng.choice(idx, size=k, replace=False))
    return np.sort(np.concatenate(chosen))


# --------------------------------------------------------------------------- features
def bag_of_words(sentences: Any, vocab_size: int) -> sparse.csr_matrix:
    """Binary bag-of-words rows (special tokens 0..3 dropped) for lists of token ids."""
    rows, cols = [], []
    for i, ids in enumerate(sentences):
        for t in set(int(t) for t in ids if int(t) > 3 and int(t) < vocab_size):
            rows.append(i)
            cols.append(t)
    data = np.ones(len(rows), dtype=np.float64)
    return sparse.csr_matrix((data, (rows, cols)), shape=(len(sentences), vocab_size))


# --------------------------------------------------------------------------- the experiment
def fraction_key(fraction: float) -> str:
    """``0.01 -> '1pct'``, ``0.5 -> '50pct'``, ``0.005 -> '0p5pct'`` (no dots: DVC metric keys)."""
    return f"{100 * fraction:g}".replace(".", "p") + "pct"


def pair_seed(vae_index: int, classifier_seed: int) -> int:
    """The labeled-subset / classifier-init seed of VAE seed ``vae_index`` (its position in
    ``pretrain.seeds``) and classifier seed ``classifier_seed`` (``finetune.seeds``)."""
    return vae_index + 1000 * classifier_seed


def spread(per_seed: list[float]) -> dict[str, Any]:
    """Between-VAE-seed summary of one cell: ``mean``, ``std`` (ddof 1; 0.0 for one seed, as
    before), ``ci_low``/``ci_high`` (None for one seed), ``n_seeds`` and ``per_seed``."""
    s = stats.mean_std_ci(per_seed)
    return {
        "mean": s["mean"],
        "std": s["std"] if s["std"] is not None else 0.0,
        "ci_low": s["ci_low"],
        "ci_high": s["ci_high"],
        "n_seeds": s["n"],
        "per_seed": [float(v) for v in per_seed],
    }


@dataclass
class Splits:
    train: LabeledSplit
    valid: LabeledSplit
    test: LabeledSplit
    n_classes: int


def _codes(vae: Any, ids: list[list[int]], seed: int) -> dict[str, np.ndarray]:
    """Both readouts of one split in one encoder pass: posterior means and one sample each."""
    vae.eval()
    generator = torch.Generator().manual_seed(seed)
    means, samples = [], []
    with torch.no_grad():
        for i in range(0, len(ids), 256):
            x, lengths = pad_batch(ids[i : i + 256])
            mu, logvar = vae.encode(x, lengths)
            means.append(mu)
            samples.append(
                mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=generator)
            )
    out = {"mean": torch.cat(means).double().numpy(), "sample": torch.cat(samples).double().numpy()}
    if not all(np.isfinite(v).all() for v in out.values()):
        raise DivergenceError("the VAE encoder produced non-finite codes")
    return out


def _vae_cell(
    vae: Any, d: Splits, p: FinetuneParams, idx: np.ndarray, seed: int, codes: dict[str, Any]
) -> dict[str, float]:
    """Test accuracy of the configured readout (and end to end), validation accuracy of both."""
    out: dict[str, float] = {}
    y_tr = d.train.y[idx]
    for readout in ("mean", "sample"):
        x_tr = codes["train"][readout][idx]
        if readout == p.features:  # one fit scores the test and the valid split
            x_eval = np.concatenate([codes["valid"][readout], codes["test"][readout]])
            pred = classify_codes(p, d.n_classes, x_tr, y_tr, x_eval, seed)
            nv = len(d.valid.y)
            out["vae"] = float((pred[nv:] == d.test.y).mean())
            out[f"valid_{readout}"] = float((pred[:nv] == d.valid.y).mean())
        else:
            pred = classify_codes(p, d.n_classes, x_tr, y_tr, codes["valid"][readout], seed)
            out[f"valid_{readout}"] = float((pred == d.valid.y).mean())
    if p.finetune_encoder:
        sub = LabeledSplit([d.train.ids[i] for i in idx], y_tr)
        pred = finetune_predict(vae, sub, d.test, d.n_classes, p, seed)
        out["vae_finetuned"] = float((pred == d.test.y).mean())
    return out


def _vae_seed_cells(
    i: int, vae: Any, d: Splits, p: FinetuneParams, bow: tuple[Any, Any]
) -> dict[str, dict[str, float]]:
    """VAE seed ``i``: per label fraction, every method's accuracy averaged over the classifier
    seeds (the baselines use the same labeled subsets and seeds)."""
    cells: dict[str, dict[str, list[float]]] = {}
    for s in p.seeds:
        seed = pair_seed(i, s)
        codes = {k: _codes(vae, getattr(d, k).ids, seed + j) for j, k in enumerate(SPLITS)}
        torch.manual_seed(seed)
        rand = TextVAE(vae.config)
        rand_tr = encode_sentences(rand, d.train.ids, p.features, seed)
        rand_te = encode_sentences(rand, d.test.ids, p.features, seed + 2)
        for f in p.label_fractions:
            idx = labeled_subset(d.train.y, f, seed)
            y_tr = d.train.y[idx]
            cell = _vae_cell(vae, d, p, idx, seed, codes)
            pred = classify_codes(p, d.n_classes, rand_tr[idx], y_tr, rand_te, seed)
            cell["random_encoder"] = float((pred == d.test.y).mean())
            pred = fit_predict_logreg(bow[0][idx], y_tr, bow[1], p.logreg_c, scale=False)
            cell["bow"] = float((pred == d.test.y).mean())
            cell["labeled"] = float(len(idx))
            for m, v in cell.items():
                cells.setdefault(fraction_key(f), {}).setdefault(m, []).append(v)
    return {k: {m: float(np.mean(v)) for m, v in c.items()} for k, c in cells.items()}


SPLITS = ("train", "valid", "test")


def classify_vaes(
    vaes: Any,
    corpus: PreparedCorpus,
    p: FinetuneParams,
    label: str,
    report: Callable[[int, int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """The whole table for one schedule's pretrained VAEs (one per pretrain seed, or a single
    model): per method x label fraction, one accuracy per VAE seed (mean over the classifier
    seeds) and their between-VAE-seed mean, std and 95 % CI; validation accuracy of both
    readouts. ``report(done, of, values)``: progress after every VAE seed."""
    vaes = list(vaes) if isinstance(vaes, list | tuple) else [vaes]
    d = Splits(
        labeled_split(corpus, label, p.max_train, "train"),
        labeled_split(corpus, label, p.max_test, "valid"),
        labeled_split(corpus, label, p.max_test, "test"),
        len(corpus.label_names[label]),
    )
    vocab_size = len(corpus.vocab)
    bow = (bag_of_words(d.train.ids, vocab_size), bag_of_words(d.test.ids, vocab_size))
    per_vae = []
    for i, vae in enumerate(vaes):
        per_vae.append(_vae_seed_cells(i, vae, d, p, bow))
        if report is not None:
            first = per_vae[-1][fraction_key(p.label_fractions[0])]
            report(i + 1, len(vaes), {m: v for m, v in first.items() if m != "labeled"})
    if not all(math.isfinite(v) for c in per_vae for cell in c.values() for v in cell.values()):
        raise DivergenceError("non-finite accuracy")
    return _table(per_vae, d, p, label, len(vaes))


def _table(
    per_vae: list[dict[str, dict[str, float]]], d: Splits, p: FinetuneParams, label: str, n: int
) -> dict[str, Any]:
    methods = ["vae", "random_encoder", "bow"] + (["vae_finetuned"] if p.finetune_encoder else [])
    fractions: dict[str, Any] = {}
    valid: dict[str, dict[str, Any]] = {"sample": {}, "mean": {}}
    for f in p.label_fractions:
        key = fraction_key(f)
        row: dict[str, Any] = {"fraction": f, "labeled": int(round(per_vae[0][key]["labeled"]))}
        row.update({m: spread([c[key][m] for c in per_vae]) for m in methods})
        fractions[key] = row
        for readout in valid:
            valid[readout][key] = spread([c[key][f"valid_{readout}"] for c in per_vae])
    majority = float(np.bincount(d.test.y, minlength=d.n_classes).max() / len(d.test.y))
    return {
        "label": label,
        "classes": d.n_classes,
        "train_sentences": len(d.train.ids),
        "valid_sentences": len(d.valid.ids),
        "test_sentences": len(d.test.ids),
        "classifier": p.classifier,
        "features": p.features,
        "seeds": list(p.seeds),
        "vae_models": n,
        "n_seeds": n,
        "spread": "between VAE seeds (one value per VAE seed: mean over classifier seeds)",
        "majority_baseline": majority,
        "fractions": fractions,
        "valid": valid,
    }


ACCURACY_COLUMNS = ("fraction", "labeled", "series", "accuracy", "std")


def accuracy_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """CSV plot data: one row per (label fraction, method), the method in the ``series`` column,
    so ``dvc plots`` (template ``series``, ``.dvc/plots/series.json``) draws one line per method
    against the fraction; accuracy and std to 6 decimals."""
    return [
        {
            "fraction": f"{row['fraction']:g}",
            "labeled": row["labeled"],
            "series": method,
            "accuracy": f"{value['mean']:.6f}",
            "std": f"{value['std']:.6f}",
        }
        for row in metrics["fractions"].values()
        for method, value in row.items()
        if isinstance(value, dict)
    ]


# --------------------------------------------------------------------------- the stage
def run_classify(params: Params, stage: StageItem) -> dict[str, Any]:
    """Semi-supervised classification from the codes of every pretrained seed of the schedule."""
    schedule = stage.identity["schedule"]
    corpus = load_prepared(pipeline.stage_item("prepare").out)
    label = pick_label(corpus, params.finetune.label)
    vaes = [load_vae(d) for d in seed_dirs(pipeline.stage_item("pretrain", schedule=schedule).out)]
    limit_threads(params.runtime.threads)
    seed_everything(params.seed)

    with tracking.stage_run(params, stage), Progress(stage.name) as progress:
        table = classify_vaes(vaes, corpus, params.finetune, label, report=progress)
        metrics = {"schedule": schedule, **table}
        with signals_deferred():  # the plot data and the metrics are written as a pair
            write_csv(stage.path("_accuracy.csv"), ACCURACY_COLUMNS, accuracy_rows(metrics))
            write_json(stage.path(".json"), metrics)
        tracking.log_result(
            metrics,
            as_params=(
                "fraction",
                "labeled",
                "classes",
                "seeds",
                "vae_models",
                "test_sentences",
                "train_sentences",
                "valid_sentences",
                "n_seeds",
            ),
        )
        tracking.log_artifact(stage.path(".json"))
    return metrics
