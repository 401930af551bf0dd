"""Block renderers for the cyclical step-size (cSG-MCMC) results in ``docs/results`` templates.

``{{> cyclical_mixture metrics/sgmcmc_cyclical.json }}``: the 25-Gaussian stage's table over
seeds and its paired comparisons in words, the same cells and sentences as ``reports/index.md``
(:mod:`betamcmc.sgmcmc.coverage_report`).

``{{> cyclical_digits bench/results/sgmcmc_cyclical_digits.json }}``: the digits Bayesian MLP
with a constant and a cyclical step size per protocol (``bench/sgmcmc_cyclical_digits.py``): a
table over seeds, then each cyclical item against its constant twin, paired by seed. Registered on
import by :mod:`betamcmc.results.docs`.
"""

from __future__ import annotations

from typing import Any

from betamcmc.results.cells import ci_cell, convergence_cell, fixed, paired_line, table
from betamcmc.results.docs_blocks import block
from betamcmc.results.docs_values import Source
from betamcmc.sgmcmc.coverage_report import TABLE_HEAD, table_rows, verdict_lines

COMPARED = [
    ("accuracy", "accuracy", True),
    ("log_likelihood", "log-likelihood", True),
    ("ece", "ECE", False),
]


@block("cyclical_mixture")
def cyclical_mixture(src: Source, rel: str) -> str:
    """The 25-Gaussian study: its settings in one line, the table over seeds, the verdicts."""
    m = src.load(rel)
    s = m["settings"]
    settings = (
        f"{s['kind']}, K = {s['chain_steps']} steps per chain block, constant eta "
        f"{s['step_size']:g}, cyclical alpha_0 {s['cyclical_step_size']:g} over {s['cycles']} "
        f"cycles (exploration {s['exploration']:g}, phase {s['phase']:g}), {s['workers']} "
        f"workers, tau {s['period']}; seeds {', '.join(str(x) for x in m['seeds'])}."
    )
    return "\n".join([settings, "", *table(TABLE_HEAD, table_rows(m)), "", *verdict_lines(m)])


def _kept(r: dict[str, Any]) -> str:
    kept = r["samples_kept"]
    low, high = min(kept), max(kept)
    return str(low) if low == high else f"{low}–{high}"


@block("cyclical_digits")
def cyclical_digits(src: Source, rel: str) -> str:
    """Per schedule and item over its seeds: accuracy, log-likelihood, ECE, the chains'
    convergence, samples kept and gradients; then cyclical against constant per item."""
    arms = src.load(rel)["arms"]
    rows = [
        [arm, item, ci_cell(r, "accuracy", 4), ci_cell(r, "log_likelihood"), ci_cell(r, "ece"),
         convergence_cell(r), _kept(r), fixed(r["grad_evals"], ".0f")]
        for arm, items in arms.items()
        for item, r in items.items()
    ]  # fmt: skip
    head = ["steps", "item", "accuracy", "log-lik", "ECE", "chains", "samples", "gradients"]
    lines = table(head, rows)
    lines.append("")
    for item, constant in arms["constant"].items():
        cyclical = arms["cyclical"][item]
        for key, label, higher in COMPARED:
            va, vb = cyclical["per_seed"][key], constant["per_seed"][key]
            lines.append(paired_line(f"cyclical {item}", f"constant {item}", va, vb, label, higher))
    return "\n".join(lines)
