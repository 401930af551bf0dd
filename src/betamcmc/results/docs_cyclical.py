"""Block renderers for the cyclical step-size (cSG-MCMC) results in ``docs/results`` templates.

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

COMPARED = [
    ("accuracy", "accuracy", True),
    ("log_likelihood", "log-likelihood", True),
    ("ece", "ECE", False),
]


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
