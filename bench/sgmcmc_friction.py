"""Benchmark: where downpour's calibration loss at W = 2 comes from (issue 13 item 3).

    .venv/bin/python bench/sgmcmc_friction.py [--seeds 5] [--repeats 2]
                                              [--out bench/results/sgmcmc_friction.json]

``bench/sgmcmc_speedup.py`` finds downpour W = 2 faster than ``single`` to BMA accuracy 0.95 on
the digits MLP but 0.06 nats worse in mean test log-likelihood. Two explanations are told apart
here, on the same task and settings (SGHMC eta 2e-5, burn-in 1,000, thinning 20, 100 samples,
tau 10, overlap on, 1 thread per process):

1. **The pooled momenta.** Each downpour worker keeps its own SGHMC momentum and pushes the
   displacement of its tau steps; ignoring staleness, W workers with step eta and friction a make
   the master's chain an SGHMC chain with step eta / W and friction a / W per chain step (the
   master's velocity is the mean of the W workers'). Item ``single-w1-eta/2-a/2`` runs that chain
   on one process: if it loses the log-likelihood, the pooling explains the gap.
2. **Momentum x staleness.** Asynchrony acts like extra momentum (Mitliagkas et al. 2016); with
   little friction (momentum 0.9) stale pushes overshoot. Items ``single-f<a>`` and
   ``downpour-w2-f<a>`` repeat single and downpour W = 2 at frictions a = 0.1, 0.4, 0.8 (the
   same for both arms): if the gap shrinks as the friction grows, the interaction explains it.

Per item and repeat: median over seeds of the seconds to BMA 0.95 (burn-in included), the ratio
to ``single`` at the same friction, accuracy, mean test log-likelihood and its gap to ``single``
at the same friction and to the default ``single`` (friction 0.1), ECE. GEMM probes and machine
facts as in ``sgmcmc_speedup.py``; a run with foreign load is marked ``"quiet": false``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from machine import loadavg
from sgmcmc_speedup import (
    DIGITS,
    one_run,
    probe,
    spec_for,
    start_report,
    summarize,
    verdict,
)

ETA = DIGITS["step_size"]
FRICTIONS = (0.1, 0.4, 0.8)
# (name, protocol, W, step size, friction)
ITEMS: list[tuple[str, str, int, float, float]] = [
    ("single-w1-eta/2-a/2", "single", 1, ETA / 2, 0.05),
    *[(f"single-f{a}", "single", 1, ETA, a) for a in FRICTIONS],
    *[(f"downpour-w2-f{a}", "downpour", 2, ETA, a) for a in FRICTIONS],
]


def run_repeat(seeds: list[int]) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, *_ in ITEMS}
    for seed in seeds:  # seeds outermost: slow load drifts spread over the items
        for name, protocol, workers, eta, friction in ITEMS:
            spec = spec_for(DIGITS, protocol, workers, seed)
            config = spec.config.with_sampler(step_size=eta, friction=friction)
            runs[name].append(one_run(dataclasses.replace(spec, config=config)))
        print(f"  seed {seed} done, load {loadavg()[0]:.2f}", flush=True)
    summary = summarize(runs, "single-f0.1")
    for a in FRICTIONS:  # downpour against single at the same friction
        d, s = summary[f"downpour-w2-f{a}"], summary[f"single-f{a}"]
        dt, st = d["time_to_0.95"]["median"], s["time_to_0.95"]["median"]
        d["time_ratio_same_friction"] = round(dt / st, 3) if dt and st else None
        d["log_likelihood_gap_same_friction"] = round(
            d["log_likelihood_median_over_seeds"] - s["log_likelihood_median_over_seeds"], 4
        )
    return {"summary": summary, "runs": runs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default="bench/results/sgmcmc_friction.json")
    args = ap.parse_args()
    seeds = list(range(args.seeds))
    config = {**DIGITS, "frictions": FRICTIONS, "period": 10, "overlap": True}
    start_load, probes, report = start_report(seeds, config)
    report["repeats"] = []
    for r in range(args.repeats):
        print(f"repeat {r + 1}/{args.repeats}: {[i[0] for i in ITEMS]} x seeds {seeds}", flush=True)
        report["repeats"].append(run_repeat(seeds))
        probes.append(probe())
    report["probes"] = probes
    report["machine_quiet"] = verdict(probes, start_load)
    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")

    print("\nitem: t0.95 median (reached), ratio to single-f0.1, ratio to single at the same "
          "friction, acc, LL mean, gap to single-f0.1, gap at the same friction, ECE")  # fmt: skip
    for r, rep in enumerate(report["repeats"]):
        print(f"repeat {r + 1}")
        for key, s in rep["summary"].items():
            t = s["time_to_0.95"]
            print(f"  {key:<20} {t['median']} ({t['reached']}/{t['n']})  x{s['time_ratio_0.95']}"
                  f"  x{s.get('time_ratio_same_friction', '-')}  {s['accuracy_median']:.4f}"
                  f"  {s['log_likelihood_median_over_seeds']:.4f}  {s['log_likelihood_gap']:+.4f}"
                  f"  {s.get('log_likelihood_gap_same_friction', '-')}  {s['ece_median']:.3f}")  # fmt: skip
    q = report["machine_quiet"]
    print(f"machine quiet: {q['quiet']} {q['reasons']}; GEMM probes "
          f"{[round(p['gflops'], 1) for p in probes]} GFLOP/s")  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1, default=float) + "\n")
    tmp.replace(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
