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

Accuracy is reported as mean and std (ddof = 1; 0 for a single run) over every pair of a
pretrained VAE seed (``pretrain.seeds``: one VAE per seed) and a ``finetune.seeds`` seed (labeled
subset and classifier initialisation), so the spread includes the VAE's own seed-to-seed
variation. The baselines do not depend on the VAE: they are scored once per ``finetune.seeds``
seed.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import sparse

from betamcmc import pipeline, tracking
from betamcmc.data.prepared import PreparedCorpus, load_prepared
from betamcmc.errors import DivergenceError, InputError
from betamcmc.finetune import limit_threads
from betamcmc.finetune.params import FinetuneParams
from betamcmc.io import write_json, write_text
from betamcmc.params import Params
from betamcmc.pipeline import StageItem
from betamcmc.progress import Progress
from betamcmc.runner import seed_everything
from betamcmc.stopping import signals_deferred
from betamcmc.vae.model import TextVAE, load_vae, pad_batch, seed_dirs


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


@dataclass
class LabeledSplit:
    ids: list[list[int]]
    y: np.ndarray


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


@torch.no_grad()
def encode_sentences(
    vae: Any, ids: list[list[int]], features: str, seed: int, batch: int = 256
) -> np.ndarray:
    """Posterior means (``features='mean'``) or one posterior sample per sentence (``'sample'``)."""
    vae.eval()
    generator = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, len(ids), batch):
        x, lengths = pad_batch(ids[i : i + batch])
        mu, logvar = vae.encode(x, lengths)
        if features == "sample":
            mu = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=generator)
        out.append(mu)
    codes = torch.cat(out).double().numpy()
    if not np.isfinite(codes).all():
        raise DivergenceError("the VAE encoder produced non-finite codes")
    return codes


# --------------------------------------------------------------------------- classifiers
def fit_predict_logreg(
    x_train: Any, y_train: np.ndarray, x_test: Any, c: float, scale: bool
) -> np.ndarray:
    """L2 logistic regression (lbfgs, deterministic); dense features standardized first."""
    # lazy: sklearn adds ~1.5 s to this module's import (on top of torch): only a fit pays it
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(y_train)) < 2:  # one class labeled: predict it
        return np.full(x_test.shape[0], y_train[0])
    if scale:
        scaler = StandardScaler().fit(x_train)
        x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    model = LogisticRegression(C=c, max_iter=5000)
    model.fit(x_train, y_train)
    return model.predict(x_test)


def fit_predict_mlp(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    n_classes: int,
    p: FinetuneParams,
    seed: int,
) -> np.ndarray:
    """One-hidden-layer MLP (tanh), full-batch Adam for ``p.epochs`` epochs, standardized inputs."""
    torch.manual_seed(seed)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-8
    xt = torch.tensor((x_train - mean) / std, dtype=torch.float32)
    xs = torch.tensor((x_test - mean) / std, dtype=torch.float32)
    yt = torch.tensor(y_train)
    net = torch.nn.Sequential(
        torch.nn.Linear(xt.shape[1], p.mlp_hidden),
        torch.nn.Tanh(),
        torch.nn.Linear(p.mlp_hidden, n_classes),
    )
    opt = torch.optim.Adam(net.parameters(), lr=p.lr, weight_decay=1e-4)
    for epoch in range(p.epochs):
        loss = torch.nn.functional.cross_entropy(net(xt), yt)
        if not torch.isfinite(loss):
            raise DivergenceError(f"classifier loss is {loss.item()} at epoch {epoch}")
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return net(xs).argmax(-1).numpy()


def finetune_predict(
    vae: Any, train: LabeledSplit, test: LabeledSplit, n_classes: int, p: FinetuneParams, seed: int
) -> np.ndarray:
    """Encoder (embedding + LSTM + posterior mean layer) and a linear layer trained end to end
    with cross-entropy on the labeled sentences; the VAE passed in is not modified."""
    torch.manual_seed(seed)
    model = copy.deepcopy(vae)
    model.train()
    head = torch.nn.Linear(model.config.latent_dim, n_classes)
    params = [
        q
        for name, q in model.named_parameters()
        if name.split(".")[0] in ("embedding", "encoder", "posterior")
    ]
    opt = torch.optim.Adam([*params, *head.parameters()], lr=p.finetune_lr)
    generator = torch.Generator().manual_seed(seed)
    y = torch.tensor(train.y)
    for epoch in range(p.finetune_epochs):
        order = torch.randperm(len(train.ids), generator=generator).tolist()
        for i in range(0, len(order), p.batch_size):
            rows = order[i : i + p.batch_size]
            x, lengths = pad_batch([train.ids[r] for r in rows])
            mu, _ = model.encode(x, lengths)
            loss = torch.nn.functional.cross_entropy(head(mu), y[rows])
            if not torch.isfinite(loss):
                raise DivergenceError(
                    f"end-to-end fine-tuning loss is {loss.item()} at epoch {epoch}"
                )
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_([*params, *head.parameters()], 5.0)
            opt.step()
    model.eval()
    with torch.no_grad():
        preds = []
        for i in range(0, len(test.ids), 256):
            x, lengths = pad_batch(test.ids[i : i + 256])
            preds.append(head(model.encode(x, lengths)[0]).argmax(-1))
    return torch.cat(preds).numpy()


