"""Statistics over seeds: the one place results get their spread, intervals and win counts.

Every comparison in the project (β schedules, protocols, RL methods, readouts) reports a metric
over ``n`` independent seeds as

- the mean;
- the sample standard deviation (``ddof = 1``; ``None`` for a single run);
- a 95 % confidence interval of the mean from Student's t distribution,
  ``mean ± t_{0.975, n-1} · std / sqrt(n)`` (``None`` for a single run);

and every ordering it claims ("A beats B") as a *paired* comparison over the seeds both arms share:
the per-seed wins, ties and losses of A against B, and the t-interval of the paired difference
A − B. An ordering is called only when that interval excludes 0 (:func:`verdict`); otherwise the
report says the arms are not distinguishable at this number of seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

LEVEL = 0.95  # the confidence level of every interval the project reports


def t_quantile(df: int, level: float = LEVEL) -> float:
    """Two-sided Student-t quantile: ``P(|T| <= q) = level`` for ``df`` degrees of freedom."""
    # lazy; the inverse t CDF that scipy.stats.t.ppf calls, without importing scipy.stats
    # (~0.3 s more, paid by every stage process)
    from scipy.special import stdtrit

    return float(stdtrit(df, 0.5 + level / 2))


def mean_std_ci(values: Sequence[float], level: float = LEVEL) -> dict[str, Any]:
    """``{"mean", "std", "ci_low", "ci_high", "n"}`` of ``values`` (finite numbers).

    ``std`` is the sample standard deviation (ddof = 1) and ``ci_low``/``ci_high`` the t-interval of
    the mean; both are ``None`` when there is a single value (no spread can be estimated)."""
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("mean_std_ci needs at least one value")
    if not all(math.isfinite(x) for x in xs):
        raise ValueError(f"mean_std_ci needs finite values (got {xs})")
    n = len(xs)
    mean = math.fsum(xs) / n
    if n == 1:
        return {"mean": mean, "std": None, "ci_low": None, "ci_high": None, "n": 1}
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_quantile(n - 1, level) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half, "n": n}


def paired(
    a: Sequence[float], b: Sequence[float], higher_is_better: bool = True, tol: float = 0.0
) -> dict[str, Any]:
    """Arm A against arm B over the same seeds (``a[i]`` and ``b[i]`` share seed i).

    ``wins``/``ties``/``losses`` count seeds where A is better / within ``tol`` / worse;
    ``diff`` is :func:`mean_std_ci` of ``a - b`` (the sign is the raw difference, whatever
    ``higher_is_better`` says)."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired needs two equally long, non-empty lists (got {len(a)}, {len(b)})")
    diffs = [float(x) - float(y) for x, y in zip(a, b, strict=True)]
    sign = 1.0 if higher_is_better else -1.0
    wins = sum(1 for d in diffs if sign * d > tol)
    losses = sum(1 for d in diffs if sign * d < -tol)
    return {
        "wins": wins,
        "ties": len(diffs) - wins - losses,
        "losses": losses,
        "n": len(diffs),
        "higher_is_better": higher_is_better,
        "diff": mean_std_ci(diffs),
    }


def verdict(comparison: dict[str, Any]) -> str:
    """``"better"``, ``"worse"`` or ``"indistinguishable"``: A against B by the paired interval.

    An ordering needs the whole 95 % interval of the difference on one side of 0; with a single
    seed nothing can be called."""
    diff = comparison["diff"]
    if diff["ci_low"] is None:
        return "indistinguishable"
    sign = 1.0 if comparison["higher_is_better"] else -1.0
    low, high = sorted((sign * diff["ci_low"], sign * diff["ci_high"]))
    if low > 0:
        return "better"
    if high < 0:
        return "worse"
    return "indistinguishable"


def overlaps(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two :func:`mean_std_ci` intervals overlap (True when either has none)."""
    if a["ci_low"] is None or b["ci_low"] is None:
        return True
    return a["ci_low"] <= b["ci_high"] and b["ci_low"] <= a["ci_high"]


def fmt(value: float | None, digits: int = 3) -> str:
    """A number as reports print it: ``digits`` significant figures, ``-`` for None."""
    if value is None:
        return "-"
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:.0f}"


def fmt_ci(summary: dict[str, Any], digits: int = 3) -> str:
    """``mean ± std [low, high]`` of a :func:`mean_std_ci` summary (``mean`` alone for n = 1)."""
    if summary["std"] is None:
        return f"{fmt(summary['mean'], digits)} (n = 1)"
    return (
        f"{fmt(summary['mean'], digits)} ± {fmt(summary['std'], 2)} "
        f"[{fmt(summary['ci_low'], digits)}, {fmt(summary['ci_high'], digits)}]"
    )


def fmt_paired(comparison: dict[str, Any], digits: int = 3) -> str:
    """``wins/n, Δ mean [low, high]`` of a :func:`paired` comparison."""
    d = comparison["diff"]
    interval = (
        f" [{fmt(d['ci_low'], digits)}, {fmt(d['ci_high'], digits)}]"
        if d["std"] is not None
        else ""
    )
    return f"{comparison['wins']}/{comparison['n']} seeds, Δ {fmt(d['mean'], digits)}{interval}"
