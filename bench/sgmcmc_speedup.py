"""Benchmark: time for the BMA of an MLP to reach a test accuracy, per protocol and worker count,
and the costs behind it (issue 13 items 3-5).

    .venv/bin/python bench/sgmcmc_speedup.py [--seeds 5] [--quick] [--require-quiet]
                                             [--out bench/results/sgmcmc_speedup.json]

Everything in one run, 1 torch thread per process, ``OMP_WAIT_POLICY=PASSIVE``:

1. **digits** (MLP 64-100-10, SGHMC eta 2e-5, friction 0.1, batch 64, N(0, 1) prior, burn-in
   1,000, thinning 20, 100 samples, tau 10, overlap on): ``single`` W = 1 against downpour, elastic
   and sync with W = 1, 2, 4, downpour W = 2 with tau 5 and with ``staleness: inverse``, elastic
   W = 2 with alpha 0.1 (weaker coupling: the centre pulls less on each chain's burn-in) and with
   tau 40 (a quarter of the exchanges; the elastic chains tolerate a long period), and
   downpour W = 4 with the staleness-aware step sizes (``staleness: inverse``,
   ``inverse_square``); seeds outermost so that load drifts spread over the items. Per item:
   seconds of sampling (burn-in included, process start-up excluded) until the running BMA first
   reaches 0.95 / 0.97 (median [min, max] over seeds, a miss counts as infinite), the ratio of
   medians to ``single``, BMA accuracy, test log-likelihood (mean; median point; worst point),
   ECE, gradients/s, staleness, master time per message, KB per sample.
2. **compute-dominated** (hidden 1,000, 75k parameters, eta 1e-5, burn-in 600, 40 samples):
   single W = 1 vs downpour and elastic W = 2 (elastic also with tau 40).
3. **timings for the scaling model** (``bench/sgmcmc_scaling.py``): gradient time of each model
   in a plain loop, a message round trip (ping-pong of the engine's message between two processes
   over gloo on loopback), the master's time per message and the staleness from the runs.
4. **engine overhead**: ``single``'s steps/s over a minimal plain-PyTorch SGHMC loop, interleaved.

The machine facts and GEMM peak probes (``bench/machine.py``: median of 7 calls at 1 thread, and
the CPU time other processes used meanwhile) go into the JSON: a probe before, between the
sections and after; a run during which other processes used the CPU is marked
``"quiet": false`` (and not written at all with ``--require-quiet``). The targets of issue 13 live
here and in the JSON (``targets``), never in the test suite.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from torch.nn import functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import facts, foreign_load, gemm_peak, loadavg  # noqa: E402

from betamcmc.params import validate_params  # noqa: E402
from betamcmc.sgmcmc.engine.config import RunSpec  # noqa: E402
from betamcmc.sgmcmc.engine.launch import run_local  # noqa: E402
from betamcmc.sgmcmc.engine.samples import read_samples  # noqa: E402
from betamcmc.sgmcmc.evaluate import evaluate_samples, first_time_at  # noqa: E402
from betamcmc.sgmcmc.experiment import engine_config  # noqa: E402
from betamcmc.sgmcmc.tasks import DigitsTask, build_task  # noqa: E402

TARGETS = (0.95, 0.97)
THREADS = 1
DIGITS = {"hidden": 100, "step_size": 2e-5, "burn_in": 1000, "thinning": 20, "samples": 100}
WIDE = {"hidden": 1000, "step_size": 1e-5, "burn_in": 600, "thinning": 20, "samples": 40}
# (name, protocol, W, engine overrides)
DIGITS_ITEMS: list[tuple[str, str, int, dict[str, Any]]] = [
    ("single-w1", "single", 1, {}),
    ("downpour-w1", "downpour", 1, {}),
    ("downpour-w2", "downpour", 2, {}),
    ("downpour-w2-tau5", "downpour", 2, {"period": 5}),
    ("downpour-w2-inverse", "downpour", 2, {"staleness": "inverse"}),
    ("elastic-w2", "elastic", 2, {}),
    ("elastic-w2-alpha0.1", "elastic", 2, {"alpha": 0.1}),
    ("elastic-w2-tau40", "elastic", 2, {"period": 40}),
    ("sync-w2", "sync", 2, {}),
    ("downpour-w4", "downpour", 4, {}),
    ("downpour-w4-inverse", "downpour", 4, {"staleness": "inverse"}),
    ("downpour-w4-inverse_square", "downpour", 4, {"staleness": "inverse_square"}),
    ("elastic-w4", "elastic", 4, {}),
]
WIDE_ITEMS = [("single-w1", "single", 1, {}), ("downpour-w2", "downpour", 2, {}),
              ("elastic-w2", "elastic", 2, {}),
              ("elastic-w2-tau40", "elastic", 2, {"period": 40})]  # fmt: skip
QUICK = {"single-w1", "downpour-w2", "elastic-w2", "downpour-w4-inverse_square"}


SHIPPED = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())


def spec_for(model: dict[str, Any], protocol: str, workers: int, seed: int, **over: Any) -> RunSpec:
    """The benchmark's settings over the shipped params.yaml (which holds every other value)."""
    shipped = json.loads(json.dumps(SHIPPED))
    sg = shipped["sgmcmc"]
    sg["sampler"].update(kind="sghmc", step_size=model["step_size"], friction=0.1,
                         temperature=1.0, decay=0.0)  # fmt: skip
    sg.update(prior_std=1.0, batch_size=64, burn_in=model["burn_in"], thinning=model["thinning"],
              samples=model["samples"], period=over.pop("period", 10),
              overlap=True, staleness="none", straggler_delay=0.0)  # fmt: skip
    sg["task"].update(kind="digits", hidden=model["hidden"])
    shipped["runtime"]["threads"] = THREADS
    params = validate_params(shipped)
    sg = params.sgmcmc
    config = engine_config(params).replace(**over)
    factory = functools.partial(build_task, sg.task, sg.batch_size)
    return RunSpec(config, protocol, workers, seed, factory)


