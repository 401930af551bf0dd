"""Known-value tests: every metric against a number worked out by hand (or by arviz directly), so a
wrong formula, a wrong axis or a wrong grouping fails here, not only in a report."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from betamcmc.finetune.dialog_metrics import bleu_precision_recall, distinct_n, sentence_bleu
from betamcmc.sgmcmc.evaluate import (
    ESS_MIN,
    RHAT_MAX,
    bma_log_probs,
    chain_diagnostics,
    diagnose,
    expected_calibration_error,
    is_converged,
    predictive_metrics,
    running_bma,
)
from betamcmc.vae.evaluate import active_units, mutual_information


# --------------------------------------------------------------------------- calibration
def test_ece_hand_case() -> None:
    # confidences 0.85 (right), 0.75 (wrong), 0.65 (right), 0.55 (right): one per 10%-bin
    probs = np.array([[0.85, 0.15], [0.75, 0.25], [0.65, 0.35], [0.55, 0.45]])
    targets = np.array([0, 1, 0, 0])
    ece = expected_calibration_error(probs, targets, bins=10)
    assert ece == pytest.approx((0.15 + 0.75 + 0.35 + 0.45) / 4)
    # two points in one bin: |accuracy 1/2 - mean confidence 0.65| weighted 2/2
    same_bin = np.array([[0.62, 0.38], [0.68, 0.32]])
    assert expected_calibration_error(same_bin, np.array([0, 1]), bins=10) == pytest.approx(0.15)


def test_predictive_metrics_hand_case() -> None:
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]])
    m = predictive_metrics(np.log(probs), np.array([0, 0, 0]))
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["log_likelihood"] == pytest.approx((math.log(0.9) + math.log(0.4) + math.log(0.7)) / 3)
    assert m["log_likelihood_worst"] == pytest.approx(math.log(0.4))


# --------------------------------------------------------------------------- model averaging
def test_bma_is_the_mean_of_the_probabilities_not_of_the_logs() -> None:
    p1 = np.array([[0.9, 0.1], [0.2, 0.8]])
    p2 = np.array([[0.5, 0.5], [0.6, 0.4]])
    bma = np.exp(bma_log_probs(np.log(np.stack([p1, p2]))))
    np.testing.assert_allclose(bma, [[0.7, 0.3], [0.4, 0.6]])


def test_running_bma_after_each_sample() -> None:
    p = np.array([[[0.9, 0.1], [0.45, 0.55]],  # sample 1: point 0 right, point 1 wrong (target 0)
                  [[0.3, 0.7], [0.95, 0.05]]])  # sample 2  # fmt: skip
    run = running_bma(np.log(p), np.array([0, 0]))
    np.testing.assert_allclose(run["bma_accuracy"], [0.5, 1.0])  # average [0.6, 0.4], [0.7, 0.3]
    np.testing.assert_allclose(run["bma_log_likelihood"],
                               [(math.log(0.9) + math.log(0.45)) / 2,
                                (math.log(0.6) + math.log(0.7)) / 2])  # fmt: skip


# --------------------------------------------------------------------------- chain diagnostics
def test_ess_and_rhat_equal_arviz_on_the_chains_as_grouped() -> None:
    az = pytest.importorskip("arviz")
    rng = np.random.default_rng(0)
    draws = 200
    # chain ids interleaved in the sample file; chain 1 sits at another level: R-hat must see it
    chains = np.tile([0, 1], draws)
    values = rng.normal(size=2 * draws) + 3.0 * chains
    log_probs = np.zeros((2 * draws, 1, 2))
    log_probs[:, 0, 0] = values
    d = chain_diagnostics(log_probs, np.array([0]), chains, points=1)
    x = np.stack([values[chains == 0], values[chains == 1]])
    assert d["chains"] == 2 and d["draws_per_chain"] == draws
    assert d["ess_bulk_min"] == pytest.approx(float(az.ess(x, method="bulk")))
    assert d["ess_tail_min"] == pytest.approx(float(az.ess(x, method="tail")))
    assert d["rhat_max"] == pytest.approx(float(az.rhat(x, method="rank")))
    assert d["rhat_max"] > 1.5  # two chains 3 sd apart
    assert d["converged"] is False
    # the same values in one chain at one level: R-hat ~ 1, ESS ~ the number of iid draws
    same = chain_diagnostics(log_probs - 3.0 * chains[:, None, None] * (log_probs != 0), np.array([0]),
                             chains, points=1)  # fmt: skip
    assert same["rhat_max"] == pytest.approx(1.0, abs=0.02)
    assert 0.7 * 2 * draws < same["ess_bulk_min"] < 1.3 * 2 * draws
    assert same["ess_tail_min"] > ESS_MIN and same["converged"] is True


def test_converged_on_hand_made_chains() -> None:
    pytest.importorskip("arviz")
    rng = np.random.default_rng(1)
    # four well-mixed iid chains of 200 draws, two functionals: R-hat ~ 1, ESS ~ 800
    mixed = [rng.normal(size=(200, 2)) for _ in range(4)]
    d = diagnose(mixed)
    assert d["chains"] == 4 and d["draws_per_chain"] == 200 and d["converged"] is True
    assert d["rhat_max"] <= RHAT_MAX and min(d["ess_bulk_min"], d["ess_tail_min"]) >= ESS_MIN
    # two chains at different levels (2 sd apart): R-hat far above the threshold
    apart = [rng.normal(size=(200, 2)), rng.normal(size=(200, 2)) + 2.0]
    assert diagnose(apart)["rhat_max"] > RHAT_MAX and diagnose(apart)["converged"] is False
    # a strongly autocorrelated chain (AR(1), rho = 0.99): mixed levels but too few effective draws
    ar = np.zeros((400, 1))
    for t in range(1, 400):
        ar[t] = 0.99 * ar[t - 1] + rng.normal()
    slow = diagnose([ar[:200], ar[200:]])
    assert slow["ess_bulk_min"] < ESS_MIN and slow["converged"] is False
    # a starved chain (3 draws beside 200) is left out instead of truncating the others to 3
    starved = diagnose([*mixed, mixed[0][:3]])
    assert starved["chains_left_out"] == 1 and starved["chains"] == 4
    assert starved["draws_per_chain"] == 200 and starved["converged"] is True
    # too short to diagnose: no numbers, not converged
    assert diagnose([np.zeros((3, 1))])["converged"] is False


def test_is_converged_thresholds_are_inclusive() -> None:
    assert is_converged(RHAT_MAX, ESS_MIN, ESS_MIN) is True
    assert is_converged(RHAT_MAX + 1e-6, ESS_MIN, ESS_MIN) is False
    assert is_converged(1.0, ESS_MIN - 1, 1e4) is False
    assert is_converged(1.0, 1e4, ESS_MIN - 1) is False
    assert is_converged(None, 1e4, 1e4) is False


# --------------------------------------------------------------------------- VAE code metrics
def test_mutual_information_of_hand_set_posteriors() -> None:
    gen = torch.Generator().manual_seed(0)
    n = 64
    # every posterior is the prior: the code says nothing about x
    mi, se = mutual_information(torch.zeros(n, 2), torch.zeros(n, 2), gen)
    assert abs(mi) < 3 * se + 1e-6 and se < 0.2
    # point-like posteriors (sd 0.0025) 1 apart: z identifies x, so I(x; z) = log N; the
    # one-sample estimate of E_q[log q(z|x)] - log q(z) scatters by ~0.7 / sqrt(N)
    n = 256
    mu = torch.arange(n, dtype=torch.float64)[:, None]
    mi, se = mutual_information(mu, torch.full((n, 1), -12.0, dtype=torch.float64), gen)
    assert mi == pytest.approx(math.log(n), abs=4 * se) and 0.02 < se < 0.1


def test_active_units_counts_dimensions_whose_mean_varies() -> None:
    mu = torch.zeros(100, 3)
    mu[:, 0] = torch.linspace(-2, 2, 100)  # variance ~1.36: active
    mu[:, 1] = torch.linspace(-0.1, 0.1, 100)  # variance ~0.0034: inactive at 0.01
    au, var = active_units(mu, threshold=0.01)
    assert au == 1
    assert var[0] == pytest.approx(float(torch.linspace(-2, 2, 100).var()), rel=1e-6)
    assert var[2] == 0.0


# --------------------------------------------------------------------------- dialog metrics
def test_bleu_hand_cases() -> None:
    assert sentence_bleu("a b c d", "a b c d") == pytest.approx(1.0)
    # all unigrams and bigrams match, but the hypothesis is half the reference: BP = e^(1 - 4/2)
    assert sentence_bleu("a b", "a b c d", order=2) == pytest.approx(math.exp(-1))
    # longer than the reference: p1 = 2/4, p2 = 1/3, no brevity penalty
    assert sentence_bleu("a b c d", "a b", order=2) == pytest.approx(math.sqrt(0.5 / 3))
    precision, recall = bleu_precision_recall(["a b c d"], ["a b c d", "a b"], order=2)
    assert precision == pytest.approx(1.0)
    assert recall == pytest.approx((1.0 + math.sqrt(0.5 / 3)) / 2)


def test_distinct_n_hand_cases() -> None:
    assert distinct_n(["a b a b"], 1) == pytest.approx(2 / 4)
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)  # ab, ba, ab
    assert distinct_n(["a b", "a b"], 2) == pytest.approx(1 / 2)  # across texts
    assert distinct_n(["a"], 2) == 0.0
