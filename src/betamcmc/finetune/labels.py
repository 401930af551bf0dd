"""Which label to classify, judged on validation data: every label of the corpus, every schedule.

The classify stage predicts one label (``finetune.label``; the corpus's first by default:
``register`` on the embedded corpus). That default was adopted in an earlier version of this
project while test accuracies were in view, so this study re-examines it on the validation split
only: for every label the corpus has, every schedule in ``finetune.schedules`` and every label
fraction, the classify stage's own classifier (the same codes, readout, labeled subsets and
seeds) is fitted on the training labels and scored on the **validation** sentences. The
bag-of-words baseline and the majority class are scored the same way. The test split is never
read.

What it answers: does the schedule comparison of the classify stage depend on which label is
predicted? Per label and fraction it pairs the schedules by VAE seed
(:func:`betamcmc.core.stats.paired`).

Inputs are the pipeline's outputs (``data/prepared``, ``models/pretrain/<schedule>``): run it
after ``dvc repro`` with ``betamcmc results labels``; it writes ``metrics/labels.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from betamcmc.core import pipeline, stats
from betamcmc.data.prepared import PreparedCorpus, load_prepared
from betamcmc.finetune.classifiers import classify_codes
from betamcmc.finetune.classify import (
    bag_of_words,
    fraction_key,
    labeled_split,
    labeled_subset,
    pair_seed,
    spread,
)
from betamcmc.finetune.params import FinetuneParams
from betamcmc.vae.codes import encode_sentences, fit_predict_logreg

if TYPE_CHECKING:
    from betamcmc.params import Params

OUT = Path("metrics/labels.json")


def _label_cells(
    corpus: PreparedCorpus, label: str, codes: list[dict[str, np.ndarray]], p: FinetuneParams
) -> dict[str, Any]:
    """Validation accuracy of one schedule's VAEs (``codes``: per VAE seed, train and valid codes
    of the first ``max_train`` sentences) for ``label``, per fraction: VAE codes and bag of words."""
    train = labeled_split(corpus, label, p.max_train, "train")
    valid = labeled_split(corpus, label, p.max_test, "valid")
    n_classes = len(corpus.label_names[label])
    keep_tr = _rows_with(corpus, label, "train", p.max_train)
    keep_va = _rows_with(corpus, label, "valid", p.max_test)
    bow_tr, bow_va = (bag_of_words(s.ids, len(corpus.vocab)) for s in (train, valid))
    cells: dict[str, Any] = {}
    for f in p.label_fractions:
        vae, bow = [], []
        for i, c in enumerate(codes):
            seed = pair_seed(i, p.seeds[0])
            idx = labeled_subset(train.y, f, seed)
            x_tr, x_va = c["train"][keep_tr][idx], c["valid"][keep_va]
            pred = classify_codes(p, n_classes, x_tr, train.y[idx], x_va, seed)
            vae.append(float((pred == valid.y).mean()))
            pred = fit_predict_logreg(bow_tr[idx], train.y[idx], bow_va, p.logreg_c, scale=False)
            bow.append(float((pred == valid.y).mean()))
        cells[fraction_key(f)] = {"vae": spread(vae), "bow": spread(bow)}
    majority = float(np.bincount(valid.y, minlength=n_classes).max() / len(valid.y))
    return {"classes": n_classes, "majority": majority, "fractions": cells}


def _rows_with(corpus: PreparedCorpus, label: str, split: str, cap: int | None) -> np.ndarray:
    """Positions (among the first ``cap`` encoded sentences) of the sentences that carry ``label``."""
    rows = corpus.sentences[split]
    return np.array([k for k, s in enumerate(rows) if label in s.labels][:cap], dtype=np.int64)


def _encoded(
    vaes: list[Any], corpus: PreparedCorpus, p: FinetuneParams, labels: list[str]
) -> list[dict[str, Any]]:
    """Each VAE's codes (the configured readout) of the leading training and validation sentences,
    as many as the capped labeled splits of every label reach."""
    ids = {}
    for s, cap in (("train", p.max_train), ("valid", p.max_test)):
        reach = max(int(_rows_with(corpus, lab, s, cap)[-1]) + 1 for lab in labels)
        ids[s] = [x.ids for x in corpus.sentences[s][:reach]]
    out = []
    for i, vae in enumerate(vaes):
        seed = pair_seed(i, p.seeds[0])
        out.append(
            {
                s: encode_sentences(vae, ids[s], p.features, seed + k)
                for k, s in enumerate(("train", "valid"))
            }
        )
    return out


def _pairs(by_schedule: dict[str, dict[str, Any]], label: str) -> list[dict[str, Any]]:
    """Every later schedule against every earlier one, per fraction, paired by VAE seed."""
    names, out = list(by_schedule), []
    for k, a in enumerate(names):
        for b in names[:k]:
            for f, cell in by_schedule[a][label]["fractions"].items():
                other = by_schedule[b][label]["fractions"][f]
                c = stats.paired(cell["vae"]["per_seed"], other["vae"]["per_seed"], True)
                out.append(
                    {
                        "label": label,
                        "fraction": f,
                        "a": a,
                        "b": b,
                        **c,
                        "verdict": stats.verdict(c),
                    }
                )
    return out


def run_labels(params: Params, out: Path = OUT) -> dict[str, Any]:
    """The study: validation accuracy per label x schedule x fraction, and the schedule pairs."""
    from betamcmc.core.io import write_json
    from betamcmc.vae.model import load_vae, seed_dirs

    p = params.finetune
    corpus = load_prepared(pipeline.stage_item("prepare").out)
    labels = list(corpus.label_names)
    by_schedule: dict[str, dict[str, Any]] = {}
    for s in p.schedules:
        vaes = [load_vae(d) for d in seed_dirs(pipeline.stage_item("pretrain", schedule=s).out)]
        codes = _encoded(vaes, corpus, p, labels)
        by_schedule[s] = {lab: _label_cells(corpus, lab, codes, p) for lab in labels}
    result = {
        "split": "valid",
        "features": p.features,
        "classifier": p.classifier,
        "default_label": labels[0] if p.label is None else p.label,
        "labels": labels,
        "schedules": list(p.schedules),
        "n_seeds": len(params.pretrain.seeds),
        "by_schedule": by_schedule,
        "pairs": [c for lab in labels for c in _pairs(by_schedule, lab)],
    }
    write_json(out, result)
    return result
