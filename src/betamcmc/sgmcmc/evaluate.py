"""Posterior quality from a samples file: the Bayesian model average (BMA) and chain diagnostics.

* BMA predictive ``p(y|x) = 1/S sum_s p(y|x, theta_s)``: accuracy, mean test log-likelihood (with
  its median and the worst test point, since a few overconfident points dominate the mean), and
  expected calibration error (15 equal-width confidence bins, Guo et al. 2017).
* Running BMA after each collected sample, against wall-clock seconds and gradient evaluations.
* ESS (bulk) and rank-normalised split-R-hat (Vehtari et al. 2021) from arviz, of the scalar
  functionals ``log p(y_i | x_i, theta)`` of the first ``eval_points`` test points, with one chain
  per sampler chain (workers of ``single``/``elastic``; the master's chain otherwise), truncated to
  the shortest chain.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import numpy as np
import torch

from betamcmc.sgmcmc.flat import FlatModel
from betamcmc.sgmcmc.samples import Samples
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


def chain_diagnostics(
    log_probs: np.ndarray, targets: np.ndarray, chains: np.ndarray, points: int
) -> dict[str, Any]:
    """arviz bulk ESS and split-R-hat of ``log p(y_i|x_i, theta)`` for the first test points."""
    ids = sorted(set(chains.tolist()))
    per_chain = [np.flatnonzero(chains == c) for c in ids]
    if len(per_chain) == 1:  # one chain: its two halves (arviz needs >= 2 chains for R-hat)
        half = len(per_chain[0]) // 2
        per_chain = [per_chain[0][:half], per_chain[0][half : 2 * half]]
    draws = min(len(ix) for ix in per_chain)
    if draws < 4:
        return {
            "chains": len(ids),
            "draws_per_chain": draws,
            "ess_bulk_min": None,
            "rhat_max": None,
        }
    import arviz as az  # lazy: arviz (xarray, scipy) costs seconds: only a real chain pays it

    logging.getLogger("arviz").setLevel(logging.ERROR)
    points = min(points, len(targets))
    ess, rhat = [], []
    for i in range(points):
        f = log_probs[:, i, targets[i]].astype(np.float64)
        x = np.stack([f[ix[:draws]] for ix in per_chain])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ess.append(float(az.ess(x, method="bulk")))
            rhat.append(float(az.rhat(x)))
    finite = [r for r in rhat if math.isfinite(r)]
    return {
        "chains": len(ids),
        "split_chains": len(per_chain),
        "draws_per_chain": draws,
        "ess_bulk": [round(e, 2) for e in ess],
        "ess_bulk_min": min(ess),
        "rhat": [round(r, 4) for r in rhat],
        "rhat_max": max(finite) if finite else None,
    }


def evaluate_samples(
    task: Task, samples: Samples, points: int = 4
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Final BMA metrics + diagnostics, and the running-BMA series (per collected sample)."""
    log_probs = sample_log_probs(task, samples)
    targets = task.test_targets.numpy()
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
