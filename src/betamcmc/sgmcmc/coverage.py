"""Mode coverage on the 25-Gaussian target: cyclical against constant steps, per protocol.

The benchmark of cSG-MCMC (Zhang et al., ICLR 2020, Sec. 5.1) run on the asynchronous engine:
the target is :class:`~betamcmc.sgmcmc.mixture_task.MixtureTask` (25 equal modes 2 apart,
variance ``s^2``, gradient noise ``noise_std``), the arms are every protocol of
``sgmcmc.cyclical.protocols`` (``single`` with 1 chain, the others with ``workers``) under every
step schedule of ``schedules`` (``constant``: eta = ``step_size``; ``cyclical``: alpha_0 =
``cyclical_step_size``, ``cycles`` cosine cycles, the first ``exploration`` of each without noise
or samples, worker w shifted by ``w x phase`` cycles; the engine's rules: docs/sgmcmc.md).

Every arm has the same chain block (``burn_in``, ``thinning``, ``samples``): a step budget
``K = burn_in + thinning x (samples - 1)`` per chain block, so the constant and cyclical arms of
a protocol take the same gradients (elastic: one burn-in per chain more than single / downpour),
and a cyclical arm keeps only the due samples that fall in sampling stages.

Per run (arm x seed) from its samples, all chains of the run pooled (elastic: both workers'
chains; downpour: the master's chain): modes visited (a sample within ``mode_radius x s`` of a
mode counts for it), the total-variation distance between the samples' mode shares and the true
weights (the off-mode share its own bin; no sample yet counts as TV 1), the off-mode share,
gradients, wall-clock seconds and samples kept. Over the seeds: mean, sample std and 95 %
t-interval (:func:`betamcmc.sgmcmc.seeds.aggregate`), and per protocol cyclical against
constant paired by seed (:func:`betamcmc.core.stats.paired`: an ordering only where the interval of
the difference excludes 0). The coverage curves: modes visited and TV of the samples taken
within each of ``curve_points`` gradient budgets, and within each of as many wall-clock times
(a common grid over all arms), as seed means with their intervals.

Deterministic given the seeds, except wall-clock fields and the asynchronous arms (downpour,
elastic with W >= 2: message order). One MLflow run for the stage with one nested run per arm
(tags ``protocol``, ``workers``, ``schedule``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from betamcmc import tracking
from betamcmc.core.io import atomic_path, csv_cell, write_csv, write_json
from betamcmc.core.pipeline import StageItem
from betamcmc.core.stats import mean_std_ci, overlaps, paired, verdict
from betamcmc.core.stopping import Stopped, signals_deferred, stop_on_signals
from betamcmc.sgmcmc.coverage_report import draw_figure, summary, table_text
from betamcmc.sgmcmc.engine.config import (
    ChainSteps,
    EngineConfig,
    RunSpec,
    SamplerConfig,
    chain_steps,
)
from betamcmc.sgmcmc.engine.launch import start_forkserver
from betamcmc.sgmcmc.engine.result import NoSamples
from betamcmc.sgmcmc.engine.samples import Samples, read_samples
from betamcmc.sgmcmc.mixture import Mixture, assign_modes, mode_tv, modes_visited
from betamcmc.sgmcmc.mixture_task import MixtureTask
from betamcmc.sgmcmc.sampling import sample
from betamcmc.sgmcmc.seeds import aggregate

if TYPE_CHECKING:
    from betamcmc.params import Params
    from betamcmc.sgmcmc.params import CyclicalParams

PER_SIDE, SPACING = 5, 2.0  # the 25-Gaussian target: means {-4, -2, 0, 2, 4}^2
SUMMARISED = ("modes_visited", "mode_tv", "off_mode", "grads", "wall_s", "samples_kept")
CURVE_COLUMNS = (
    "arm", "protocol", "workers", "schedule", "axis", "x",
    "modes_visited", "modes_visited_ci_low", "modes_visited_ci_high",
    "mode_tv", "mode_tv_ci_low", "mode_tv_ci_high", "n_seeds",
)  # fmt: skip
COMPARED = (("modes_visited", True), ("mode_tv", False))  # (metric, higher is better)


@dataclass(frozen=True)
class Arm:
    """One protocol with its worker count under one step schedule."""

    protocol: str
    workers: int
    schedule: str

    @property
    def name(self) -> str:
        return f"{self.protocol}-{self.workers}-{self.schedule}"


def arms(c: CyclicalParams) -> list[Arm]:
    """Every (protocol, schedule) of the study, in params order (``single``: one chain)."""
    return [
        Arm(protocol, 1 if protocol == "single" else c.workers, schedule)
        for protocol in dict.fromkeys(c.protocols)
        for schedule in dict.fromkeys(c.schedules)
    ]


def mixture_task(c: CyclicalParams) -> MixtureTask:
    return MixtureTask(
        per_side=PER_SIDE,
        spacing=SPACING,
        variance=c.variance,
        noise_std=c.noise_std,
        init_box=c.init_box,
    )


def engine_config(params: Params, schedule: str) -> EngineConfig:
    """The engine settings of every arm with ``schedule``: one chain block for all arms."""
    c = params.sgmcmc.cyclical
    cyclical = schedule == "cyclical"
    sampler = SamplerConfig(
        kind=c.kind,
        step_size=c.cyclical_step_size if cyclical else c.step_size,
        friction=c.friction,
        temperature=c.temperature,
        schedule="cyclical" if cyclical else "constant",
        decay=0.0,
        decay_steps=1,
        cycles=c.cycles,
        exploration=c.exploration,
        phase=c.phase,
    )
    return EngineConfig.build(
        sampler=sampler,
        prior=c,
        exchange=c,
        chain=ChainSteps(c.burn_in, c.thinning, c.samples),
        runtime=params.runtime,
        staleness="none",
        straggler_delay=0.0,
        step_size_key="sgmcmc.cyclical." + ("cyclical_step_size" if cyclical else "step_size"),
        stop="budget",  # every arm ends on its step budget: the same gradients
    )


def coverage(theta: np.ndarray, mixture: Mixture, radius: float) -> dict[str, float]:
    """Modes visited, TV to the true weights and off-mode share of a set of 2-D samples
    (none: 0 modes, TV 1, off-mode share 0)."""
    if len(theta) == 0:
        return {"modes_visited": 0, "mode_tv": 1.0, "off_mode": 0.0}
    assigned = assign_modes(np.asarray(theta, dtype=np.float64), mixture.means, radius)
    return {
        "modes_visited": modes_visited(assigned, len(mixture.means)),
        "mode_tv": mode_tv(assigned, mixture.probs),
        "off_mode": float(np.mean(assigned < 0)),
    }


def one_run(spec: RunSpec, sdir: Path, mixture: Mixture, radius: float) -> tuple[dict, Samples]:
    """Sample one (arm, seed) into ``sdir``; its coverage, gradients, time and samples."""
    try:
        result = sample(spec, sdir, {"study": "sgmcmc_cyclical", "seed": spec.seed})
    except NoSamples as empty:  # every exchange fell in an exploration stage: no mode visited
        result = empty.result
    assert result is not None  # run_local: the master always has a result
    s = read_samples(sdir)
    run = {
        "seed": spec.seed,
        **coverage(s.theta, mixture, radius),
        "grads": int(result.grad_evals),
        "wall_s": float(result.wall_s),
        "samples_kept": len(s),
    }
    return run, s


def curve_grid(limit: float, points: int) -> np.ndarray:
    """``points`` budgets evenly up to ``limit`` (the largest of any run)."""
    return np.linspace(limit / points, limit, points)


def arm_curves(
    arm: Arm, runs: list[Samples], grids: dict[str, np.ndarray], mixture: Mixture, radius: float
) -> list[dict[str, Any]]:
    """Coverage of the samples taken within each budget (gradients, seconds), over seeds."""
    rows = []
    for axis, grid in grids.items():
        for x in grid:
            per = [
                coverage(
                    s.theta[(s.grad_evals if axis == "grads" else s.wall_s) <= x], mixture, radius
                )
                for s in runs
            ]
            row: dict[str, Any] = {
                "arm": arm.name, "protocol": arm.protocol, "workers": arm.workers,
                "schedule": arm.schedule, "axis": axis, "x": float(x), "n_seeds": len(per),
            }  # fmt: skip
            for key in ("modes_visited", "mode_tv"):
                summary = mean_std_ci([p[key] for p in per])
                row[key] = summary["mean"]
                row[f"{key}_ci_low"] = summary["ci_low"]
                row[f"{key}_ci_high"] = summary["ci_high"]
            rows.append(row)
    return rows


def compared_pairs(summaries: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """``(arm, against)``: per protocol its cyclical arm against its constant arm, then each
    asynchronous cyclical arm against the single cyclical chain."""
    name = {(r["protocol"], r["schedule"]): n for n, r in summaries.items()}
    protocols = list(dict.fromkeys(r["protocol"] for r in summaries.values()))
    pairs = [
        (name[p, "cyclical"], name[p, "constant"])
        for p in protocols
        if (p, "cyclical") in name and (p, "constant") in name
    ]
    single = name.get(("single", "cyclical"))
    pairs += [
        (name[p, "cyclical"], single)
        for p in protocols
        if p != "single" and single is not None and (p, "cyclical") in name
    ]
    return pairs


def comparisons(summaries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each pair of :func:`compared_pairs`, paired by seed, on modes visited and TV;
    ``verdict``: ``better`` / ``worse`` / ``indistinguishable`` for ``arm``."""
    out = []
    for arm, against in compared_pairs(summaries):
        a, b = summaries[arm], summaries[against]
        for metric, higher in COMPARED:
            cmp = paired(
                [s[metric] for s in a["per_seed"]],
                [s[metric] for s in b["per_seed"]],
                higher_is_better=higher,
            )
            overlap = overlaps(summary(a, metric), summary(b, metric))
            out.append(
                {
                    "arm": arm,
                    "against": against,
                    "metric": metric,
                    "verdict": verdict(cmp),
                    "intervals_overlap": overlap,
                    **cmp,
                }
            )
    return out


