"""One item of the ``rl`` stage: a method (update x protocol) with W workers, over the seeds.

Per seed, the SG-MCMC engine (``betamcmc.sgmcmc.engine.launch.run_local``) spawns W worker processes that
collect rollouts and compute actor-critic gradients (``task.py``) and a master that owns the
parameters; the master streams a snapshot of the policy about every ``rl.eval_every`` environment
steps to the samples file (downpour: its own chain; elastic: each worker's chain). After the run
every snapshot is evaluated (``evaluate.py``), and the master's final parameters (downpour: its
chain; elastic: the centre variable) are evaluated over ``rl.final_episodes`` episodes and saved.

Outputs of item ``<method>-<W>`` (paths: dvc.yaml; all written at the end; a failed or stopped run writes none and
leaves the previous outputs as they were). The model folder appears first (one rename), then the
curve, then the metrics file: metrics never exist without their model folder.

* ``models/rl/<item>/``: ``seed<S>/policy.pt`` (the final master policy, see :func:`save_policy`),
  ``seed<S>/samples/`` (the engine's samples file: every policy snapshot), ``run.json`` (per seed:
  engine counters, dead workers, evaluation of every snapshot);
* ``metrics/rl/<item>.json`` (DVC metrics) and ``metrics/rl/<item>_curve.csv`` (DVC plots: return
  mean and std over seeds against environment steps and wall-clock seconds, policy entropy).
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from betamcmc import tracking
from betamcmc.core.errors import DivergenceError
from betamcmc.core.io import limit_threads, write_json, write_text
from betamcmc.core.paramfile import RuntimeParams
from betamcmc.core.pipeline import StageItem
from betamcmc.core.stats import mean_std_ci
from betamcmc.core.stopping import Stopped, signals_deferred, stop_on_signals
from betamcmc.rl.agent import ActorCritic, LossConfig
from betamcmc.rl.envs import EnvInfo, check_env, run_episodes
from betamcmc.rl.evaluate import SeedCurve, aggregate_curves, read_curve, steps_to_threshold
from betamcmc.rl.params import RlParams, split_method
from betamcmc.rl.task import RlTask
from betamcmc.sgmcmc.engine.config import ChainSteps, EngineConfig, RunSpec, SamplerConfig
from betamcmc.sgmcmc.engine.flat import FlatModel, all_finite
from betamcmc.sgmcmc.engine.launch import run_local, start_forkserver
from betamcmc.sgmcmc.engine.result import RunResult, require_complete
from betamcmc.sgmcmc.engine.samples import Samples, read_samples
from betamcmc.sgmcmc.sampling import finalize_dir
from betamcmc.tracking.progress import Progress

if TYPE_CHECKING:
    from betamcmc.params import Params

EVAL_SEED, FINAL_SEED = 10_000, 20_000  # evaluation episodes' environment seeds (+ 100 x seed)


@dataclass(frozen=True)
class Schedule:
    """How the environment-step budget maps onto the engine's chain steps and samples."""

    steps_per_gradient: int
    thinning: int  # chain steps between snapshots (a multiple of the period)
    snapshots: int  # samples the master collects (all chains together)


def schedule(rl: RlParams, protocol: str, workers: int) -> Schedule:
    batch = rl.envs_per_worker * rl.rollout_length
    gradients = math.ceil(rl.total_steps / batch)
    thin = max(1, round(rl.eval_every / batch))
    thin = math.ceil(thin / rl.period) * rl.period
    if protocol == "downpour":  # one chain (the master's) advanced by every worker's gradients
        snapshots = max(1, round(gradients / thin))
    else:  # elastic: W chains, each taking about gradients / W steps
        snapshots = workers * max(1, round(gradients / workers / thin))
    return Schedule(batch, thin, snapshots)


