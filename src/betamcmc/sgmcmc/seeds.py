"""Several seeds of one run: the metrics-file convention over seeds and the seed-mean curve.

For every reported metric ``m`` of the per-seed summaries, :func:`aggregate` keeps ``m`` = the mean
over seeds and adds ``m_std`` (ddof = 1), ``m_ci_low``/``m_ci_high`` (95 % t-interval,
:func:`betamcmc.core.stats.mean_std_ci`), plus one ``n_seeds`` and the ``per_seed`` list. A metric a
seed has no value for (``time_to_acc95_s`` of a seed whose BMA never reached 0.95) is summarised
over the seeds that have one, and ``m_n`` says how many; ``m`` is None when none has.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from betamcmc.core.stats import mean_std_ci


def aggregate(per_seed: Sequence[dict[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    """Mean / std / CI over seeds of ``keys`` (see the module docstring); ``per_seed`` as given."""
    out: dict[str, Any] = {}
    for key in keys:
        values = [s[key] for s in per_seed if s.get(key) is not None]
        if values:
            summary = mean_std_ci(values)
        else:
            summary = {"mean": None, "std": None, "ci_low": None, "ci_high": None}
        out[key] = summary["mean"]
        out[f"{key}_std"] = summary["std"]
        out[f"{key}_ci_low"] = summary["ci_low"]
        out[f"{key}_ci_high"] = summary["ci_high"]
        if len(values) < len(per_seed):
            out[f"{key}_n"] = len(values)
    out["n_seeds"] = len(per_seed)
    out["per_seed"] = list(per_seed)
    return out


def mean_series(series: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Column-wise mean over seeds of running series indexed by collected sample (truncated to
    the shortest seed)."""
    length = min(len(s["wall_s"]) for s in series)
    return {
        key: np.mean([s[key][:length] for s in series], axis=0).astype(np.float64)
        for key in series[0]
    }