# --------------------------------------------------------------------------- the experiment
def fraction_key(fraction: float) -> str:
    """``0.01 -> '1pct'``, ``0.5 -> '50pct'``, ``0.005 -> '0p5pct'`` (no dots: DVC metric keys)."""
    return f"{100 * fraction:g}".replace(".", "p") + "pct"


def _mean_std(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0}


def run_classification(
    vaes: Any,
    corpus: PreparedCorpus,
    p: FinetuneParams,
    label: str,
    report: Callable[[int, int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """The whole table for one schedule's pretrained VAEs (one per pretrain seed, or a single
    model): accuracy per method x label fraction (mean, std). ``report(done, of, values)``:
    progress after every (seed, label fraction), with that cell's accuracies."""
    vaes = list(vaes) if isinstance(vaes, list | tuple) else [vaes]

    train = labeled_split(corpus, label, p.max_train, "train")
    test = labeled_split(corpus, label, p.max_test, "test")
    n_classes = len(corpus.label_names[label])
    vocab_size = len(corpus.vocab)
    bow_train, bow_test = bag_of_words(train.ids, vocab_size), bag_of_words(test.ids, vocab_size)

    def classify(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, seed: int) -> np.ndarray:
        if p.classifier == "mlp":
            return fit_predict_mlp(x_tr, y_tr, x_te, n_classes, p, seed)
        return fit_predict_logreg(x_tr, y_tr, x_te, p.logreg_c, scale=True)

    methods = ["vae", "random_encoder", "bow"] + (["vae_finetuned"] if p.finetune_encoder else [])
    acc: dict[str, dict[str, list[float]]] = {
        m: {fraction_key(f): [] for f in p.label_fractions} for m in methods
    }
    labeled: dict[str, int] = {}
    # posterior means do not depend on the seed: encode once per VAE
    means = [
        (encode_sentences(v, train.ids, "mean", 0), encode_sentences(v, test.ids, "mean", 0))
        if p.features == "mean"
        else None
        for v in vaes
    ]
    for seed in p.seeds:
        torch.manual_seed(seed)
        random_vae = TextVAE(vaes[0].config)
        rand_tr = encode_sentences(random_vae, train.ids, p.features, seed)
        rand_te = encode_sentences(random_vae, test.ids, p.features, seed + 1)
        for f in p.label_fractions:
            key = fraction_key(f)
            idx = labeled_subset(train.y, f, seed)
            labeled[key] = len(idx)
            y_tr = train.y[idx]
            acc["random_encoder"][key].append(
                float((classify(rand_tr[idx], y_tr, rand_te, seed) == test.y).mean())
            )
            bow = fit_predict_logreg(bow_train[idx], y_tr, bow_test, p.logreg_c, scale=False)
            acc["bow"][key].append(float((bow == test.y).mean()))
            for vae, fixed in zip(vaes, means, strict=True):
                if fixed is not None:
                    codes_tr, codes_te = fixed
                else:
                    codes_tr = encode_sentences(vae, train.ids, p.features, seed)
                    codes_te = encode_sentences(vae, test.ids, p.features, seed + 1)
                pred = classify(codes_tr[idx], y_tr, codes_te, seed)
                acc["vae"][key].append(float((pred == test.y).mean()))
                if p.finetune_encoder:
                    sub = LabeledSplit([train.ids[i] for i in idx], y_tr)
                    pred = finetune_predict(vae, sub, test, n_classes, p, seed)
                    acc["vae_finetuned"][key].append(float((pred == test.y).mean()))
            if report is not None:
                done = p.seeds.index(seed) * len(p.label_fractions) + p.label_fractions.index(f)
                cell = {"fraction": f, **{m: acc[m][key][-1] for m in methods}}
                report(done + 1, len(p.seeds) * len(p.label_fractions), cell)
    fractions = {}
    for f in p.label_fractions:
        key = fraction_key(f)
        fractions[key] = {"fraction": f, "labeled": labeled[key]}
        fractions[key].update({m: _mean_std(acc[m][key]) for m in methods})
    majority = float(np.bincount(test.y, minlength=n_classes).max() / len(test.y))
    if not all(math.isfinite(v) for m in methods for k in acc[m] for v in acc[m][k]):
        raise DivergenceError("non-finite accuracy")
    return {
        "label": label,
        "classes": n_classes,
        "train_sentences": len(train.ids),
        "test_sentences": len(test.ids),
        "classifier": p.classifier,
        "features": p.features,
        "seeds": list(p.seeds),
        "vae_models": len(vaes),
        "majority_baseline": majority,
        "fractions": fractions,
    }


def accuracy_rows(metrics: dict[str, Any]) -> str:
    """CSV plot data: one row per (label fraction, method), the method in the ``series`` column,
    so ``dvc plots`` (template ``series``, ``.dvc/plots/series.json``) draws one line per method
    against the fraction."""
    lines = ["fraction,labeled,series,accuracy,std"]
    for row in metrics["fractions"].values():
        for method, value in row.items():
            if isinstance(value, dict):
                lines.append(
                    f"{row['fraction']:g},{row['labeled']},{method},{value['mean']:.6f},"
                    f"{value['std']:.6f}"
                )
    return "\n".join(lines) + "\n"


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
        table = run_classification(vaes, corpus, params.finetune, label, report=progress)
        metrics = {"schedule": schedule, **table}
        with signals_deferred():  # the plot data and the metrics are written as a pair
            write_text(stage.path("_accuracy.csv"), accuracy_rows(metrics))
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
            ),
        )
        tracking.log_artifact(stage.path(".json"))
    return metrics
