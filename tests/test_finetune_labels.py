"""The labels study (``betamcmc results labels``): every label x schedule, on validation only."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

import betamcmc.finetune.classify as clf
import betamcmc.finetune.labels as labels_study
from betamcmc.params import load_params

from conftest import PipelineRun, copy_pipeline


def test_every_label_and_schedule_on_validation_never_test(
    pipeline: PipelineRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = copy_pipeline(pipeline, tmp_path / "repo")
    monkeypatch.chdir(repo)
    read = []
    real_split = clf.labeled_split

    def spy(corpus, label, cap, split):  # type: ignore[no-untyped-def]
        read.append(split)
        return real_split(corpus, label, cap, split)

    monkeypatch.setattr(labels_study, "labeled_split", spy)
    params = load_params("params.yaml")
    result = labels_study.run_labels(params, Path("labels.json"))

    assert "test" not in read and {"train", "valid"} <= set(read)
    names = json.loads(Path("data/prepared/meta.json").read_text())["label_names"]
    assert result["labels"] == list(names) and result["default_label"] == next(iter(names))
    assert result["schedules"] == list(params.finetune.schedules)
    fractions = [clf.fraction_key(f) for f in params.finetune.label_fractions]
    n_vaes = len(params.pretrain.seeds)
    for s, lab in itertools.product(result["schedules"], result["labels"]):
        cell = result["by_schedule"][s][lab]
        assert list(cell["fractions"]) == fractions
        assert cell["classes"] == len(names[lab])
        assert all(len(c["vae"]["per_seed"]) == n_vaes for c in cell["fractions"].values())
    pairs = (
        len(result["labels"])
        * len(fractions)
        * len(result["schedules"])
        * (len(result["schedules"]) - 1)
        // 2
    )
    assert len(result["pairs"]) == pairs
    assert json.loads(Path("labels.json").read_text()) == result


def test_a_cell_is_the_classify_stage_classifier_scored_on_validation(
    pipeline: PipelineRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recompute one cell by hand: VAE seed 0's codes, its labeled subset, logistic regression."""
    from betamcmc.data.prepared import load_prepared
    from betamcmc.vae.model import load_vae, seed_dirs

    monkeypatch.chdir(pipeline.repo)
    params = load_params("params.yaml")
    p = params.finetune
    result = labels_study.run_labels(params, tmp_path / "labels.json")
    corpus = load_prepared("data/prepared")
    label, schedule, fraction = result["labels"][-1], p.schedules[0], p.label_fractions[0]
    vae = load_vae(seed_dirs(Path("models/pretrain") / schedule)[0])
    train = clf.labeled_split(corpus, label, p.max_train, "train")
    valid = clf.labeled_split(corpus, label, p.max_test, "valid")
    seed = clf.pair_seed(0, p.seeds[0])
    x_tr = clf.encode_sentences(vae, train.ids, p.features, seed)
    x_va = clf.encode_sentences(vae, valid.ids, p.features, seed + 1)
    idx = clf.labeled_subset(train.y, fraction, seed)
    pred = clf.classify_codes(
        p, len(corpus.label_names[label]), x_tr[idx], train.y[idx], x_va, seed
    )
    cell = result["by_schedule"][schedule][label]["fractions"][clf.fraction_key(fraction)]
    assert cell["vae"]["per_seed"][0] == pytest.approx(float(np.mean(pred == valid.y)))