def settings(params: Params) -> dict[str, Any]:
    """What the metrics file records about the study's settings (and the step budget K)."""
    c = params.sgmcmc.cyclical
    return {
        **c.model_dump(exclude={"seeds"}),
        "chain_steps": chain_steps(c.burn_in, c.thinning, c.samples),
        "modes": PER_SIDE**2,
        "spacing": SPACING,
    }


def run_study(
    params: Params, out_dir: Path, metrics_path: Path, curves_path: Path
) -> dict[str, Any]:
    """Every arm x seed; figure, table and samples under ``out_dir``, the metrics file and the
    curves CSV; returns the metrics. SIGTERM / SIGINT: nothing is written (one line)."""
    try:
        with stop_on_signals():
            return _run_study(params, out_dir, metrics_path, curves_path)
    except Stopped as stop:
        if stop.outputs_complete:
            raise
        raise stop.saying(
            "sgmcmc_cyclical: nothing was written, the previous outputs are as they were"
        ) from None


def _run_study(
    params: Params, out_dir: Path, metrics_path: Path, curves_path: Path
) -> dict[str, Any]:
    c = params.sgmcmc.cyclical
    task = mixture_task(c)
    mixture, radius = task.mixture, c.mode_radius * float(np.sqrt(c.variance))
    configs = {s: engine_config(params, s) for s in dict.fromkeys(c.schedules)}
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        per_seed: dict[str, list[dict[str, Any]]] = {}
        samples: dict[str, list[Samples]] = {}
        for seed in c.seeds:
            for arm in arms(c):
                spec = RunSpec(
                    config=configs[arm.schedule],
                    protocol=arm.protocol,
                    workers=arm.workers,
                    seed=seed,
                    task_factory=task,
                )
                sdir = tmp / "samples" / arm.name / f"seed-{seed}"
                run, s = one_run(spec, sdir, mixture, radius)
                per_seed.setdefault(arm.name, []).append(run)
                samples.setdefault(arm.name, []).append(s)
        summaries = {
            arm.name: {
                "protocol": arm.protocol,
                "workers": arm.workers,
                "schedule": arm.schedule,
                "step_size": configs[arm.schedule].sampler.step_size,
                **aggregate(per_seed[arm.name], SUMMARISED),
            }
            for arm in arms(c)
        }
        everything = [s for runs in samples.values() for s in runs]
        grids = {
            "grads": curve_grid(
                max(r["grads"] for v in per_seed.values() for r in v), c.curve_points
            ),
            "wall_s": curve_grid(
                max(float(s.wall_s.max(initial=0.0)) for s in everything), c.curve_points
            ),
        }
        rows = [r for a in arms(c) for r in arm_curves(a, samples[a.name], grids, mixture, radius)]
        metrics = {
            "settings": settings(params),
            "seeds": list(c.seeds),
            "arms": summaries,
            "comparisons": comparisons(summaries),
        }
        draw_figure(tmp / "mixture.png", mixture, samples, rows, radius)
        (tmp / "table.md").write_text(table_text(metrics))
    with signals_deferred():  # the curves, then the metrics file last
        write_csv(curves_path, CURVE_COLUMNS, rows, cell=_cell)
        write_json(metrics_path, metrics)
    return metrics


