"""How the beta schedules compare, paired per seed, and the plain sentences that read it.

:func:`comparisons` pairs two schedules' test metrics over the seeds both ran
(:func:`betamcmc.core.stats.paired`): the headline pairs (every arm the same learning-rate schedule)
and what the reference recipe's learning-rate restarts add. :func:`verdict` turns the metrics
and those comparisons into sentences (no hand-written conclusions): the ``pretrain_report``
stage's comparison.md and the results page (``reports/index.md``) both print them.
"""

from __future__ import annotations

from typing import Any

from betamcmc.core import stats

# the paired comparisons: (A, B) of the headline (every arm the same learning-rate schedule) and
# what the reference recipe's learning-rate restarts add; metrics with "higher is better"
HEADLINE_PAIRS = (("cyclical", "constant"), ("cyclical", "monotonic"), ("monotonic", "constant"))
RESTART_PAIRS = (("cyclical-restart", "cyclical"),)
COMPARED = (("test.kl", True), ("test.mi", True), ("test.au", True), ("test.nll", False))
METRIC_LABELS = {"test.kl": "KL", "test.mi": "MI", "test.au": "AU", "test.nll": "NLL"}


def spread_cell(m: dict[str, Any], key: str, fmt: str) -> str:
    """``mean ± std [ci_low, ci_high]`` of ``key`` (the mean alone for a single seed)."""
    f = ".1f" if fmt == "d" else fmt
    text, std = format(m[key], f), m.get(f"{key}_std")
    if std is None:
        return text
    low, high = m.get(f"{key}_ci_low"), m.get(f"{key}_ci_high")
    interval = f" [{format(low, f)}, {format(high, f)}]" if low is not None else ""
    return f"{text} ± {format(std, f)}{interval}"


def _seed_values(m: dict[str, Any], metric: str) -> dict[str, float]:
    """Each seed's own value of ``metric`` (``test.kl``) from a metrics file's ``per_seed``."""
    split, key = metric.split(".")
    return {seed: float(per[split][key]) for seed, per in m["per_seed"].items()}


def compare(metrics: dict[str, dict[str, Any]], a: str, b: str) -> list[dict[str, Any]]:
    """Schedule ``a`` against ``b`` on every metric of :data:`COMPARED`, paired over the seeds both
    ran (:func:`betamcmc.core.stats.paired`), each with its :func:`betamcmc.core.stats.verdict`."""
    out = []
    for metric, higher in COMPARED:
        va, vb = _seed_values(metrics[a], metric), _seed_values(metrics[b], metric)
        seeds = sorted(set(va) & set(vb), key=int)
        c = stats.paired([va[s] for s in seeds], [vb[s] for s in seeds], higher)
        out.append({"a": a, "b": b, "metric": metric, **c, "verdict": stats.verdict(c)})
    return out


def comparisons(metrics: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every pair of :data:`HEADLINE_PAIRS` and :data:`RESTART_PAIRS` whose two schedules ran."""
    pairs = [p for p in (*HEADLINE_PAIRS, *RESTART_PAIRS) if p[0] in metrics and p[1] in metrics]
    return [c for a, b in pairs for c in compare(metrics, a, b)]


def comparison_json(metrics: dict[str, dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    """``metrics/pretrain_comparison.json``: the seeds and every paired comparison."""
    return {"seeds": list(seeds), "comparisons": comparisons(metrics)}


def _clause(c: dict[str, Any]) -> str:
    """One metric of one pair: the difference with its interval, the per-seed wins, the call."""
    d, label = c["diff"], METRIC_LABELS[c["metric"]]
    interval = (
        f" [{stats.fmt(d['ci_low'])}, {stats.fmt(d['ci_high'])}]" if d["std"] is not None else ""
    )
    call = {
        "better": f"**{c['a']} better**",
        "worse": f"**{c['b']} better**",
        "indistinguishable": f"not distinguishable at {c['n']} seeds",
    }[c["verdict"]]
    return (
        f"{label} Δ {stats.fmt(d['mean'])}{interval}, {c['a']} ahead on {c['wins']}/{c['n']} "
        f"seeds ({c['ties']} tied, {c['losses']} behind) → {call}"
    )


def _pair_lines(cs: list[dict[str, Any]]) -> list[str]:
    pairs = dict.fromkeys((c["a"], c["b"]) for c in cs)
    return [
        f"- {a} vs {b} (Δ = {a} − {b}, 95 % CI): "
        + "; ".join(_clause(c) for c in cs if (c["a"], c["b"]) == (a, b))
        + "."
        for a, b in pairs
    ]


def verdict(metrics: dict[str, dict[str, Any]], latent_dim: int) -> list[str]:
    """Plain sentences on the paper's claims, computed from the test metrics (no hand-written
    conclusions): which codes collapse; what the beta schedule alone does (the headline schedules
    share one learning-rate schedule) and what the learning-rate restarts add; an ordering only
    where :func:`betamcmc.core.stats.verdict` calls one, with its interval and wins."""
    out = []
    for name, m in metrics.items():
        t = m["test"]
        state = "collapsed" if t["kl"] < 0.1 and t["au"] < 1 else "in use"
        out.append(
            f"- {name} ({m['kind']}): KL {spread_cell(t, 'kl', '.2f')} nats, "
            f"{spread_cell(t, 'au', '.1f')} of {latent_dim} units active, MI "
            f"{spread_cell(t, 'mi', '.2f')} → the code is **{state}** (mean ± std [95 % CI])."
        )
    cs = comparisons(metrics)
    head = [c for c in cs if (c["a"], c["b"]) in HEADLINE_PAIRS]
    restart = [c for c in cs if (c["a"], c["b"]) in RESTART_PAIRS]
    if head:
        cycles = {str(metrics[n].get("lr_cycles", "?")) for c in head for n in (c["a"], c["b"])}
        lr = (
            f"the same learning-rate schedule for every arm: {cycles.pop()} cosine cycle(s)"
            if len(cycles) == 1
            else f"learning-rate cycles differ: {sorted(cycles)}"
        )
        out += ["", f"What the β schedule alone does ({lr}):", "", *_pair_lines(head)]
    if restart:
        out += [
            "",
            "What the learning-rate restarts add (Fu et al.'s recipe, one cosine restart "
            "per β cycle, against the same β schedule without them):",
            "",
            *_pair_lines(restart),
        ]
    return out