def one_run(spec: RunSpec) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sgmcmc-bench-") as d:
        result = run_local(spec, d)
        metrics, series = evaluate_samples(spec.make_task(), read_samples(d), points=2)
    messages = sum(w["messages_to_master"] for w in result.per_worker.values())
    out = {
        "seed": spec.seed,
        "wall_s": result.wall_s,
        "grad_evals": result.grad_evals,
        "grad_evals_per_s": result.grad_evals / result.wall_s,
        "bytes_per_sample": result.bytes_total / max(1, result.samples),
        "messages_to_master": messages,
        "master_ms_per_message": 1e3 * result.master_busy_s / max(1, messages),
        "staleness_mean": result.staleness_mean,
        "accuracy": metrics["accuracy"],
        "log_likelihood": metrics["log_likelihood"],
        "log_likelihood_median": metrics["log_likelihood_median"],
        "log_likelihood_worst": metrics["log_likelihood_worst"],
        "ece": metrics["ece"],
        "per_worker": result.per_worker,
        "dead": result.dead,
    }
    for t in TARGETS:
        out[f"time_to_{t}"] = first_time_at(series["bma_accuracy"], series["wall_s"], t)
        out[f"grads_to_{t}"] = first_time_at(series["bma_accuracy"], series["grad_evals"], t)
    return out


def spread(values: list[float | None]) -> dict[str, Any]:
    """Median (a seed that never reaches the target counts as +inf), min, max, how many reached."""
    v = [x for x in values if x is not None]
    padded = sorted(v) + [math.inf] * (len(values) - len(v))
    med = statistics.median(padded) if padded else math.inf
    return {
        "median": None if math.isinf(med) else round(med, 4),
        "min": round(min(v), 4) if v else None,
        "max": round(max(v), 4) if v else None,
        "reached": len(v),
        "n": len(values),
    }


def _median_of(rs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in rs)


