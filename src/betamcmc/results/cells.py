"""Table cells and sentences shared by the results page and the docs/results pages.

Every cell reads a metrics file's own numbers: a summary over seeds (mean ± sample std [95 % CI],
:mod:`betamcmc.core.stats`), a paired comparison in words, a chain's convergence. No torch, no
params: the docs renderer imports this.
"""

from __future__ import annotations

from typing import Any

from betamcmc.core import stats
from betamcmc.results.collect import number

DASH = "–"


def fixed(value: float | None, spec: str = ".2f") -> str:
    return DASH if value is None else format(value, spec)


def summary_at(tree: Any, key: str) -> dict[str, Any] | None:
    """A :func:`betamcmc.core.stats.mean_std_ci`-shaped summary of ``key``: the dict found there
    (``{mean, std, ci_low, ci_high}``) or the flat ``key``, ``key_std``, ``key_ci_low``,
    ``key_ci_high`` entries beside it; None when there is no mean."""
    node: Any = tree
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict) and "mean" in node:
        return {k: number(node, k) for k in ("mean", "std", "ci_low", "ci_high")}
    mean = number(tree, key)
    if mean is None:
        return None
    return {"mean": mean, **{k: number(tree, f"{key}_{k}") for k in ("std", "ci_low", "ci_high")}}


def ci_cell(tree: Any, key: str, digits: int = 3) -> str:
    """``mean ± std [low, high]`` of ``key`` (the mean alone where the file has no interval)."""
    s = summary_at(tree, key)
    if s is None:
        return DASH
    if s["std"] is None or s["ci_low"] is None:
        return stats.fmt(s["mean"], digits)
    return stats.fmt_ci(s, digits)


def table(head: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def paired_line(a: str, b: str, va: list[float], vb: list[float], label: str, higher: bool) -> str:
    """``a`` against ``b`` on one metric over their shared seeds, in words, with the interval."""
    if len(va) != len(vb) or not va:
        return f"- {a} vs {b}, {label}: no common seeds to compare."
    c = stats.paired(va, vb, higher)
    call = {
        "better": f"**{a} better**",
        "worse": f"**{b} better**",
        "indistinguishable": f"not distinguishable at {c['n']} seeds",
    }[stats.verdict(c)]
    return f"- {a} vs {b}, {label}: {stats.fmt_paired(c)} → {call}."


def convergence_cell(m: dict[str, Any]) -> str:
    """``converged`` or ``UNCONVERGED`` with the worst R-hat and the smallest bulk / tail ESS."""
    if "converged" not in m:
        return DASH
    word = "converged" if m["converged"] else "**UNCONVERGED**"
    return (
        f"{word} (R̂ {fixed(number(m, 'rhat_max'), '.3f')}, ESS bulk "
        f"{fixed(number(m, 'ess_bulk_min'), '.0f')} / tail {fixed(number(m, 'ess_tail_min'), '.0f')})"
    )


def seed_list(m: dict[str, Any], key: str) -> dict[int, float]:
    """Per-seed values of ``key`` from a ``per_seed`` list of per-seed summaries (by index)."""
    seeds = m.get("per_seed") or []
    return {i: float(s[key]) for i, s in enumerate(seeds) if s.get(key) is not None}


def against(
    name: str, ref_name: str, m: dict[str, Any], ref: dict[str, Any], metrics: list[tuple]
) -> list[str]:
    """``name`` against ``ref_name`` on each ``(key, label, higher_is_better)``, paired by seed
    over the seeds both have a value for."""
    lines = []
    for key, label, higher in metrics:
        va, vb = seed_list(m, key), seed_list(ref, key)
        both = sorted(set(va) & set(vb))
        lines.append(
            paired_line(name, ref_name, [va[s] for s in both], [vb[s] for s in both], label, higher)
        )
    return lines
