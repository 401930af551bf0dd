"""Benchmark: where downpour's calibration loss at W = 2 comes from, and a remedy (issue 13 item 3).

    .venv/bin/python bench/sgmcmc_friction.py [--study friction|decay|elastic] [--seeds 5] [--repeats 2]
                                              [--out bench/results/sgmcmc_<study>.json]

``bench/sgmcmc_speedup.py`` finds downpour W = 2 faster than ``single`` to BMA accuracy 0.95 on
the digits MLP but 0.06 nats worse in mean test log-likelihood. On the same task and settings
(SGHMC eta 2e-5, burn-in 1,000, thinning 20, 100 samples, tau 10, overlap on, 1 thread per
process) two studies:

``--study friction`` tells two explanations apart:

1. **The pooled momenta.** Each downpour worker keeps its own SGHMC momentum and pushes the
   displacement of its tau steps; ignoring staleness, W workers with step eta and friction a make
   the master's chain an SGHMC chain with step eta / W and friction a / W per chain step (the
   master's velocity is the mean of the W workers'). Item ``single-w1-eta/2-a/2`` runs that chain
   on one process: if it loses the log-likelihood, the pooling explains the gap.
2. **Momentum x staleness.** Asynchrony acts like extra momentum (Mitliagkas et al. 2016); with
   little friction (momentum 0.9) stale pushes overshoot. Items ``single-f<a>`` and
   ``downpour-w2-f<a>`` repeat single and downpour W = 2 at frictions a = 0.1, 0.4, 0.8 (the
   same for both arms): if the gap shrinks as the friction grows, the interaction explains it.

``--study decay`` tries the polynomial step-size decay ``eta_t = eta (1 + t / s)^-g`` (Teh et al.
2016; ``sampler.decay`` = g, ``sampler.decay_steps`` = s) at friction 0.1: a step that shrinks
as the chain goes shrinks the stale pushes' overshoot too. ``t`` counts each process's own steps,
so downpour W = 2 with ``s`` decays per chain step like ``single`` with ``2 s``: items
``downpour-w2-d1-500`` and ``single-d1-1000`` (and ``downpour-w2-d1-250``, ``single-d1-500``)
follow the same step-size curve against chain steps.

``--study elastic`` repeats ``single`` against elastic (and downpour) W = 2 at the default
settings, many times in one run: elastic's time to 0.95 sits near single's (each chain pays its own
burn-in), so one 5-seed run cannot say on which side; the repeats give the spread of the ratio.
Items ``elastic-w2-tau20`` and ``-tau40`` exchange every 20 / 40 steps instead of 10 (the
chains' coupling is weaker per step, the messages half / a quarter as many).

Per item and repeat: median over seeds of the seconds to BMA 0.95 (burn-in included), the ratio
to the default ``single`` (``single-f0.1``) and to its ``same``-settings single (same friction,
or the same step-size curve), accuracy, mean test log-likelihood and its gaps to both, ECE. GEMM
probes and machine facts as in ``sgmcmc_speedup.py``; a run with foreign load is marked
``"quiet": false``.
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
BASE = "single-f0.1"  # the default single chain (friction 0.1, constant step)
Item = tuple[str, str, int, dict[str, Any]]  # (name, protocol, W, sampler or engine overrides)
ENGINE_KEYS = ("period", "alpha")  # overrides of the engine, not of the sampler
STUDIES: dict[str, tuple[list[Item], dict[str, str]]] = {
    # items, and for each downpour item its single chain with the same settings
    "friction": (
        [
            ("single-w1-eta/2-a/2", "single", 1, {"step_size": ETA / 2, "friction": 0.05}),
            *[(f"single-f{a}", "single", 1, {"friction": a}) for a in FRICTIONS],
            *[(f"downpour-w2-f{a}", "downpour", 2, {"friction": a}) for a in FRICTIONS],
        ],
        {f"downpour-w2-f{a}": f"single-f{a}" for a in FRICTIONS},
    ),
    "decay": (
        [
            (BASE, "single", 1, {}),
            ("downpour-w2-f0.1", "downpour", 2, {}),
            *[(f"single-d1-{s}", "single", 1, {"schedule": "decay", "decay": 1.0, "decay_steps": s}) for s in (500, 1000)],
            *[(f"downpour-w2-d1-{s}", "downpour", 2, {"schedule": "decay", "decay": 1.0, "decay_steps": s})
              for s in (125, 250, 500)],
            *[(f"downpour-w4-d1-{s}", "downpour", 4, {"schedule": "decay", "decay": 1.0, "decay_steps": s})
              for s in (60, 125)],
        ],
        {"downpour-w2-f0.1": BASE, "downpour-w2-d1-250": "single-d1-500",
         "downpour-w2-d1-500": "single-d1-1000", "downpour-w4-d1-125": "single-d1-500"},
    ),
    "elastic": (
        [(BASE, "single", 1, {}), ("elastic-w2", "elastic", 2, {}),
         *[(f"elastic-w2-tau{t}", "elastic", 2, {"period": t}) for t in (20, 40)],
         ("downpour-w2-f0.1", "downpour", 2, {})],
        {"elastic-w2": BASE, "downpour-w2-f0.1": BASE},
    ),
}  # fmt: skip


def run_repeat(seeds: list[int], items: list[Item], same: dict[str, str]) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, *_ in items}
    for seed in seeds:  # seeds outermost: slow load drifts spread over the items
        for name, protocol, workers, overrides in items:
            engine = {k: v for k, v in overrides.items() if k in ENGINE_KEYS}
            sampler = {k: v for k, v in overrides.items() if k not in ENGINE_KEYS}
            spec = spec_for(DIGITS, protocol, workers, seed, **engine)
            config = spec.config.with_sampler(**sampler)
            runs[name].append(one_run(dataclasses.replace(spec, config=config)))
        print(f"  seed {seed} done, load {loadavg()[0]:.2f}", flush=True)
    summary = summarize(runs, BASE)
    for name, ref in same.items():  # downpour against single with the same settings
        d, s = summary[name], summary[ref]
        dt, st = d["time_to_0.95"]["median"], s["time_to_0.95"]["median"]
        d["same_settings_single"] = ref
        d["time_ratio_same_settings"] = round(dt / st, 3) if dt and st else None
        d["log_likelihood_gap_same_settings"] = round(
            d["log_likelihood_median_over_seeds"] - s["log_likelihood_median_over_seeds"], 4
        )
    return {"summary": summary, "runs": runs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--study", choices=sorted(STUDIES), default="friction")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", help="default: bench/results/sgmcmc_<study>.json")
    args = ap.parse_args()
    seeds = list(range(args.seeds))
    items, same = STUDIES[args.study]
    config = {**DIGITS, "study": args.study, "items": items, "period": 10, "overlap": True}
    start_load, probes, report = start_report(seeds, config)
    report["repeats"] = []
    for r in range(args.repeats):
        print(f"repeat {r + 1}/{args.repeats}: {[i[0] for i in items]} x seeds {seeds}", flush=True)
        report["repeats"].append(run_repeat(seeds, items, same))
        probes.append(probe())
    report["probes"] = probes
    report["machine_quiet"] = verdict(probes, start_load)
    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")

    print(f"\nitem: t0.95 median (reached), ratio to {BASE}, ratio to the same-settings single, "
          f"acc, LL mean, gap to {BASE}, gap to the same-settings single, ECE")  # fmt: skip
    for r, rep in enumerate(report["repeats"]):
        print(f"repeat {r + 1}")
        for key, s in rep["summary"].items():
            t = s["time_to_0.95"]
            print(f"  {key:<20} {t['median']} ({t['reached']}/{t['n']})  x{s['time_ratio_0.95']}"
                  f"  x{s.get('time_ratio_same_settings', '-')}  {s['accuracy_median']:.4f}"
                  f"  {s['log_likelihood_median_over_seeds']:.4f}  {s['log_likelihood_gap']:+.4f}"
                  f"  {s.get('log_likelihood_gap_same_settings', '-')}  {s['ece_median']:.3f}")  # fmt: skip
    q = report["machine_quiet"]
    print(f"machine quiet: {q['quiet']} {q['reasons']}; GEMM probes "
          f"{[round(p['gflops'], 1) for p in probes]} GFLOP/s")  # fmt: skip
    out = Path(args.out or f"bench/results/sgmcmc_{args.study}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1, default=float) + "\n")
    tmp.replace(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