def engine_spec(
    rl: RlParams, runtime: RuntimeParams, method: str, workers: int, seed: int
) -> RunSpec:
    """The engine's run for a method: SGLD/SGHMC, at temperature 0 for sgd/sgdm."""
    update, protocol = split_method(method)
    sched = schedule(rl, protocol, workers)
    momentum = update in ("sgdm", "sghmc")
    config = EngineConfig.build(
        sampler=SamplerConfig(
            kind="sghmc" if momentum else "sgld",
            step_size=rl.step_size * rl.friction if momentum else rl.step_size,
            friction=rl.friction,
            temperature=rl.temperature if update in ("sgld", "sghmc") else 0.0,
            schedule="constant",  # rl has no step-size schedule
            decay=0.0,
            decay_steps=1,  # unused at decay 0
            cycles=1,  # unused unless cyclical
            exploration=0.0,
            phase=0.0,
        ),
        prior=rl,
        exchange=rl,
        chain=ChainSteps(burn_in=sched.thinning, thinning=sched.thinning, samples=sched.snapshots),
        runtime=runtime,
        staleness="none",  # every worker steps with the sampler's step size
        straggler_delay=0.0,  # no simulated straggler in RL
        step_size_key="rl.step_size",
    )
    loss = LossConfig(
        gamma=rl.gamma,
        gae_lambda=rl.gae_lambda,
        entropy_coef=rl.entropy_coef,
        value_coef=rl.value_coef,
        normalize_advantages=rl.normalize_advantages,
    )
    task = RlTask(
        env_id=rl.env,
        hidden=list(rl.hidden),
        envs_per_worker=rl.envs_per_worker,
        rollout_length=rl.rollout_length,
        loss=loss,
    )
    return RunSpec(config=config, protocol=protocol, workers=workers, seed=seed, task_factory=task)


def initial_model(spec: RunSpec) -> tuple[ActorCritic, FlatModel]:
    """The model every process of a run starts from (the engine seeds torch the same way)."""
    task = spec.make_task()
    torch.manual_seed(spec.seed)
    flat = FlatModel(task.build_model())
    return flat.model, flat  # type: ignore[return-value]


def save_policy(path: Path, model: ActorCritic, meta: dict[str, Any]) -> None:
    """``policy.pt``: ``{"state_dict", "env", "obs_dim", "n_actions", "hidden", **meta}``."""
    torch.save(
        {
            "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "obs_dim": model.obs_dim,
            "n_actions": model.n_actions,
            "hidden": model.hidden,
            **meta,
        },
        path,
    )


def run_seed(
    rl: RlParams,
    runtime: RuntimeParams,
    method: str,
    workers: int,
    seed: int,
    seed_dir: Path,
    info: dict[str, Any],
) -> tuple[SeedCurve, dict[str, Any]]:
    """Train one seed through the engine, evaluate its snapshots and final policy, save it."""
    spec = engine_spec(rl, runtime, method, workers, seed)
    sched = schedule(rl, spec.protocol, workers)
    started = time.perf_counter()
    result = _sample(rl, spec, seed_dir / "samples", {**info, "seed": seed}, method)
    total_s = time.perf_counter() - started
    kept = f"seed {seed}'s snapshots are discarded, nothing was written"
    require_complete(result, rl.allow_partial, "rl.allow_partial", kept, "policy snapshots")
    samples = read_samples(seed_dir / "samples")
    model, flat = initial_model(spec)
    where = f"rl {method} W={workers} seed {seed}"
    curve, snapshots = evaluate_snapshots(rl, model, flat, samples, sched, seed, where)
    assert result.final_theta is not None
    if not all_finite(result.final_theta):
        raise DivergenceError(
            f"rl {method} with {workers} workers, seed {seed}: the master's parameters are "
            f"non-finite; lower rl.step_size (now {rl.step_size:g})"
        )
    flat.load(result.final_theta)
    greedy = rl.eval_mode == "greedy"
    final, _ = run_episodes(model, rl.env, rl.final_episodes, FINAL_SEED + 100 * seed, greedy)
    save_policy(
        seed_dir / "policy.pt",
        model,
        {"env": rl.env, "method": method, "workers": workers, "seed": seed},
    )
    record = {
        "seed": seed,
        "engine": result.as_dict(),
        "total_s": round(total_s, 3),
        "env_steps": float(result.grad_evals) * sched.steps_per_gradient,
        "final_returns": final.returns,
        "final_return_mean": final.mean,
        "final_entropy": final.entropy,
        "snapshots": snapshots,
    }
    return curve, record