def summarize(runs: dict[str, list[dict[str, Any]]], base: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, rs in runs.items():
        med = functools.partial(_median_of, rs)
        s: dict[str, Any] = {
            f"time_to_{t}": spread([r[f"time_to_{t}"] for r in rs]) for t in TARGETS
        }
        s["grads_to_0.95"] = spread([r["grads_to_0.95"] for r in rs])
        s.update(
            accuracy_median=med("accuracy"),
            log_likelihood_median_over_seeds=med("log_likelihood"),
            log_likelihood_per_seed=[round(r["log_likelihood"], 4) for r in rs],
            log_likelihood_point_median=med("log_likelihood_median"),
            log_likelihood_worst_min=min(r["log_likelihood_worst"] for r in rs),
            ece_median=med("ece"),
            grad_evals_per_s_median=round(med("grad_evals_per_s"), 1),
            kb_per_sample_median=round(med("bytes_per_sample") / 1e3, 2),
            master_ms_per_message_median=round(med("master_ms_per_message"), 4),
            staleness_median=statistics.median(r["staleness_mean"] or 0.0 for r in rs),
            lost_workers=sum(len(r["dead"]) for r in rs),
        )
        out[key] = s
    b = out[base]
    for s in out.values():
        for t in TARGETS:
            bm, m = b[f"time_to_{t}"]["median"], s[f"time_to_{t}"]["median"]
            s[f"time_ratio_{t}"] = round(m / bm, 3) if bm and m else None
        s["log_likelihood_gap"] = round(
            s["log_likelihood_median_over_seeds"] - b["log_likelihood_median_over_seeds"], 4
        )
        s["accuracy_gap"] = round(s["accuracy_median"] - b["accuracy_median"], 4)
    return out


def run_items(
    model: dict[str, Any], items: list[tuple[str, str, int, dict[str, Any]]], seeds: list[int]
) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, *_ in items}
    for seed in seeds:  # seeds outermost: slow drifts of the machine's load spread over the items
        for name, protocol, workers, over in items:
            runs[name].append(one_run(spec_for(model, protocol, workers, seed, **dict(over))))
        print(f"  seed {seed} done, load {os.getloadavg()[0]:.2f}", flush=True)
    return runs


# --------------------------------------------------------------------------- timings
def plain_sghmc_steps_per_s(hidden: int, steps: int, seed: int = 0) -> float:
    """A minimal plain-PyTorch SGHMC loop of the same model, data, batch and prior."""
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


def _pingpong_worker(init: str, dim: int, rounds: int, out: Any) -> None:
    import datetime

    import torch.distributed as dist

    from betamcmc.sgmcmc.engine import wire

    torch.set_num_threads(1)
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    dist.init_process_group("gloo", init_method=init, rank=1, world_size=2,
                            timeout=datetime.timedelta(seconds=120))  # fmt: skip
    msg, inbox, times = wire.Message(dim), wire.Message(dim), []
    for i in range(rounds):
        t0 = time.perf_counter()
        inbox.expect()
        sent = dist.isend(msg.write(wire.PUSH, (i,)), dst=0)
        got = dist.irecv(inbox.tensor, src=0)
        while not inbox.arrived():  # the engine's way: poll the stamp, then complete
            pass
        got.wait()
        sent.wait()
        times.append(time.perf_counter() - t0)
    out.put(times)
    dist.destroy_process_group()


