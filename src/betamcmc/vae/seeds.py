"""What the seeds of one schedule add up to: the mean of every metric with its spread, and the
mean training and validation curves (the ``pretrain`` stage's metrics file and plot data).

The spread is the sample standard deviation (ddof = 1) and the 95 % t-interval of the mean
(:func:`betamcmc.core.stats.mean_std_ci`), computed between seeds: each seed trains its own VAE on
the same data, schedule and budget.
"""

from __future__ import annotations

import math
import statistics

from betamcmc.core.stats import mean_std_ci

METRIC_KEYS = ("recon", "kl", "elbo", "nll", "ppl", "mi", "au")
TRAIN_COLUMNS = ("iteration", "beta", "recon", "kl", "elbo", "loss")
VALID_COLUMNS = ("iteration", "neg_elbo", "kl", "mi", "au")


def mean_curves(curves: list[dict[str, list[float]]], columns: tuple[str, ...]) -> dict:
    """Average per-seed curves point by point (every seed logs at the same iterations)."""
    out = {columns[0]: list(curves[0][columns[0]])}
    for c in columns[1:]:
        out[c] = [statistics.fmean(vals) for vals in zip(*(cv[c] for cv in curves), strict=True)]
    return out


def aggregate(per_seed: list[dict[str, float]]) -> dict[str, float | None]:
    """Mean over seeds under each metric's name; for the :data:`METRIC_KEYS` also the sample
    std (ddof = 1) as ``<name>_std`` and the 95 % t-interval of the mean as ``<name>_ci_low`` /
    ``<name>_ci_high`` (:func:`betamcmc.core.stats.mean_std_ci`; None for a single seed or a
    non-finite value)."""
    out: dict[str, float | None] = {}
    for key in per_seed[0]:
        values = [float(m[key]) for m in per_seed]
        out[key] = statistics.fmean(values)
        if key in METRIC_KEYS:
            finite = all(math.isfinite(v) for v in values)
            summary = mean_std_ci(values) if finite else {}
            for part in ("std", "ci_low", "ci_high"):
                out[f"{key}_{part}"] = summary.get(part)
    return out