def _cell(value: Any) -> str:
    return "" if value is None else csv_cell(value)


def run_cyclical(params: Params, stage: StageItem, track: bool = True) -> dict[str, Any]:
    """The ``sgmcmc_cyclical`` stage's work: the study into the outputs dvc.yaml declares,
    one MLflow run for the stage and one nested run per arm (tags protocol, workers, schedule)."""
    paths = (stage.out, stage.path(".json"), stage.path("_curves.csv"))
    start_forkserver()  # its imports overlap this process's MLflow set-up
    if not track:
        return run_study(params, *paths)
    with tracking.stage_run(params, stage) as parent:
        metrics = run_study(params, *paths)
        tracking.log_result(
            {
                "comparisons": {
                    f"{c['arm']}_vs_{c['against']}.{c['metric']}.diff": c["diff"]["mean"]
                    for c in metrics["comparisons"]
                }
            }
        )
        for name, arm in metrics["arms"].items():
            log_arm(parent, stage, name, arm)
        tracking.log_artifact(stage.out / "mixture.png")
        tracking.log_artifact(stage.out / "table.md")
    return metrics


def log_arm(parent: tracking.StageRun, stage: StageItem, name: str, arm: dict[str, Any]) -> None:
    """One nested MLflow run per arm: its seed-mean metrics and intervals, tagged."""
    tags = {
        "stage": f"{stage.stage}_arm",  # tags.stage = 'sgmcmc_cyclical': the stage run only
        "pipeline_run": parent.tags.get("pipeline_run", ""),
        "protocol": arm["protocol"],
        "workers": str(arm["workers"]),
        "schedule": arm["schedule"],
    }
    link = tracking.start_child(parent, f"{stage.name}/{name}", tags)
    numbers = {k: v for k, v in arm.items() if isinstance(v, int | float) and k != "workers"}
    tracking.log_metrics({k: float(v) for k, v in numbers.items() if v is not None}, link=link)
    tracking.log_params({k: arm[k] for k in ("protocol", "workers", "schedule")}, link=link)
    tracking.end_run(link)
