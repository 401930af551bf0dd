"""BLEU precision/recall and distinct-n on small examples checked by hand."""

from __future__ import annotations

import math

import pytest

from betamcmc.finetune.dialog_metrics import (
    bleu_precision_recall,
    corpus_bleu_precision_recall,
    distinct_n,
    sentence_bleu,
)


def test_identical_sentence_scores_one() -> None:
    assert sentence_bleu("the cat sat on the mat", "the cat sat on the mat") == pytest.approx(1.0)


def test_bleu1_is_unigram_precision_times_brevity_penalty() -> None:
    # 2/2 unigrams match; hypothesis length 2 vs reference 3: BP = exp(1 - 3/2)
    assert sentence_bleu("the cat", "the cat sat", order=1) == pytest.approx(math.exp(-0.5))
    # 2 of 4 unigrams match, no brevity penalty (4 >= 3)
    assert sentence_bleu("the dog a cat", "the cat sat", order=1) == pytest.approx(0.5)


def test_bleu2_geometric_mean_with_brevity_penalty() -> None:
    # all 1- and 2-grams of "the cat sat" occur in the 6-word reference: BP = exp(1 - 6/3) = e^-1
    assert sentence_bleu("the cat sat", "the cat sat on the mat", order=2) == pytest.approx(
        math.exp(-1)
    )
    # p1 = 3/4 (the, cat, sat of 4); p2 = 1/3 ("the cat" of "the cat", "cat a", "a sat")
    h, r = "the cat a sat", "the cat sat"
    p1, p2 = 3 / 4, 1 / 3
    assert sentence_bleu(h, r, order=2) == pytest.approx(math.sqrt(p1 * p2))


def test_no_overlap_is_zero() -> None:
    assert sentence_bleu("a b", "c d", order=1) == 0.0


def test_precision_averages_samples_recall_takes_the_best_sample() -> None:
    # one perfect sample, one with no overlap: precision = mean(1, 0), recall = max = 1
    p, r = bleu_precision_recall(["the cat sat", "a b"], ["the cat sat"], order=1)
    assert p == pytest.approx(0.5)
    assert r == pytest.approx(1.0)
    # two references, one sample matching only the first: precision 1, recall mean(1, 0)
    p, r = bleu_precision_recall(["the cat sat"], ["the cat sat", "x y z"], order=1)
    assert p == pytest.approx(1.0)
    assert r == pytest.approx(0.5)


def test_corpus_scores_average_over_contexts() -> None:
    out = corpus_bleu_precision_recall([["a b c"], ["x"]], [["a b c"], ["y"]], order=2)
    assert out["bleu1_precision"] == pytest.approx(0.5)
    assert out["bleu2_recall"] == pytest.approx(0.5)
    assert out["bleu1_f1"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        corpus_bleu_precision_recall([["a"]], [], order=1)


def test_distinct_n() -> None:
    texts = ["a b a", "a c"]
    # unigrams a b a a c: 3 distinct / 5; bigrams "a b" "b a" "a c": 3 / 3
    assert distinct_n(texts, 1) == pytest.approx(0.6)
    assert distinct_n(texts, 2) == pytest.approx(1.0)
    assert distinct_n(["a a a a"], 2) == pytest.approx(1 / 3)
    assert distinct_n(["a"], 2) == 0.0


def test_dialog_seeds_aggregate_mean_std_ddof1_ci() -> None:
    """The dialog metrics file: every numeric metric is its mean over the seeds, with the
    sample std (ddof = 1), the 95 % t-interval and the per-seed values; constants and
    non-numeric values are kept as they are."""
    import statistics

    from betamcmc.finetune.dialog import aggregate_seeds

    runs = [
        {"iterations": 48, "bleu4_precision": v, "act_agreement": None, "contexts_scored": 50}
        for v in (0.05, 0.07, 0.12)
    ]
    m = aggregate_seeds(runs)
    assert m["n_seeds"] == 3 and m["iterations"] == 48 and m["contexts_scored"] == 50
    assert m["act_agreement"] is None and "act_agreement_std" not in m
    assert m["bleu4_precision"] == pytest.approx(0.08)
    assert m["bleu4_precision_std"] == pytest.approx(statistics.stdev([0.05, 0.07, 0.12]))
    assert m["bleu4_precision_std"] != pytest.approx(statistics.pstdev([0.05, 0.07, 0.12]))
    half = 4.302652729911275 * m["bleu4_precision_std"] / 3**0.5  # t_{0.975, 2}
    assert m["bleu4_precision_ci_low"] == pytest.approx(0.08 - half)
    assert m["bleu4_precision_ci_high"] == pytest.approx(0.08 + half)
    assert m["per_seed"]["bleu4_precision"] == [0.05, 0.07, 0.12]
    one = aggregate_seeds(runs[:1])
    assert one["bleu4_precision_std"] is None and one["n_seeds"] == 1
