"""Benchmark: wall-clock time for the BMA of the digits MLP to reach a test accuracy, per protocol.

    .venv/bin/python bench/sgmcmc_speedup.py [--seeds 5] [--quick] [--out bench/results/sgmcmc_speedup.json]

All in one run, on this machine, 1 torch thread per process:

1. ``single`` (W = 1) vs ``sync``, ``downpour``, ``elastic`` with W = 2 (and W = 4, oversubscribed on
   2 cores), each over ``--seeds`` seeds: seconds of sampling (burn-in included, process start-up
   excluded) until the running BMA first reaches 0.95 and 0.97 test accuracy; speedup over
   ``single`` = ratio of the medians; bytes communicated; BMA log-likelihood (mean, median over
   seeds, worst test point).
2. bytes per collected sample of ``downpour`` / ``elastic`` against tau (expected ~ 1/tau).
3. Engine overhead: ``single``'s chain steps/s next to a minimal plain-PyTorch SGHMC loop of the same
   model, interleaved (plain, engine, plain, engine, ...) so that load drifts hit both.
4. Message and gradient times (for the scaling estimate) and a compute-dominated model (hidden
   width 1000): gradient throughput of ``single`` vs ``downpour`` W = 2.

The machine is shared: the load average is recorded before and after every section. Results go to
``bench/results/sgmcmc_speedup.json``; the printout is the summary.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.nn import functional as F

from betamcmc.params import validate_params
from betamcmc.sgmcmc.config import EngineConfig, RunSpec
from betamcmc.sgmcmc.evaluate import evaluate_samples, first_time_at
from betamcmc.sgmcmc.launch import run_local
from betamcmc.sgmcmc.samples import read_samples
from betamcmc.sgmcmc.tasks import DigitsTask, build_task

TARGETS = (0.95, 0.97)


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def make_cfg(**over: Any):
    base = {
        "sampler": {"kind": "sghmc", "step_size": over.pop("step_size", 2e-5), "friction": 0.1},
        "prior_std": 1.0,
        "batch_size": 64,
        "burn_in": over.pop("burn_in", 1000),
        "thinning": over.pop("thinning", 20),
        "samples": over.pop("samples", 100),
        "period": over.pop("period", 10),
        "alpha": over.pop("alpha", 0.5),
        "threads": 1,
        "task": {"kind": "digits", "hidden": over.pop("hidden", 100)},
    }
    base.update(over)
    # every other setting (and every other section) as shipped: params.yaml holds the values
    shipped = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    sg = shipped["sgmcmc"]
    for key, value in base.items():
        sg[key] = {**sg[key], **value} if isinstance(value, dict) else value
    return validate_params(shipped).sgmcmc


def one_run(cfg: Any, protocol: str, workers: int, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sgmcmc-bench-") as d:
        factory = functools.partial(build_task, cfg.task, cfg.batch_size)
        spec = RunSpec(EngineConfig.from_params(cfg), protocol, workers, seed, factory)
        result = run_local(spec, d)
        samples = read_samples(d)
        task = DigitsTask(cfg.task.hidden, cfg.batch_size, cfg.task.test_fraction)
        metrics, series = evaluate_samples(task, samples, points=2)
    out = {
        "seed": seed,
        "wall_s": result.wall_s,
        "grad_evals": result.grad_evals,
        "bytes_total": result.bytes_total,
        "bytes_per_sample": result.bytes_total / max(1, result.samples),
        "messages": result.messages,
        "staleness_mean": result.staleness_mean,
        "accuracy": metrics["accuracy"],
        "log_likelihood": metrics["log_likelihood"],
        "log_likelihood_median": metrics["log_likelihood_median"],
        "log_likelihood_worst": metrics["log_likelihood_worst"],
        "ece": metrics["ece"],
        "per_worker": result.per_worker,
        "chain_steps_per_s": sum(w["steps"] for w in result.per_worker.values()) / result.wall_s,
    }
    for t in TARGETS:
        out[f"time_to_{t}"] = first_time_at(series["bma_accuracy"], series["wall_s"], t)
    return out


def spread(values: list[float | None]) -> dict[str, Any]:
    v = [x for x in values if x is not None]
    if not v:
        return {"median": None, "min": None, "max": None, "reached": 0, "n": len(values)}
    # a seed that never reaches the target counts as +inf in the median
    padded = sorted(v) + [math.inf] * (len(values) - len(v))
    med = statistics.median(padded)
    return {
        "median": None if math.isinf(med) else round(med, 3),
        "min": round(min(v), 3),
        "max": round(max(v), 3),
        "reached": len(v),
        "n": len(values),
    }


def plain_sghmc_steps_per_s(hidden: int, steps: int, seed: int = 0) -> float:
    """The minimal plain-PyTorch SGHMC loop of the same model, data, batch and prior."""
    torch.manual_seed(seed)
    task = DigitsTask(hidden, 64)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10)
    )
    params = list(model.parameters())
    mom = [torch.zeros_like(p) for p in params]
    eta, alpha, n = 2e-5, 0.1, task.n_train
    noise = math.sqrt(2 * alpha * eta)
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(n, (64,), generator=g)
        loss = F.cross_entropy(model(task.x_train[idx]), task.y_train[idx]) * n
        loss = loss + 0.5 * sum((p**2).sum() for p in params)
        for p in params:
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p, v in zip(params, mom, strict=True):
                v.mul_(1 - alpha).add_(p.grad, alpha=-eta).add_(
                    torch.randn(p.shape, generator=g), alpha=noise
                )
                p.add_(v)
    return steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="fewer configurations (smoke run)")
    ap.add_argument("--out", default="bench/results/sgmcmc_speedup.json")
    ap.add_argument("--period", type=int, default=10, help="tau of downpour / elastic")
    ap.add_argument("--step-size", type=float, default=2e-5)
    ap.add_argument("--burn-in", type=int, default=1000)
    ap.add_argument(
        "--items", default="", help="only these items, e.g. single-w1,downpour-w2 (skips 2-4)"
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    seeds = list(range(args.seeds))
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpus": os.cpu_count(),
        "load_start": load(),
    }
    cfg = make_cfg(period=args.period, step_size=args.step_size, burn_in=args.burn_in)
    report["config"] = {
        "model": "MLP 64-100-10",
        "sampler": "sghmc",
        "step_size": cfg.sampler.step_size,
        "friction": cfg.sampler.friction,
        "burn_in": cfg.burn_in,
        "thinning": cfg.thinning,
        "samples": cfg.samples,
        "period": cfg.period,
        "alpha": cfg.alpha,
        "batch_size": cfg.batch_size,
        "prior_std": cfg.prior_std,
    }

    # 3. engine overhead first (least disturbed by our own later runs)
    overhead = []
    probe = make_cfg(burn_in=2000, samples=10, thinning=100)
    for rep in range(3):
        plain = plain_sghmc_steps_per_s(100, 2000, seed=rep)
        eng = one_run(probe, "single", 1, rep)
        overhead.append(
            {
                "plain_steps_per_s": round(plain, 1),
                "single_steps_per_s": round(eng["chain_steps_per_s"], 1),
                "ratio": round(eng["chain_steps_per_s"] / plain, 3),
            }
        )
    report["overhead"] = {
        "runs": overhead,
        "ratio_median": statistics.median(o["ratio"] for o in overhead),
        "load": load(),
    }
    print("engine overhead (single steps/s over plain loop):", overhead)

    # 1. time to target accuracy per protocol
    configs = [("single", 1), ("sync", 2), ("downpour", 2), ("elastic", 2)]
    if not args.quick:
        configs += [("sync", 4), ("downpour", 4), ("elastic", 4)]
    if args.items:
        configs = [(i.split("-w")[0], int(i.split("-w")[1])) for i in args.items.split(",")]
    runs: dict[str, list[dict[str, Any]]] = {f"{p}-w{w}": [] for p, w in configs}
    for seed in seeds:  # seeds outermost: slow drifts of the machine's load spread over configs
        for p, w in configs:
            runs[f"{p}-w{w}"].append(one_run(cfg, p, w, seed))
        print(f"seed {seed} done, load {load()}", flush=True)
    summary: dict[str, Any] = {}
    for key, rs in runs.items():
        s = {f"time_to_{t}": spread([r[f"time_to_{t}"] for r in rs]) for t in TARGETS}
        s.update(
            {
                "accuracy_median": statistics.median(r["accuracy"] for r in rs),
                "log_likelihood_mean_median": statistics.median(r["log_likelihood"] for r in rs),
                "log_likelihood_median_median": statistics.median(
                    r["log_likelihood_median"] for r in rs
                ),
                "log_likelihood_worst_min": min(r["log_likelihood_worst"] for r in rs),
                "ece_median": statistics.median(r["ece"] for r in rs),
                "bytes_per_sample_median": statistics.median(r["bytes_per_sample"] for r in rs),
                "grad_evals_per_s_median": statistics.median(
                    r["grad_evals"] / r["wall_s"] for r in rs
                ),
                "staleness_median": statistics.median(r["staleness_mean"] or 0.0 for r in rs),
            }
        )
        summary[key] = s
    base = summary["single-w1"]
    for s in summary.values():
        for t in TARGETS:
            b, m = base[f"time_to_{t}"]["median"], s[f"time_to_{t}"]["median"]
            s[f"speedup_{t}"] = round(b / m, 3) if b and m else None
            s[f"time_ratio_{t}"] = round(m / b, 3) if b and m else None
    report["protocols"] = {"summary": summary, "runs": runs, "load": load()}

    comm: list[dict[str, Any]] = []
    big_runs: dict[str, Any] = {}
    if not args.items:
        # 2. communication vs tau
        taus = [5, 10, 20, 40] if not args.quick else [5, 20]
        comm = []
        for p in ("downpour", "elastic"):
            for tau in taus:
                r = one_run(make_cfg(period=tau), p, 2, 0)
                comm.append(
                    {
                        "protocol": p,
                        "tau": tau,
                        "bytes_per_sample": r["bytes_per_sample"],
                        "messages": r["messages"],
                        "time_to_0.95": r["time_to_0.95"],
                        "time_to_0.97": r["time_to_0.97"],
                        "accuracy": r["accuracy"],
                    }
                )
        report["communication_vs_tau"] = {"runs": comm, "load": load()}

        # 4. message / gradient times and the compute-dominated model
        big = make_cfg(hidden=1000, burn_in=600, samples=20, thinning=20, step_size=1e-5)
        big_runs = {}
        for p, w in [("single", 1), ("downpour", 2), ("sync", 2)]:
            r = one_run(big, p, w, 0)
            big_runs[f"{p}-w{w}"] = {
                k: r[k]
                for k in (
                    "wall_s",
                    "grad_evals",
                    "accuracy",
                    "time_to_0.95",
                    "time_to_0.97",
                    "bytes_per_sample",
                )
            }
            big_runs[f"{p}-w{w}"]["grad_evals_per_s"] = r["grad_evals"] / r["wall_s"]
            big_runs[f"{p}-w{w}"]["per_worker"] = r["per_worker"]
        report["hidden1000"] = {"runs": big_runs, "load": load()}
        d100 = runs["downpour-w2"][0]["per_worker"]["1"]
        report["timing"] = {
            "grad_ms_hidden100": round(
                1e3 / statistics.median(o["plain_steps_per_s"] for o in overhead), 4
            ),
            "downpour_w2_comm_ms_per_message": round(
                1e3 * d100["comm_s"] / max(1, d100["messages_to_master"]), 4
            ),
        }
    report["load_end"] = load()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=float) + "\n")

    print(
        f"\nload before {report['load_start']}, after {report['load_end']} on {report['cpus']} CPUs"
    )
    print(
        f"{'item':<13}{'t0.95 med [min,max] (reached)':<36}{'t0.97 med [min,max] (reached)':<36}{'x0.95':>7}{'x0.97':>7}{'acc':>7}{'LL':>8}{'LLmed':>8}{'worst':>8}{'KB/smp':>8}"
    )
    for key, s in summary.items():
        cells = [
            "{median} [{min},{max}] ({reached}/{n})".format(**s[f"time_to_{t}"]) for t in TARGETS
        ]
        print(
            f"{key:<13}{cells[0]:<36}{cells[1]:<36}{str(s['speedup_0.95']):>7}{str(s['speedup_0.97']):>7}"
            f"{s['accuracy_median']:>7.3f}{s['log_likelihood_mean_median']:>8.3f}"
            f"{s['log_likelihood_median_median']:>8.4f}{s['log_likelihood_worst_min']:>8.2f}"
            f"{s['bytes_per_sample_median'] / 1e3:>8.0f}"
        )
    print(
        "communication vs tau:",
        [(c["protocol"], c["tau"], round(c["bytes_per_sample"] / 1e3, 1)) for c in comm],
    )
    print(
        "hidden 1000 grad evals/s:",
        {k: round(v["grad_evals_per_s"], 1) for k, v in big_runs.items()},
    )
    print("timing:", report.get("timing"), "overhead median:", report["overhead"]["ratio_median"])


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