def _sample(
    rl: RlParams, spec: RunSpec, samples_dir: Path, info: dict[str, Any], method: str
) -> RunResult:
    """Run the engine for one seed; a diverged policy says which setting to lower."""
    seed, workers = spec.seed, spec.workers
    try:
        where = f"rl {method} W={workers} seed {seed}"
        with Progress(where, mlflow=True, prefix=f"seed{seed}.sampling.") as progress:
            return run_local(spec, samples_dir, info, report=progress)
    except DivergenceError as err:
        raise DivergenceError(
            f"rl {method} with {workers} workers, seed {seed}: the policy diverged "
            f"({str(err).split(':')[0]}); lower rl.step_size (now {rl.step_size:g})"
            + (
                f" or rl.temperature (now {rl.temperature:g})"
                if spec.config.sampler.temperature
                else ""
            )
        ) from None


def evaluate_snapshots(
    rl: RlParams,
    model: ActorCritic,
    flat: FlatModel,
    samples: Samples,
    sched: Schedule,
    seed: int,
    where: str,
) -> tuple[SeedCurve, list[dict[str, Any]]]:
    """The seed's learning curve and one record per snapshot: the initial policy (level 0, at 0
    steps and 0 s), then every snapshot loaded into ``model`` and run for ``rl.eval_episodes``."""
    greedy = rl.eval_mode == "greedy"
    eval_seed = EVAL_SEED + 100 * seed
    levels: dict[int, list[tuple[float, float, float, float]]] = {}
    stats, _ = run_episodes(model, rl.env, rl.eval_episodes, eval_seed, greedy)
    levels[0] = [(0.0, 0.0, stats.mean, stats.entropy)]
    snapshots = []
    evaluating = Progress(f"{where}: evaluating snapshots")
    for i in range(len(samples)):
        flat.load(torch.tensor(samples.theta[i]))
        stats, _ = run_episodes(model, rl.env, rl.eval_episodes, eval_seed, greedy)
        evaluating(i + 1, len(samples), {"return_mean": stats.mean})
        env_steps = float(samples.grad_evals[i]) * sched.steps_per_gradient
        level = int(samples.step[i]) // sched.thinning
        levels.setdefault(level, []).append(
            (env_steps, float(samples.wall_s[i]), stats.mean, stats.entropy)
        )
        snapshots.append(
            {
                "chain": int(samples.chain[i]),
                "chain_step": int(samples.step[i]),
                "env_steps": env_steps,
                "wall_s": round(float(samples.wall_s[i]), 4),
                "return_mean": stats.mean,
                "entropy": round(stats.entropy, 6),
            }
        )
    evaluating.close()
    chains = len(set(samples.chain.tolist())) if len(samples) else 1
    return SeedCurve.from_levels(seed, levels, chains), snapshots


def _spread(name: str, values: list[float]) -> dict[str, Any]:
    """``<name>_mean`` (the key this metrics file always had), ``_std`` (ddof 1), ``_ci_low``,
    ``_ci_high`` (95 % t-interval): :func:`betamcmc.core.stats.mean_std_ci` over seeds."""
    summary = mean_std_ci(values)
    return {
        f"{name}_mean": summary["mean"],
        f"{name}_std": summary["std"],
        f"{name}_ci_low": summary["ci_low"],
        f"{name}_ci_high": summary["ci_high"],
    }


