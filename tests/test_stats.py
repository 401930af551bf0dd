"""The project's one statistics helper, against hand-computed values."""

from __future__ import annotations

import math

import pytest

from betamcmc.core import stats


def test_mean_std_ci_matches_hand_values() -> None:
    s = stats.mean_std_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    assert s["mean"] == 3.0 and s["n"] == 5
    assert s["std"] == pytest.approx(math.sqrt(2.5))  # ddof = 1, not the population 1.414
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)  # t_{0.975, 4}
    assert s["ci_low"] == pytest.approx(3.0 - half) and s["ci_high"] == pytest.approx(3.0 + half)


def test_one_value_has_no_spread_and_bad_input_is_refused() -> None:
    assert stats.mean_std_ci([0.7]) == {
        "mean": 0.7, "std": None, "ci_low": None, "ci_high": None, "n": 1,
    }  # fmt: skip
    with pytest.raises(ValueError, match="at least one"):
        stats.mean_std_ci([])
    with pytest.raises(ValueError, match="finite"):
        stats.mean_std_ci([1.0, float("nan")])


def test_paired_counts_wins_and_calls_an_ordering_only_outside_zero() -> None:
    clear = stats.paired([2.0, 2.1, 1.9, 2.2, 2.0], [1.0, 1.2, 1.1, 0.9, 1.0])
    assert (clear["wins"], clear["ties"], clear["losses"]) == (5, 0, 0)
    assert stats.verdict(clear) == "better"
    # lower is better (an NLL): A's smaller values win
    assert stats.verdict(stats.paired([1.0, 1.1], [2.0, 2.05], higher_is_better=False)) == "better"
    mixed = stats.paired([1.0, 2.0, 1.0], [1.5, 1.5, 1.0])
    assert (mixed["wins"], mixed["ties"], mixed["losses"]) == (1, 1, 1)
    assert stats.verdict(mixed) == "indistinguishable"
    assert stats.verdict(stats.paired([0.0, 0.1], [1.0, 1.2])) == "worse"
    assert stats.verdict(stats.paired([3.0], [1.0])) == "indistinguishable"  # one seed: no call
    with pytest.raises(ValueError, match="equally long"):
        stats.paired([1.0], [1.0, 2.0])


def test_overlap_and_formatting() -> None:
    a, b = stats.mean_std_ci([1.0, 1.1, 0.9]), stats.mean_std_ci([5.0, 5.1, 4.9])
    assert not stats.overlaps(a, b) and stats.overlaps(a, a)
    assert stats.fmt_ci(a) == "1 ± 0.1 [0.752, 1.25]"
    assert stats.fmt_ci(stats.mean_std_ci([2.5])) == "2.5 (n = 1)"
    assert stats.fmt(None) == "-" and stats.fmt(12345.6) == "12346"
    assert (
        stats.fmt_paired(stats.paired([2.0, 3.0], [1.0, 1.0])) == "2/2 seeds, Δ 1.5 [-4.85, 7.85]"
    )
