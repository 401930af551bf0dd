"""Consistency study: bias of asynchronous SG-MCMC against staleness (Li et al. 2019, Sec. 4).

On Bayesian logistic regression (``tasks.LogregTask``) a long **full-batch MALA** chain (Langevin
proposal + Metropolis-Hastings correction, so exact up to Monte Carlo error) gives the reference
posterior mean ``m*`` and variance ``v*``. Each protocol in ``sgmcmc.consistency.protocols`` is then
run with ``workers`` workers for every period tau in ``periods`` (``single`` once: it has no tau),
and the running estimates from its samples are compared with the reference after every sample:

    mean error  = ||m_k - m*|| / ||m*||        variance error = ||v_k - v*|| / ||v*||

against wall-clock time. The paper's theory: the bias grows with staleness (larger tau, more
workers); thinning (fewer, more separated samples) trades variance for time. Every run is
repeated for each seed of ``consistency.seeds`` (the reference once): the metrics keep each final
error as the mean over seeds with ``_std``, ``_ci_low``, ``_ci_high``, ``n_seeds``, ``per_seed``,
and ``tau_comparisons`` pairs each larger tau with the smallest by seed; the table claims "the
error grows with tau" only where that paired interval says so. Outputs: a figure (seed-mean
curves), a markdown table and a JSON of the final errors.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from betamcmc import tracking
from betamcmc.core.io import atomic_path, write_json
from betamcmc.core.pipeline import StageItem
from betamcmc.core.stats import fmt, fmt_ci, fmt_paired, paired, verdict
from betamcmc.core.stopping import Stopped, signals_deferred, stop_on_signals
from betamcmc.sgmcmc.engine.config import EngineConfig, RunSpec, SamplerConfig
from betamcmc.sgmcmc.engine.flat import FlatModel
from betamcmc.sgmcmc.engine.launch import run_local, start_forkserver
from betamcmc.sgmcmc.engine.samples import read_samples
from betamcmc.sgmcmc.seeds import aggregate
from betamcmc.sgmcmc.tasks import LogregTask

if TYPE_CHECKING:
    from betamcmc.params import Params

# the per-seed numbers of a run the metrics file reports as mean / std / CI over seeds
SUMMARISED = ("mean_error", "var_error", "wall_s", "staleness_mean", "bytes_per_sample")


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


def _one_run(spec: RunSpec, sdir: Path, ref: dict[str, Any]) -> tuple[dict[str, Any], tuple]:
    """One (protocol, tau, seed): its final errors and running error curves."""
    result = run_local(spec, sdir)
    s = read_samples(sdir)
    k = np.arange(1, len(s) + 1)[:, None]
    run_mean = np.cumsum(s.theta, axis=0) / k
    run_var = np.maximum(np.cumsum(s.theta.astype(np.float64) ** 2, axis=0) / k - run_mean**2, 0.0)
    err_m = np.linalg.norm(run_mean - ref["mean"], axis=1) / np.linalg.norm(ref["mean"])
    err_v = np.linalg.norm(run_var - ref["var"], axis=1) / np.linalg.norm(ref["var"])
    run = {
        "seed": spec.seed,
        "samples": len(s),
        "wall_s": result.wall_s,
        "mean_error": float(err_m[-1]),
        "var_error": float(err_v[-1]),
        "staleness_mean": result.staleness_mean,
        "bytes_per_sample": result.bytes_total / max(1, len(s)),
    }
    return run, (s.wall_s, err_m, err_v)


def arms(params: Params) -> list[tuple[str, int, int]]:
    """``(protocol, tau, workers)`` of every run of the study (single and sync: tau 1 only)."""
    c = params.sgmcmc.consistency
    return [
        (protocol, tau, 1 if protocol == "single" else c.workers)
        for protocol in dict.fromkeys(c.protocols)
        for tau in ([1] if protocol in ("single", "sync") else c.periods)
    ]


def tau_comparisons(runs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per protocol with several periods: the mean error at each larger tau against the smallest
    tau, paired by seed; ``grows`` only where the verdict says the error is larger."""
    out = []
    for protocol in dict.fromkeys(r["protocol"] for r in runs.values()):
        mine = sorted(
            (r for r in runs.values() if r["protocol"] == protocol), key=lambda r: r["tau"]
        )
        for r in mine[1:]:
            small, large = mine[0], r
            comparison = paired(
                [x["mean_error"] for x in large["per_seed"]],
                [x["mean_error"] for x in small["per_seed"]],
                higher_is_better=False,
            )
            word = {"worse": "larger", "better": "smaller"}.get(
                verdict(comparison), "indistinguishable"
            )
            out.append(
                {
                    "protocol": protocol,
                    "tau": large["tau"],
                    "against_tau": small["tau"],
                    "error_is": word,
                    "grows": word == "larger",
                    **comparison,
                }
            )
    return out


