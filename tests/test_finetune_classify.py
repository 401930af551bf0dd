"""Classifier pieces: separable toys give high accuracy, stratified subsets, label errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from betamcmc.data.prepared import PreparedCorpus, Sentence, Vocab
from betamcmc.errors import InputError
from betamcmc.finetune.classify import (
    bag_of_words,
    fit_predict_logreg,
    fit_predict_mlp,
    fraction_key,
    labeled_subset,
    pick_label,
    run_classification,
)

from conftest import shipped_section, vae_config


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one thread avoids oversubscription on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = np.array([[4.0, 0.0], [-4.0, 0.0], [0.0, 4.0]])
    return centers[y] + rng.normal(size=(n, 2)), y


def test_logreg_and_mlp_separate_a_separable_toy() -> None:
    x_tr, y_tr = _blobs(150, 0)
    x_te, y_te = _blobs(300, 1)
    pred = fit_predict_logreg(x_tr, y_tr, x_te, c=1.0, scale=True)
    assert (pred == y_te).mean() > 0.95
    pred = fit_predict_mlp(x_tr, y_tr, x_te, 3, shipped_section("finetune", epochs=200), seed=0)
    assert (pred == y_te).mean() > 0.95
    # and a shuffled-label control stays near chance
    shuffled = np.random.default_rng(2).permutation(y_tr)
    pred = fit_predict_logreg(x_tr, shuffled, x_te, c=1.0, scale=True)
    assert (pred == y_te).mean() < 0.7


def test_bag_of_words_separates_keyword_classes() -> None:
    # class 0 sentences contain word 4, class 1 word 5; other words are noise
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    sents = [[4 + int(c)] + rng.integers(6, 30, 5).tolist() for c in y]
    x = bag_of_words(sents, 30)
    assert x.shape == (200, 30) and x[:, :4].nnz == 0  # specials dropped
    pred = fit_predict_logreg(x[:100], y[:100], x[100:], c=1.0, scale=False)
    assert (pred == y[100:]).mean() == 1.0


def test_labeled_subset_is_stratified_and_seeded() -> None:
    y = np.array([0] * 90 + [1] * 9 + [2] * 1)
    idx = labeled_subset(y, 0.1, seed=0)
    counts = np.bincount(y[idx], minlength=3)
    assert counts.tolist() == [9, 1, 1]  # at least one label per class
    assert labeled_subset(y, 0.1, 0).tolist() == idx.tolist()
    assert labeled_subset(y, 0.1, 1).tolist() != idx.tolist()
    assert len(labeled_subset(y, 1.0, 0)) == 100


def test_fraction_keys_have_no_dots() -> None:
    assert [fraction_key(f) for f in (0.01, 0.1, 1.0, 0.005)] == [
        "1pct",
        "10pct",
        "100pct",
        "0p5pct",
    ]


def _corpus(labels: dict[str, list[str]], n: int = 40) -> PreparedCorpus:
    vocab = Vocab(["<pad>", "<unk>", "<bos>", "<eos>", "good", "bad", "movie", "food"])
    rng = np.random.default_rng(0)
    sents = {}
    for split in ("train", "valid", "test"):
        rows = []
        for _ in range(n):
            c = int(rng.integers(0, 2))
            rows.append(
                Sentence([4 + c, int(rng.integers(6, 8))], {"sentiment": c} if labels else {})
            )
        sents[split] = rows
    meta = {"corpus": "toy", "label_names": labels}
    return PreparedCorpus(meta=meta, vocab=vocab, sentences=sents, dialogs={s: [] for s in sents})


def test_pick_label_errors() -> None:
    with pytest.raises(InputError, match="has no sentence labels"):
        pick_label(_corpus({}), None)
    corpus = _corpus({"sentiment": ["neg", "pos"]})
    assert pick_label(corpus, None) == "sentiment"
    with pytest.raises(InputError, match="not a label of corpus"):
        pick_label(corpus, "topic")


def test_run_classification_table_on_a_toy_corpus() -> None:
    from betamcmc.vae.model import TextVAE

    torch.manual_seed(0)
    vae = TextVAE(vae_config(8, emb_dim=8, hidden_dim=8, latent_dim=4))
    corpus = _corpus({"sentiment": ["neg", "pos"]})
    p = shipped_section(
        "finetune",
        label_fractions=[0.5, 1.0],
        seeds=[0, 1],
        finetune_encoder=True,
        finetune_epochs=2,
    )
    out = run_classification(vae, corpus, p, "sentiment")
    assert set(out["fractions"]) == {"50pct", "100pct"}
    row = out["fractions"]["100pct"]
    assert set(row) == {"fraction", "labeled", "vae", "random_encoder", "bow", "vae_finetuned"}
    assert row["bow"]["mean"] == 1.0  # the sentiment word is in every sentence
    assert run_classification(vae, corpus, p, "sentiment") == out  # deterministic


def test_run_classification_pools_every_vae_seed() -> None:
    """One schedule's VAEs (one per pretrain seed) x finetune seeds: the spread of the `vae` row
    includes the VAEs' own variation; the baselines do not depend on the VAEs."""
    from betamcmc.vae.model import TextVAE

    vaes = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        vaes.append(TextVAE(vae_config(8, emb_dim=8, hidden_dim=8, latent_dim=4)))
    corpus = _corpus({"sentiment": ["neg", "pos"]})
    p = shipped_section("finetune", label_fractions=[0.5], seeds=[0, 1])
    both = run_classification(vaes, corpus, p, "sentiment")
    singles = [run_classification(v, corpus, p, "sentiment") for v in vaes]
    assert both["vae_models"] == 2 and singles[0]["vae_models"] == 1
    row, rows = both["fractions"]["50pct"], [s["fractions"]["50pct"] for s in singles]
    assert row["vae"]["mean"] == pytest.approx(
        (rows[0]["vae"]["mean"] + rows[1]["vae"]["mean"]) / 2
    )
    assert row["bow"] == rows[0]["bow"] == rows[1]["bow"]
    assert row["random_encoder"] == rows[0]["random_encoder"]
