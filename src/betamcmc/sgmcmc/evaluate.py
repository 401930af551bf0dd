"""Posterior quality from a samples file: the Bayesian model average (BMA) and chain diagnostics.

* BMA predictive ``p(y|x) = 1/S sum_s p(y|x, theta_s)``: accuracy, mean test log-likelihood (with
  its median and the worst test point, since a few overconfident points dominate the mean), and
  expected calibration error (15 equal-width confidence bins, Guo et al. 2017).
* Running BMA after each collected sample, against wall-clock seconds and gradient evaluations.
* Bulk and tail ESS and rank-normalised split R-hat (Vehtari et al. 2021) from arviz
  (``az.ess(method="bulk" | "tail")``; ``az.rhat``'s default ``method="rank"`` *is* the
  rank-normalised split R-hat: the maximum of the bulk and folded split-R-hats of the
  rank-normalised draws), of the scalar functionals ``log p(y_i | x_i, theta)`` of the first
  ``eval_points`` test points, with one chain per sampler chain (workers of ``single``/``elastic``;
  the master's chain otherwise), truncated to the shortest chain. :func:`diagnose` takes chains
  from several runs too (the stages pool the chains of every seed of an item).
* Convergence is called with one rule, :data:`RHAT_MAX` and :data:`ESS_MIN`: worst R-hat <= 1.05
  and smallest bulk and tail ESS >= 100 over the functionals. Vehtari et al. (2021) recommend
  R-hat < 1.01 and ESS > 100 per chain for final inference; 1.05 / 100 is the looser screening
  rule this project states, so a run that fails it is certainly not a usable posterior sample.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import numpy as np
import torch

from betamcmc.sgmcmc.engine.flat import FlatModel
from betamcmc.sgmcmc.engine.samples import Samples
from betamcmc.sgmcmc.tasks import Task


def sample_log_probs(task: Task, samples: Samples) -> np.ndarray:
    """``[S, n_test, C]`` test log-probabilities of every sample."""
    flat = FlatModel(task.build_model())
    if flat.dim != samples.theta.shape[1]:
        raise ValueError(f"samples have {samples.theta.shape[1]} parameters, the model {flat.dim}")
    out = np.empty((len(samples), len(task.test_targets), task.n_classes), dtype=np.float32)
    for i, theta in enumerate(samples.theta):
        flat.load(torch.from_numpy(np.ascontiguousarray(theta)))
        out[i] = task.test_log_probs(flat.model).numpy()
    return out


def expected_calibration_error(probs: np.ndarray, targets: np.ndarray, bins: int = 15) -> float:
    """ECE: sum over confidence bins of ``|bin| / n * |accuracy - mean confidence|``."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == targets
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def predictive_metrics(log_probs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Metrics of one predictive distribution ``[n, C]`` (log-probabilities)."""
    point_ll = log_probs[np.arange(len(targets)), targets]
    probs = np.exp(log_probs)
    return {
        "accuracy": float((log_probs.argmax(axis=1) == targets).mean()),
        "log_likelihood": float(point_ll.mean()),
        "log_likelihood_median": float(np.median(point_ll)),
        "log_likelihood_worst": float(point_ll.min()),
        "ece": expected_calibration_error(probs, targets),
    }


def bma_log_probs(log_probs: np.ndarray) -> np.ndarray:
    """``log 1/S sum_s p_s`` over the first axis, stably."""
    m = log_probs.max(axis=0)
    return m + np.log(np.exp(log_probs - m).mean(axis=0))


def running_bma(log_probs: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy and mean log-likelihood of the BMA of the first k samples, k = 1..S."""
    lp = torch.from_numpy(log_probs).double()
    cum = (
        torch.logcumsumexp(lp, dim=0)
        - torch.log(torch.arange(1, len(lp) + 1, dtype=torch.float64))[:, None, None]
    )
    t = torch.from_numpy(targets)
    acc = (cum.argmax(dim=2) == t).double().mean(dim=1)
    ll = cum.gather(2, t[None, :, None].expand(len(lp), -1, 1)).squeeze(2).mean(dim=1)
    return {"bma_accuracy": acc.numpy(), "bma_log_likelihood": ll.numpy()}


def first_time_at(values: np.ndarray, times: np.ndarray, target: float) -> float | None:
    """The first time the running value reaches ``target`` (None if it never does)."""
    hit = np.flatnonzero(values >= target)
    return float(times[hit[0]]) if len(hit) else None


RHAT_MAX = 1.05
"""A chain is called converged only when its worst R-hat is at most this (Vehtari et al. 2021)."""
ESS_MIN = 100.0
"""... and its smallest bulk and tail ESS are at least this many effective draws."""
THRESHOLDS = f"rank-normalised split R-hat <= {RHAT_MAX} and bulk and tail ESS >= {ESS_MIN:g}"


def is_converged(
    rhat_max: float | None, ess_bulk_min: float | None, ess_tail_min: float | None
) -> bool:
    """Whether the diagnostics pass :data:`RHAT_MAX` and :data:`ESS_MIN` (False when any is
    missing: a run too short to diagnose is not called converged)."""
    if rhat_max is None or ess_bulk_min is None or ess_tail_min is None:
        return False
    return rhat_max <= RHAT_MAX and ess_bulk_min >= ESS_MIN and ess_tail_min >= ESS_MIN


def chain_functionals(
    log_probs: np.ndarray, targets: np.ndarray, chains: np.ndarray, points: int
) -> list[np.ndarray]:
    """Per sampler chain (ids in ``chains``, sorted), ``[draws, points]`` of
    ``log p(y_i | x_i, theta)`` for the first ``points`` test points, in collection order."""
    points = min(points, len(targets))
    idx = np.arange(points)
    f = log_probs[:, idx, targets[:points]].astype(np.float64)
    return [f[chains == c] for c in sorted(set(chains.tolist()))]


def diagnose(per_chain: list[np.ndarray]) -> dict[str, Any]:
    """arviz bulk/tail ESS and R-hat of each functional over the chains ``[draws, points]``
    (truncated to the shortest chain; one chain is split in its two halves, since R-hat needs
    two), with ``converged`` (:func:`is_converged`). A chain with fewer than half the median
    chain's draws (a starved worker) is left out (``chains_left_out``) rather than truncating
    every other chain to it."""
    if per_chain:
        keep = np.median([len(c) for c in per_chain]) / 2
        left_out = sum(1 for c in per_chain if len(c) < keep)
        per_chain = [c for c in per_chain if len(c) >= keep]
    else:
        left_out = 0
    n_chains = len(per_chain)
    if n_chains == 1:
        half = len(per_chain[0]) // 2
        per_chain = [per_chain[0][:half], per_chain[0][half : 2 * half]]
    draws = min(len(c) for c in per_chain) if per_chain else 0
    out: dict[str, Any] = {
        "chains": n_chains,
        "split_chains": len(per_chain),
        "draws_per_chain": draws,
        "chains_left_out": left_out,
        "thresholds": {"rhat_max": RHAT_MAX, "ess_min": ESS_MIN},
    }
    if draws < 4:
        out.update(ess_bulk_min=None, ess_tail_min=None, rhat_max=None, converged=False)
        return out
    import arviz as az  # lazy: arviz (xarray, scipy) costs seconds: only a real chain pays it

    logging.getLogger("arviz").setLevel(logging.ERROR)
    ess, tail, rhat = [], [], []
    for i in range(per_chain[0].shape[1]):
        x = np.stack([c[:draws, i] for c in per_chain])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ess.append(float(az.ess(x, method="bulk")))
            tail.append(float(az.ess(x, method="tail")))
            rhat.append(float(az.rhat(x)))  # method="rank": rank-normalised split R-hat
    finite = [r for r in rhat if math.isfinite(r)]
    out.update(
        ess_bulk=[round(e, 2) for e in ess],
        ess_bulk_min=_finite_min(ess),
        ess_tail=[round(e, 2) for e in tail],
        ess_tail_min=_finite_min(tail),
        rhat=[round(r, 4) for r in rhat],
        rhat_max=max(finite) if finite else None,
    )
    out["converged"] = is_converged(out["rhat_max"], out["ess_bulk_min"], out["ess_tail_min"])
    return out


def _finite_min(values: list[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return min(finite) if finite else None


def chain_diagnostics(
    log_probs: np.ndarray, targets: np.ndarray, chains: np.ndarray, points: int
) -> dict[str, Any]:
    """:func:`diagnose` of the sampler chains of one samples file (see :func:`chain_functionals`)."""
    return diagnose(chain_functionals(log_probs, targets, chains, points))


def evaluate_samples(
    task: Task, samples: Samples, points: int = 4
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Final BMA metrics + diagnostics, and the running-BMA series (per collected sample)."""
    return evaluate_log_probs(
        sample_log_probs(task, samples), task.test_targets.numpy(), samples, points
    )


def evaluate_log_probs(
    log_probs: np.ndarray, targets: np.ndarray, samples: Samples, points: int = 4
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """:func:`evaluate_samples` from the samples' test log-probabilities (:func:`sample_log_probs`)."""
    metrics = predictive_metrics(bma_log_probs(log_probs), targets)
    singles = [predictive_metrics(lp, targets) for lp in log_probs[-min(10, len(log_probs)) :]]
    metrics["last_samples_accuracy_mean"] = float(np.mean([m["accuracy"] for m in singles]))
    metrics["last_samples_log_likelihood_mean"] = float(
        np.mean([m["log_likelihood"] for m in singles])
    )
    metrics["diagnostics"] = chain_diagnostics(log_probs, targets, samples.chain, points)
    series = running_bma(log_probs, targets)
    series["wall_s"] = samples.wall_s
    series["grad_evals"] = samples.grad_evals.astype(np.float64)
    return metrics, series
