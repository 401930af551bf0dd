"""Consistency study: bias of asynchronous SG-MCMC against staleness (Li et al. 2019, Sec. 4).

On Bayesian logistic regression (``tasks.LogregTask``) a long **full-batch MALA** chain (Langevin
proposal + Metropolis-Hastings correction, so exact up to Monte Carlo error) gives the reference
posterior mean ``m*`` and variance ``v*``. Each protocol in ``sgmcmc.consistency.protocols`` is then
run with ``workers`` workers for every period tau in ``periods`` (``single`` once: it has no tau),
and the running estimates from its samples are compared with the reference after every sample:

    mean error  = ||m_k - m*|| / ||m*||        variance error = ||v_k - v*|| / ||v*||

against wall-clock time. The paper's theory: the bias grows with staleness (larger tau, more
workers); thinning (fewer, more separated samples) trades variance for time. Outputs: a figure,
a markdown table and a JSON of the final errors.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from betamcmc import tracking
from betamcmc.io import atomic_path, write_json
from betamcmc.params import Params
from betamcmc.pipeline import StageItem
from betamcmc.sgmcmc.config import EngineConfig, RunSpec
from betamcmc.sgmcmc.flat import FlatModel
from betamcmc.sgmcmc.launch import run_local
from betamcmc.sgmcmc.samples import read_samples
from betamcmc.sgmcmc.tasks import LogregTask
from betamcmc.stopping import Stopped, signals_deferred, stop_on_signals


def logreg_task(params: Params) -> LogregTask:
    t = params.sgmcmc.task
    return LogregTask(
        t.logreg_n, t.logreg_dim, params.sgmcmc.consistency.batch_size, t.test_fraction
    )


def reference_posterior(params: Params) -> dict[str, Any]:
    """Full-batch MALA: returns mean, variance, acceptance rate (parameters in model order)."""
    c = params.sgmcmc.consistency
    task = logreg_task(params)
    x = task.x_train.double()
    y = task.y_train.double()
    prec = 1.0 / params.sgmcmc.prior_std**2
    d = x.shape[1]

    def potential(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w, b = theta[:d], theta[d]
        z = x @ w + b
        u = torch.nn.functional.softplus(z).sum() - (y * z).sum() + 0.5 * prec * (theta**2).sum()
        s = torch.sigmoid(z) - y
        grad = torch.cat([x.T @ s, s.sum()[None]]) + prec * theta
        return u, grad

    g = torch.Generator().manual_seed(params.seed + 7)
    h = c.reference_step_size
    theta = torch.zeros(d + 1, dtype=torch.float64)
    u, grad = potential(theta)
    burn = c.reference_steps // 5
    acc, total, draws = 0, 0, []
    for t in range(c.reference_steps):
        prop = (
            theta
            - h * grad
            + math.sqrt(2 * h) * torch.randn(d + 1, generator=g, dtype=torch.float64)
        )
        u_p, grad_p = potential(prop)
        log_q_fwd = -((prop - theta + h * grad) ** 2).sum() / (4 * h)
        log_q_bwd = -((theta - prop + h * grad_p) ** 2).sum() / (4 * h)
        log_alpha = float(u - u_p + log_q_bwd - log_q_fwd)
        if math.log(float(torch.rand(1, generator=g, dtype=torch.float64)) + 1e-300) < log_alpha:
            theta, u, grad = prop, u_p, grad_p
            acc += t >= burn
        if t >= burn:
            total += 1
            draws.append(theta)
    samples = torch.stack(draws)
    return {
        "mean": samples.mean(0).numpy(),
        "var": samples.var(0).numpy(),
        "acceptance": acc / max(1, total),
        "draws": len(draws),
    }


def _logreg_factory(n: int, dim: int, batch: int, frac: float) -> LogregTask:
    return LogregTask(n, dim, batch, frac)


def run_study(params: Params, out_dir: Path, metrics_path: Path | None = None) -> dict[str, Any]:
    """Run every (protocol, tau), write figure + table + JSON under ``out_dir``; return the JSON.
    SIGTERM / SIGINT end it with one line; the previous outputs stay as they were."""
    try:
        with stop_on_signals():
            return _run_study(params, out_dir, metrics_path)
    except Stopped as stop:
        if stop.outputs_complete:
            raise
        raise stop.saying(
            "sgmcmc_consistency: nothing was written, the previous outputs are as they were"
        ) from None


def _run_study(params: Params, out_dir: Path, metrics_path: Path | None) -> dict[str, Any]:
    import matplotlib  # lazy: a plotting import costs a second: only the study's figure pays it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = params.sgmcmc.consistency
    t = params.sgmcmc.task
    ref = reference_posterior(params)
    factory = functools.partial(
        _logreg_factory, t.logreg_n, t.logreg_dim, c.batch_size, t.test_fraction
    )
    torch.manual_seed(params.seed)
    dim = FlatModel(factory().build_model()).dim
    assert dim == len(ref["mean"])
    base = EngineConfig.from_params(
        params.sgmcmc,
        params.runtime,
        burn_in=c.burn_in,
        thinning=c.thinning,
        samples=c.samples,
        straggler_delay=0.0,
    ).with_sampler(step_size=c.step_size)
    runs: list[dict[str, Any]] = []
    curves: dict[tuple[str, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for protocol in c.protocols:
            for tau in [1] if protocol in ("single", "sync") else c.periods:
                workers = 1 if protocol == "single" else c.workers
                spec = RunSpec(base.replace(period=tau), protocol, workers, params.seed, factory)
                sdir = tmp / "samples" / f"{protocol}-tau{tau}"
                result = run_local(spec, sdir)
                s = read_samples(sdir)
                k = np.arange(1, len(s) + 1)[:, None]
                run_mean = np.cumsum(s.theta, axis=0) / k
                run_var = np.maximum(
                    np.cumsum(s.theta.astype(np.float64) ** 2, axis=0) / k - run_mean**2, 0.0
                )
                err_m = np.linalg.norm(run_mean - ref["mean"], axis=1) / np.linalg.norm(ref["mean"])
                err_v = np.linalg.norm(run_var - ref["var"], axis=1) / np.linalg.norm(ref["var"])
                curves[(protocol, tau)] = (s.wall_s, err_m, err_v)
                runs.append(
                    {
                        "protocol": protocol,
                        "tau": tau,
                        "workers": workers,
                        "samples": len(s),
                        "wall_s": result.wall_s,
                        "mean_error": float(err_m[-1]),
                        "var_error": float(err_v[-1]),
                        "staleness_mean": result.staleness_mean,
                        "bytes_total": result.bytes_total,
                        "bytes_per_sample": result.bytes_total / max(1, len(s)),
                    }
                )
        protocols = list(dict.fromkeys(c.protocols))
        fig, axes = plt.subplots(
            2, len(protocols), figsize=(3.6 * len(protocols), 5.5), squeeze=False, sharey="row"
        )
        for j, protocol in enumerate(protocols):
            for (p, tau), (wall, em, ev) in curves.items():
                if p != protocol:
                    continue
                label = "single chain" if p in ("single", "sync") else f"tau = {tau}"
                axes[0][j].plot(wall, em, label=label)
                axes[1][j].plot(wall, ev, label=label)
            axes[0][j].set(title=protocol, yscale="log")
            axes[1][j].set(xlabel="wall-clock s", yscale="log")
            axes[0][j].legend(fontsize=7)
        axes[0][0].set_ylabel("rel. error of posterior mean")
        axes[1][0].set_ylabel("rel. error of posterior variance")
        fig.tight_layout()
        fig.savefig(tmp / "consistency.png", dpi=110)
        plt.close(fig)
        lines = [
            "# Consistency: Bayesian logistic regression vs a full-batch MALA reference",
            "",
            f"Reference: {ref['draws']} MALA draws (acceptance {ref['acceptance']:.2f}); "
            f"{c.samples} samples per run, thinning {c.thinning}, burn-in {c.burn_in}, "
            f"step size {c.step_size:g}, batch {c.batch_size}, {c.workers} workers.",
            "",
            "| protocol | tau | workers | wall s | mean error | variance error | staleness | KB/sample |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in runs:
            st = "-" if r["staleness_mean"] is None else f"{r['staleness_mean']:.2f}"
            lines.append(
                f"| {r['protocol']} | {r['tau']} | {r['workers']} | {r['wall_s']:.2f} | {r['mean_error']:.4f} "
                f"| {r['var_error']:.4f} | {st} | {r['bytes_per_sample'] / 1e3:.1f} |"
            )
        (tmp / "table.md").write_text("\n".join(lines) + "\n")
    summary = {
        "reference": {"draws": ref["draws"], "acceptance": ref["acceptance"]},
        "runs": {f"{r['protocol']}-tau{r['tau']}": r for r in runs},
    }
    if metrics_path is not None:
        with signals_deferred():
            write_json(metrics_path, summary)
    return summary


def run_consistency(params: Params, stage: StageItem, track: bool = True) -> dict[str, Any]:
    """The ``sgmcmc_consistency`` stage's work: the study into the outputs dvc.yaml declares,
    recorded in one MLflow run (final errors as metrics, per protocol and tau)."""
    if not track:
        return run_study(params, stage.out, stage.path(".json"))
    with tracking.stage_run(params, stage):
        summary = run_study(params, stage.out, stage.path(".json"))
        tracking.log_result(summary, as_params=["tau", "workers", "samples", "draws"])
        tracking.log_artifact(stage.out / "consistency.png")
        tracking.log_artifact(stage.out / "table.md")
    return summary
