"""Classifier pieces: separable toys give high accuracy, stratified subsets, label errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from betamcmc.core.errors import InputError
from betamcmc.data.prepared import PreparedCorpus, Sentence, Vocab
from betamcmc.finetune.classifiers import fit_predict_mlp
from betamcmc.finetune.classify import (
    bag_of_words,
    classify_vaes,
    fraction_key,
    labeled_subset,
    pick_label,
)
from betamcmc.vae.codes import fit_predict_logreg

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


def test_classify_vaes_table_on_a_toy_corpus() -> None:
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
    out = classify_vaes(vae, corpus, p, "sentiment")
    assert set(out["fractions"]) == {"50pct", "100pct"}
    row = out["fractions"]["100pct"]
    assert set(row) == {"fraction", "labeled", "vae", "random_encoder", "bow", "vae_finetuned"}
    assert row["bow"]["mean"] == 1.0  # the sentiment word is in every sentence
    assert classify_vaes(vae, corpus, p, "sentiment") == out  # deterministic


def test_classify_vaes_spread_is_between_vae_seeds(monkeypatch) -> None:
    """Hand case: 2 VAE seeds x 2 classifier seeds with test accuracies [[0.5, 0.7], [0.6, 0.8]].
    The cell is one value per VAE seed (the mean over its classifier seeds: 0.6, 0.7), so the std
    is theirs (0.0707), not the pooled std of the four correlated runs (0.129)."""
    import betamcmc.finetune.classify as clf
    from betamcmc.vae.model import TextVAE

    table = {clf.pair_seed(i, s): [[0.5, 0.7], [0.6, 0.8]][i][k] for i in (0, 1)
             for k, s in enumerate((0, 1))}  # fmt: skip

    def fake_cell(vae, d, p, idx, seed, codes):
        return {"vae": table[seed], "valid_mean": table[seed] - 0.1, "valid_sample": 0.5}

    monkeypatch.setattr(clf, "_vae_cell", fake_cell)
    vaes = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        vaes.append(TextVAE(vae_config(8, emb_dim=8, hidden_dim=8, latent_dim=4)))
    p = shipped_section("finetune", label_fractions=[0.5], seeds=[0, 1], features="sample")
    out = classify_vaes(vaes, _corpus({"sentiment": ["neg", "pos"]}), p, "sentiment")
    vae = out["fractions"]["50pct"]["vae"]
    assert vae["per_seed"] == pytest.approx([0.6, 0.7])
    assert vae["mean"] == pytest.approx(0.65) and vae["n_seeds"] == out["n_seeds"] == 2
    assert vae["std"] == pytest.approx(np.std([0.6, 0.7], ddof=1))
    assert vae["std"] != pytest.approx(np.std([0.5, 0.7, 0.6, 0.8], ddof=1))
    assert vae["ci_low"] < 0.65 < vae["ci_high"]
    # validation accuracy of both readouts, per label fraction, with the same spread keys
    assert out["valid"]["mean"]["50pct"]["per_seed"] == pytest.approx([0.5, 0.6])
    assert out["valid"]["sample"]["50pct"]["mean"] == pytest.approx(0.5)
    # the baselines: one value per VAE seed index, the same subsets for every schedule
    bow = out["fractions"]["50pct"]["bow"]
    assert len(bow["per_seed"]) == 2 and bow["n_seeds"] == 2


def test_classify_vaes_valid_readout_keys() -> None:
    """Both readouts are scored on the valid split, whatever finetune.features says."""
    from betamcmc.vae.model import TextVAE

    torch.manual_seed(0)
    vae = TextVAE(vae_config(8, emb_dim=8, hidden_dim=8, latent_dim=4))
    corpus = _corpus({"sentiment": ["neg", "pos"]})
    for features in ("mean", "sample"):
        p = shipped_section("finetune", label_fractions=[0.5, 1.0], seeds=[0], features=features)
        out = classify_vaes(vae, corpus, p, "sentiment")
        for readout in ("sample", "mean"):
            assert set(out["valid"][readout]) == {"50pct", "100pct"}
            cell = out["valid"][readout]["100pct"]
            assert 0.0 <= cell["mean"] <= 1.0 and cell["n_seeds"] == 1
            assert cell["std"] == 0.0 and cell["ci_low"] is None