def engine_config(params: Params) -> EngineConfig:
    """The study's engine settings: the ``sgmcmc`` sampler at the study's step size and its chain
    block; the period is set per arm."""
    section, c = params.sgmcmc, params.sgmcmc.consistency
    return EngineConfig.build(
        sampler=SamplerConfig.of(section.sampler, step_size=c.step_size),
        prior=section,
        exchange=section,
        chain=c,
        runtime=params.runtime,
        staleness=section.staleness,
        straggler_delay=0.0,
        step_size_key="sgmcmc.sampler.step_size",
    )


def _run_study(params: Params, out_dir: Path, metrics_path: Path | None) -> dict[str, Any]:
    c = params.sgmcmc.consistency
    t = params.sgmcmc.task
    ref = reference_posterior(params)
    factory = functools.partial(
        _logreg_factory, t.logreg_n, t.logreg_dim, c.batch_size, t.test_fraction
    )
    torch.manual_seed(params.seed)
    assert FlatModel(factory().build_model()).dim == len(ref["mean"])
    base = engine_config(params)
    per_seed: dict[str, list[dict[str, Any]]] = {}
    curves: dict[tuple[str, int], list[tuple]] = {}
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for seed in c.seeds:
            for protocol, tau, workers in arms(params):
                spec = RunSpec(
                    config=base.replace(period=tau),
                    protocol=protocol,
                    workers=workers,
                    seed=seed,
                    task_factory=factory,
                )
                sdir = tmp / "samples" / f"seed-{seed}" / f"{protocol}-tau{tau}"
                run, curve = _one_run(spec, sdir, ref)
                per_seed.setdefault(f"{protocol}-tau{tau}", []).append(run)
                curves.setdefault((protocol, tau), []).append(curve)
        runs = {
            f"{p}-tau{tau}": {
                "protocol": p,
                "tau": tau,
                "workers": w,
                "samples": per_seed[f"{p}-tau{tau}"][0]["samples"],
                **aggregate(per_seed[f"{p}-tau{tau}"], SUMMARISED),
            }
            for p, tau, w in arms(params)
        }
        comparisons = tau_comparisons(runs)
        draw_figure(tmp / "consistency.png", curves)
        text = table_text(params, ref, runs, comparisons)
        (tmp / "table.md").write_text(text)
    summary = {
        "reference": {"draws": ref["draws"], "acceptance": ref["acceptance"]},
        "seeds": list(c.seeds),
        "runs": runs,
        "tau_comparisons": comparisons,
    }
    if metrics_path is not None:
        with signals_deferred():
            write_json(metrics_path, summary)
    return summary