def message_round_trip_ms(dim: int, rounds: int = 300) -> dict[str, float]:
    """Median round trip of one engine message each way between two processes (gloo, loopback):
    the worker isends and polls for the reply, the master receives from it and isends back (on
    its main thread: the wire alone, without the engine's hand-over from a receive thread)."""
    import datetime

    import torch.distributed as dist
    import torch.multiprocessing as mp

    from betamcmc.sgmcmc.engine import wire

    store = tempfile.mkdtemp(prefix="pingpong-")
    init = f"file://{store}/store"
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_pingpong_worker, args=(init, dim, rounds, q))
    p.start()
    try:
        os.environ["GLOO_SOCKET_IFNAME"] = "lo"
        dist.init_process_group("gloo", init_method=init, rank=0, world_size=2,
                                timeout=datetime.timedelta(seconds=120))  # fmt: skip
        inbox, reply = wire.Message(dim), wire.Message(dim)
        for _ in range(rounds):
            work = dist.irecv(inbox.tensor, src=1)
            work.wait()
            dist.isend(reply.write(wire.PARAMS, (0, 0), inbox.payload), dst=1).wait()
        times = q.get(timeout=60)
        p.join(timeout=30)
        dist.destroy_process_group()
    finally:
        if p.is_alive():
            p.kill()
            p.join(timeout=5)
        shutil.rmtree(store, ignore_errors=True)
    warm = sorted(times[rounds // 10 :])
    return {
        "dim": dim,
        "kb": round((dim + wire.HEADER + wire.TRAILER) * 4 / 1e3, 1),
        "median_ms": round(1e3 * statistics.median(warm), 4),
        "p90_ms": round(1e3 * warm[int(0.9 * len(warm))], 4),
        "rounds": rounds,
    }


def probe() -> dict[str, Any]:
    """A GEMM peak sample at the benchmark's thread count, with the load average."""
    return {**gemm_peak(THREADS), "loadavg": loadavg(), "at": time.strftime("%H:%M:%S")}


def start_report(
    seeds: list[int], config: dict[str, Any]
) -> tuple[list[float], list[dict[str, Any]], dict[str, Any]]:
    """Start a benchmark run: THREADS torch threads here, the load average, the first GEMM probe
    and the report's head (start time, machine facts, seeds, config)."""
    torch.set_num_threads(THREADS)
    start_load = loadavg()
    probes = [probe()]
    report = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {**facts(), "threads_per_process": THREADS},
        "seeds": seeds,
        "config": config,
    }
    return start_load, probes, report


def verdict(probes: list[dict[str, Any]], start_load: list[float]) -> dict[str, Any]:
    """Quiet machine? ``machine.foreign_load`` on the first and last probe (and on each pair of
    neighbours), the load average at the start."""
    reasons = foreign_load(probes[0], probes[-1], start_load)
    for a, b in zip(probes, probes[1:], strict=False):
        reasons += [r for r in foreign_load(a, b) if r not in reasons]
    return {
        "quiet": not reasons,
        "reasons": reasons,
        "gemm_gflops_median": round(statistics.median(p["gflops"] for p in probes), 2),
        "foreign_cores": [p["foreign_cores"] for p in probes],
        "start_loadavg": start_load,
    }


def targets(digits: dict[str, Any], wide: dict[str, Any]) -> dict[str, Any]:
    """Issue 13 item 3, evaluated on this run's medians."""

    def check(value: float | None, limit: float, below: bool = True) -> dict[str, Any]:
        met = value is not None and (value <= limit if below else value >= limit)
        return {"value": value, "target": limit, "met": bool(met)}

    d, w = digits, wide
    w4 = d.get("downpour-w4-inverse_square", {})
    return {
        "digits downpour W=2 time to 0.95 / single (<=)": check(
            d["downpour-w2"]["time_ratio_0.95"], 0.75
        ),
        "hidden-1000 downpour W=2 time to 0.95 / single (<=)": check(
            w["downpour-w2"]["time_ratio_0.95"], 0.6
        ),
        "digits elastic W=2 time to 0.95 / single (<=)": check(
            d["elastic-w2"]["time_ratio_0.95"], 1.0
        ),
        "digits elastic W=2, tau 40, time to 0.95 / single (<=)": check(
            d.get("elastic-w2-tau40", {}).get("time_ratio_0.95"), 1.0
        ),
        "digits downpour W=4 staleness-aware: seeds reaching 0.95 (all)": {
            "value": w4.get("time_to_0.95", {}).get("reached"),
            "target": w4.get("time_to_0.95", {}).get("n"),
            "met": bool(w4) and w4["time_to_0.95"]["reached"] == w4["time_to_0.95"]["n"],
        },
        "digits downpour W=2 accuracy gap to single (>=)": check(
            d["downpour-w2"]["accuracy_gap"], -0.01, below=False
        ),
        "digits downpour W=2 log-likelihood gap to single (>=)": check(
            d["downpour-w2"]["log_likelihood_gap"], -0.02, below=False
        ),
        "digits downpour W=4 staleness-aware log-likelihood gap (>=)": check(
            w4.get("log_likelihood_gap"), -0.02, below=False
        ),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="fewer items and seeds (a smoke run)")
    ap.add_argument("--require-quiet", action="store_true",
                    help="refuse to write results when the GEMM probes saw foreign load")  # fmt: skip
    ap.add_argument("--out", default="bench/results/sgmcmc_speedup.json")
    args = ap.parse_args()
    seeds = list(range(2 if args.quick else args.seeds))
    config = {"digits": DIGITS, "wide": WIDE, "sampler": "sghmc", "friction": 0.1,
              "batch_size": 64, "prior_std": 1.0, "period": 10, "overlap": True}  # fmt: skip
    start_load, probes, report = start_report(seeds, config)
    print(f"machine: {report['machine']['cpu_model']}, {report['machine']['cpu_count']} CPUs; "
          f"GEMM {probes[0]['gflops']:.1f} GFLOP/s, foreign load {probes[0]['foreign_cores']} "
          f"cores, load {start_load}", flush=True)  # fmt: skip

    print("4. engine overhead", flush=True)
    overhead = []
    for rep in range(3):  # interleaved: plain, engine, plain, engine, ...
        plain = plain_sghmc_steps_per_s(100, 2000, seed=rep)
        short = {**DIGITS, "burn_in": 2000, "samples": 10, "thinning": 100}
        eng = one_run(spec_for(short, "single", 1, rep))
        steps = eng["per_worker"]["1"]["steps"] / eng["wall_s"]
        overhead.append({"plain_steps_per_s": round(plain, 1), "single_steps_per_s": round(steps, 1),
                         "ratio": round(steps / plain, 3)})  # fmt: skip
    report["overhead"] = {
        "runs": overhead,
        "ratio_median": statistics.median(o["ratio"] for o in overhead),
    }

    items = [i for i in DIGITS_ITEMS if not args.quick or i[0] in QUICK]
    print(f"1. digits: {[i[0] for i in items]} x seeds {seeds}", flush=True)
    digits_runs = run_items(DIGITS, items, seeds)
    digits = summarize(digits_runs, "single-w1")
    probes.append(probe())

    print(f"2. hidden 1000: {[i[0] for i in WIDE_ITEMS]} x seeds {seeds}", flush=True)
    wide_runs = run_items(WIDE, WIDE_ITEMS, seeds)
    wide = summarize(wide_runs, "single-w1")
    probes.append(probe())

    print("3. timings", flush=True)
    dims = {"digits": 64 * 100 + 100 + 100 * 10 + 10, "wide": 64 * 1000 + 1000 + 1000 * 10 + 10}
    timing = {
        "grad_ms": {
            "digits": round(1e3 / statistics.median(o["plain_steps_per_s"] for o in overhead), 4),
            "wide": round(1e3 / plain_sghmc_steps_per_s(1000, 600), 4),
        },
        "round_trip": {k: message_round_trip_ms(d) for k, d in dims.items()},
        "dims": dims,
    }
    report["timing"] = timing
    probes.append(probe())

    report["digits"] = {"summary": digits, "runs": digits_runs}
    report["wide"] = {"summary": wide, "runs": wide_runs}
    report["targets"] = targets(digits, wide)
    report["probes"] = probes
    report["machine_quiet"] = verdict(probes, start_load)
    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")

    for title, summary in (("digits (hidden 100)", digits), ("hidden 1000", wide)):
        print(f"\n{title}: item, t0.95 median [min, max] (reached), ratio, t0.97 (reached), acc, "
              "LL mean (median over seeds), LL gap, grads/s, staleness, master ms/msg")  # fmt: skip
        for key, s in summary.items():
            a, b = s["time_to_0.95"], s["time_to_0.97"]
            print(f"  {key:<20} {a['median']} [{a['min']}, {a['max']}] ({a['reached']}/{a['n']})"
                  f"  x{s['time_ratio_0.95']}  {b['median']} ({b['reached']}/{b['n']})"
                  f"  {s['accuracy_median']:.4f}  {s['log_likelihood_median_over_seeds']:.4f}"
                  f"  {s['log_likelihood_gap']:+.4f}  {s['grad_evals_per_s_median']:.0f}"
                  f"  {s['staleness_median']:.2f}  {s['master_ms_per_message_median']:.3f}")  # fmt: skip
    print("\ntimings:", json.dumps(timing))
    print("overhead (single / plain loop steps/s):", report["overhead"]["ratio_median"])
    print("targets:")
    for name, t in report["targets"].items():
        print(f"  {'met ' if t['met'] else 'MISS'} {name}: {t['value']} (target {t['target']})")
    q = report["machine_quiet"]
    print(f"machine quiet: {q['quiet']} {q['reasons']}; GEMM probes "
          f"{[round(p['gflops'], 1) for p in probes]} GFLOP/s, foreign cores "
          f"{[p['foreign_cores'] for p in probes]}")  # fmt: skip
    if args.require_quiet and not q["quiet"]:
        print("refused: the machine was not quiet (--require-quiet); nothing written")
        return 3
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=float) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
