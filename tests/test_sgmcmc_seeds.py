"""Per-seed aggregation of the sgmcmc items and the paired protocol comparisons, on known values."""

from __future__ import annotations

import numpy as np
import pytest

from betamcmc.results.sgmcmc import compare, items_table
from betamcmc.sgmcmc.seeds import aggregate, mean_series


def test_aggregate_known_values() -> None:
    per_seed = [
        {"seed": 0, "accuracy": 0.90, "time_to_acc95_s": None},
        {"seed": 1, "accuracy": 0.92, "time_to_acc95_s": 2.0},
        {"seed": 2, "accuracy": 0.94, "time_to_acc95_s": 4.0},
    ]
    out = aggregate(per_seed, ("accuracy", "time_to_acc95_s"))
    # mean 0.92, std (ddof 1) 0.02, t_{0.975, 2} = 4.302653: half-width 0.02 * 4.302653 / sqrt 3
    half = 0.02 * 4.302653 / 3**0.5
    assert out["accuracy"] == pytest.approx(0.92) and out["accuracy_std"] == pytest.approx(0.02)
    assert out["accuracy_ci_low"] == pytest.approx(0.92 - half, rel=1e-5)
    assert out["accuracy_ci_high"] == pytest.approx(0.92 + half, rel=1e-5)
    assert "accuracy_n" not in out and out["n_seeds"] == 3 and out["per_seed"] == per_seed
    # a metric only some seeds reach: summarised over those, and says how many
    assert out["time_to_acc95_s"] == pytest.approx(3.0) and out["time_to_acc95_s_n"] == 2
    assert out["time_to_acc95_s_std"] == pytest.approx(2**0.5)
    none = aggregate([{"seed": 0, "x": None}], ("x",))
    assert none["x"] is None and none["x_std"] is None and none["x_n"] == 0
    one = aggregate([{"seed": 0, "x": 1.5}], ("x",))
    assert one["x"] == 1.5 and one["x_std"] is None and one["x_ci_low"] is None


def test_mean_series_truncates_to_the_shortest_seed() -> None:
    a = {"wall_s": np.array([1.0, 2.0, 3.0]), "bma_accuracy": np.array([0.5, 0.7, 0.9])}
    b = {"wall_s": np.array([3.0, 4.0]), "bma_accuracy": np.array([0.7, 0.9])}
    out = mean_series([a, b])
    np.testing.assert_allclose(out["wall_s"], [2.0, 3.0])
    np.testing.assert_allclose(out["bma_accuracy"], [0.6, 0.8])


def _arm(item: str, accs: list[float], times: list[float | None], converged: bool) -> dict:
    per_seed = [
        {"seed": s, "accuracy": a, "log_likelihood": -a, "time_to_acc95_s": t}
        for s, (a, t) in enumerate(zip(accs, times, strict=True))
    ]
    keys = ("accuracy", "log_likelihood", "time_to_acc95_s")
    return {"item": item, "protocol": item.split("-")[0], "workers": int(item[-1]),
            "converged": converged, **aggregate(per_seed, keys)}  # fmt: skip


def test_compare_pairs_by_seed_and_calls_only_what_the_interval_says() -> None:
    base = _arm("single-1", [0.90, 0.91, 0.92, 0.93, 0.94], [3.0, 3.0, 3.0, 3.0, 3.0], True)
    # +0.01 on every seed (a constant paired difference: the interval is a point > 0)
    up = _arm("downpour-2", [0.91, 0.92, 0.93, 0.94, 0.95], [2.0, 2.5, None, 2.0, 2.5], False)
    c = compare(up, base)
    assert c["accuracy"]["verdict"] == "better" and c["accuracy"]["wins"] == 5
    assert c["accuracy"]["diff"]["mean"] == pytest.approx(0.01)
    assert c["log_likelihood"]["verdict"] == "worse"  # -accuracy: lower on every seed
    # time (lower is better) over the 4 seeds both reached 0.95
    assert c["time_to_acc95_s"]["seeds"] == [0, 1, 3, 4] and c["time_to_acc95_s"]["wins"] == 4
    assert c["time_to_acc95_s"]["verdict"] == "better"
    # differences of both signs: indistinguishable, whatever the mean says
    mixed = _arm("elastic-2", [0.95, 0.88, 0.96, 0.90, 0.95], [3.0] * 5, True)
    assert compare(mixed, base)["accuracy"]["verdict"] == "indistinguishable"
    only = compare(up, base, ("accuracy",))
    assert set(only) == {"accuracy"}


def test_table_flags_unconverged_items() -> None:
    base = _arm("single-1", [0.9, 0.91], [1.0, 1.0], True)
    other = _arm("sync-2", [0.9, 0.91], [1.0, 1.0], False)
    for m in (base, other):
        m.update(grad_evals=1.0, grad_evals_per_s=1.0, bytes_per_sample=1.0, staleness_mean=None,
                 dead_workers=0, chains=2, rhat_max=1.0, ess_bulk_min=200.0, ess_tail_min=200.0,
                 ece=0.1, ece_std=0.0, wall_s=1.0)  # fmt: skip
    rows = items_table([base, other], None)
    assert rows[2].endswith("| yes |")
    assert rows[3].endswith("| **unconverged: no posterior conclusion** |")