def draw_figure(path: Path, curves: dict[tuple[str, int], list[tuple]]) -> None:
    """Seed-mean running errors against seed-mean wall-clock, one column per protocol."""
    import matplotlib  # lazy: a plotting import costs a second: only the study's figure pays it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    protocols = list(dict.fromkeys(p for p, _ in curves))
    fig, axes = plt.subplots(
        2, len(protocols), figsize=(3.6 * len(protocols), 5.5), squeeze=False, sharey="row"
    )
    for j, protocol in enumerate(protocols):
        for (p, tau), seeds in curves.items():
            if p != protocol:
                continue
            n = min(len(c[0]) for c in seeds)
            wall, em, ev = (np.mean([c[i][:n] for c in seeds], axis=0) for i in range(3))
            label = "single chain" if p in ("single", "sync") else f"tau = {tau}"
            axes[0][j].plot(wall, em, label=label)
            axes[1][j].plot(wall, ev, label=label)
        axes[0][j].set(title=f"{protocol} (mean of {len(seeds)} seeds)", yscale="log")
        axes[1][j].set(xlabel="wall-clock s", yscale="log")
        axes[0][j].legend(fontsize=7)
    axes[0][0].set_ylabel("rel. error of posterior mean")
    axes[1][0].set_ylabel("rel. error of posterior variance")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table_text(
    params: Params,
    ref: dict[str, Any],
    runs: dict[str, dict[str, Any]],
    comparisons: list[dict[str, Any]],
) -> str:
    """``table.md``: errors over seeds, and the paired tau comparisons (the only claims)."""
    c = params.sgmcmc.consistency
    lines = [
        "# Consistency: Bayesian logistic regression vs a full-batch MALA reference",
        "",
        f"Reference: {ref['draws']} MALA draws (acceptance {ref['acceptance']:.2f}), computed "
        f"once; {c.samples} samples per run, thinning {c.thinning}, burn-in {c.burn_in}, "
        f"step size {c.step_size:g}, batch {c.batch_size}, {c.workers} workers; every run "
        f"repeated for seeds {list(c.seeds)}: mean ± std [95 % t-interval] over seeds.",
        "",
        "| protocol | tau | workers | wall s | mean error | variance error | staleness | KB/sample |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs.values():
        lines.append(
            f"| {r['protocol']} | {r['tau']} | {r['workers']} | {fmt(r['wall_s'])} "
            f"| {fmt_ci(_summary(r, 'mean_error'))} | {fmt_ci(_summary(r, 'var_error'))} "
            f"| {fmt(r['staleness_mean'])} | {fmt(r['bytes_per_sample'] / 1e3)} |"
        )
    lines += [
        "",
        "## Does the bias grow with tau?",
        "",
        "The mean error at each larger tau against the smallest, paired by seed (wins = seeds "
        "where the larger tau has the *smaller* error; Δ = larger-tau error − smaller-tau "
        "error). 'larger' only where the 95 % interval of Δ is above 0.",
        "",
    ]
    for cmp in comparisons:
        lines.append(
            f"- {cmp['protocol']}, tau {cmp['tau']} vs {cmp['against_tau']}: error "
            f"{cmp['error_is']} ({fmt_paired(cmp)})"
        )
    grows = sorted({cmp["protocol"] for cmp in comparisons if cmp["grows"]})
    lines += [
        "",
        (
            f"The error grows with tau for: {', '.join(grows)}."
            if grows
            else f"No growth of the error with tau is shown at {len(c.seeds)} seeds."
        ),
    ]
    return "\n".join(lines) + "\n"


def _summary(r: dict[str, Any], key: str) -> dict[str, Any]:
    return {
        k: r.get(f"{key}_{k}" if k != "mean" else key) for k in ("mean", "std", "ci_low", "ci_high")
    }


def run_consistency(params: Params, stage: StageItem, track: bool = True) -> dict[str, Any]:
    """The ``sgmcmc_consistency`` stage's work: the study into the outputs dvc.yaml declares,
    recorded in one MLflow run (final errors as metrics, per protocol and tau)."""
    start_forkserver()  # its imports overlap this process's MLflow set-up
    if not track:
        return run_study(params, stage.out, stage.path(".json"))
    with tracking.stage_run(params, stage):
        summary = run_study(params, stage.out, stage.path(".json"))
        tracking.log_result(summary, as_params=["tau", "workers", "samples", "draws"])
        tracking.log_artifact(stage.out / "consistency.png")
        tracking.log_artifact(stage.out / "table.md")
    return summary