def summarize(
    rl: RlParams,
    env: EnvInfo,
    method: str,
    workers: int,
    curves: list[SeedCurve],
    records: list[dict[str, Any]],
) -> dict[str, Any]:
    """The DVC metrics of an item (numbers and per-seed mappings; curves go to the CSV)."""
    update, protocol = split_method(method)
    finals = [r["final_return_mean"] for r in records]
    wall = [r["engine"]["wall_s"] for r in records]
    steps = [r["env_steps"] for r in records]
    threshold = env.reward_threshold
    to_solve = [steps_to_threshold(c, threshold) for c in curves]
    solved = [s for s in to_solve if s is not None]
    # median over seeds with "never" counted as infinite: defined when at least half solved
    ordered = sorted(s if s is not None else math.inf for s in to_solve)
    median = float(np.median(ordered)) if ordered else math.inf
    stale = [
        r["engine"]["staleness_mean"] for r in records if r["engine"]["staleness_mean"] is not None
    ]
    return {
        "method": method,
        "update": update,
        "protocol": protocol,
        "workers": workers,
        "env": rl.env,
        "reward_threshold": threshold,
        "seeds": len(records),
        "temperature": rl.temperature if update in ("sgld", "sghmc") else 0.0,
        "step_size": rl.step_size,
        "n_seeds": len(records),
        **_spread("final_return", finals),
        **_spread("curve_return", [c.mean_return() for c in curves]),
        "last_snapshot_return_mean": float(np.mean([c.returns[-1] for c in curves])),
        "entropy_final_mean": float(np.mean([r["final_entropy"] for r in records])),
        "solved_runs": len(solved),
        "steps_to_threshold_median": median if math.isfinite(median) else None,
        "env_steps_mean": float(np.mean(steps)),
        **_spread("wall_s", wall),
        "setup_s_mean": float(np.mean([r["engine"]["setup_s"] for r in records])),
        "env_steps_per_s": float(np.mean([s / w for s, w in zip(steps, wall, strict=True)])),
        "staleness_mean": float(np.mean(stale)) if stale else None,
        "bytes_total_mean": float(np.mean([r["engine"]["bytes_total"] for r in records])),
        "dead_workers": int(sum(len(r["engine"]["dead"]) for r in records)),
        "per_seed": {
            str(r["seed"]): {
                "final_return": r["final_return_mean"],
                "curve_return": c.mean_return(),
                "steps_to_threshold": s,
                "wall_s": r["engine"]["wall_s"],
            }
            for r, s, c in zip(records, to_solve, curves, strict=True)
        },
    }


def run_item(params: Params, stage: StageItem, track: bool = True) -> dict[str, Any]:
    """Train and evaluate every seed of one item and write all its outputs (paths: dvc.yaml);
    returns the metrics. SIGTERM / SIGINT end it with one line saying how far it got; nothing
    is written then."""
    rl = params.rl
    method = stage.identity["method"]
    env = check_env(rl.env)
    limit_threads(params.runtime.threads)
    start_forkserver()  # its imports overlap this process's MLflow set-up
    progress: list[int] = []  # seeds finished
    try:
        with stop_on_signals():
            if not track:
                return _run_and_write(rl, params.runtime, env, stage, progress)
            update, protocol = split_method(method)
            with tracking.stage_run(
                params, stage, identity={"update": update, "protocol": protocol}
            ):
                summary = _run_and_write(rl, params.runtime, env, stage, progress)
                _log(summary, stage)
            return summary
    except Stopped as stop:
        if stop.outputs_complete:
            raise
        raise stop.saying(
            f"{stage.name}: {len(progress)} of {len(rl.seeds)} seeds were done; nothing was "
            "written, the previous outputs are as they were"
        ) from None


def _run_and_write(
    rl: RlParams, runtime: RuntimeParams, env: EnvInfo, stage: StageItem, progress: list[int]
) -> dict[str, Any]:
    method, workers = stage.identity["method"], stage.identity["workers"]
    info = {"item": stage.key, "task": "rl", "env": rl.env, "method": method}
    curves: list[SeedCurve] = []
    records: list[dict[str, Any]] = []
    final = stage.out
    staging = final.with_name(f".{final.name}.partial")  # not an output; removed on every way out
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for seed in rl.seeds:
            seed_dir = staging / f"seed{seed}"
            seed_dir.mkdir(parents=True)
            curve, record = run_seed(rl, runtime, method, workers, seed, seed_dir, info)
            curves.append(curve)
            records.append(record)
            progress.append(seed)
        write_json(staging / "run.json", {"item": stage.key, "runs": records})
        summary = summarize(rl, env, method, workers, curves, records)
        table = aggregate_curves(curves)
        with signals_deferred():  # model folder first, metrics file last
            finalize_dir(staging, final)
            write_text(stage.path("_curve.csv"), table.to_csv())
            write_json(stage.path(".json"), summary)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary


def _log(summary: dict[str, Any], stage: StageItem) -> None:
    settings = ["workers", "seeds", "reward_threshold", "temperature", "step_size"]
    tracking.log_result(summary, as_params=settings, skip=["per_seed"])
    curve = read_curve(stage.path("_curve.csv"))
    steps = [int(round(s)) for s in curve["env_steps"]]
    tracking.log_series(
        {"curve.return_mean": curve["return_mean"], "curve.entropy_mean": curve["entropy_mean"]},
        steps,
    )
    tracking.log_artifact(stage.path("_curve.csv"))
    tracking.log_artifact(stage.path(".json"))
