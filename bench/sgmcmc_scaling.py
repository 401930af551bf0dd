"""A model of time-to-accuracy against the number of workers W, fitted to one benchmark run.

    .venv/bin/python bench/sgmcmc_scaling.py [--speedup bench/results/sgmcmc_speedup.json]
        [--out bench/results/sgmcmc_scaling.json] [--figure docs/img/sgmcmc-scaling.png]

Inputs, all measured in the same run of ``bench/sgmcmc_speedup.py``: the gradient time ``g`` of a
chain step (plain loop), the message round trip ``L`` (ping-pong over gloo), the master's time per
message ``m``, the staleness ``s`` of the runs, tau, the cores ``c``, and the chain steps
``N`` a single chain needs to reach BMA accuracy 0.95 (median over seeds).

Model (downpour; every process runs one thread):

* W workers and the master share ``c`` cores; the master is busy ``u = rate x m`` of one core,
  so a worker's step takes ``g_W = g x max(1, W / (c - u))``;
* a worker's round is ``tau x g_W`` of sampling plus what of the round trip is not hidden behind
  it: ``R = tau g_W + max(0, L - tau g_W)`` (overlap); pushes arrive at ``min(W / R, 1 / m)``
  per second (the master serves one at a time);
* a push is worth ``tau x f(s)`` chain steps of the single chain: ``f = 1`` (``staleness: none``,
  s = W - 1 then biases the chain: measured W = 4 does not converge), ``1 / (1 + s)``
  (``inverse``) or ``1 / (1 + s)^2`` (``inverse_square``);
* time to accuracy ``T(W) = N / (push rate x tau x f)``; W = 1 ``single`` is ``N g_1``.

Elastic: every chain pays the single chain's burn-in ``B`` and the samples after it come from W
chains: ``T(W) = g_W (B + (N - B) / W) + (N / tau) x max(0, L - tau g_W) / W``.

The measured points (W = 1, 2, 4, this machine) and the predictions go into one figure, with the
predicted curves to W = 64 for the compute-dominated model (hidden 1,000) on one core per process
(c = W + 1), where gradients dominate messages.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

RULES = {"none": 0, "inverse": 1, "inverse_square": 2}


def downpour_time(
    n: float, w: int, g: float, lat: float, m: float, tau: int, cores: float, rule: str
) -> float:
    """Predicted seconds to reach the single chain's N steps with W downpour workers."""
    s = w - 1
    f = 1.0 / (1.0 + s) ** RULES[rule]
    rate = 0.0
    for _ in range(50):  # fixed point: the master's load u depends on the push rate
        u = min(0.9 * cores, rate * m)
        g_w = g * max(1.0, w / (cores - u))
        round_s = tau * g_w + max(0.0, lat - tau * g_w)
        rate = min(w / round_s, 1.0 / m)
    return n / (rate * tau * f)


def elastic_time(
    n: float, burn_in: float, w: int, g: float, lat: float, tau: int, cores: float
) -> float:
    g_w = g * max(1.0, w / cores)
    wait = (n / tau) * max(0.0, lat - tau * g_w) / w
    return g_w * (burn_in + max(0.0, n - burn_in) / w) + wait


def measured(summary: dict[str, Any], key: str) -> float | None:
    s = summary.get(key)
    return None if s is None else s["time_to_0.95"]["median"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--speedup", default="bench/results/sgmcmc_speedup.json")
    ap.add_argument("--out", default="bench/results/sgmcmc_scaling.json")
    ap.add_argument("--figure", default="docs/img/sgmcmc-scaling.png")
    args = ap.parse_args()
    run = json.loads(Path(args.speedup).read_text())
    tau = run["config"]["period"]
    cores = float(run["machine"]["cpu_count"])
    out: dict[str, Any] = {"source": args.speedup, "source_started": run["started"], "tau": tau}
    models = {}
    for name, key in (("digits", "digits"), ("wide", "wide")):
        summ = run[key]["summary"]
        single = summ["single-w1"]
        inputs = {
            "g_s": run["timing"]["grad_ms"][name] / 1e3,
            "L_s": run["timing"]["round_trip"][name]["median_ms"] / 1e3,
            "m_s": summ["downpour-w2"]["master_ms_per_message_median"] / 1e3,
            "N_steps": single["grads_to_0.95"]["median"],
            "burn_in": run["config"][name]["burn_in"],
            "single_measured_s": measured(summ, "single-w1"),
            "staleness_w2": summ["downpour-w2"]["staleness_median"],
        }
        # the single chain's own time per step in the engine (overheads included) calibrates g
        n = inputs["N_steps"]
        if n and inputs["single_measured_s"]:
            inputs["g_engine_s"] = inputs["single_measured_s"] / n
        models[name] = inputs
    out["inputs"] = models

    points: dict[str, Any] = {}
    for name in ("digits", "wide"):
        p, summ = models[name], run[name]["summary"]
        g = p.get("g_engine_s", p["g_s"])
        rows = []
        for w in (1, 2, 4):
            row: dict[str, Any] = {"W": w}
            for rule in RULES:
                key = f"downpour-w{w}" + ("" if rule == "none" else f"-{rule}")
                row[f"downpour_{rule}_predicted"] = (
                    downpour_time(p["N_steps"], w, g, p["L_s"], p["m_s"], tau, cores, rule)
                    if p["N_steps"]
                    else None
                )
                row[f"downpour_{rule}_measured"] = measured(summ, key)
            row["elastic_predicted"] = (
                elastic_time(p["N_steps"], p["burn_in"], w, g, p["L_s"], tau, cores)
                if p["N_steps"]
                else None
            )
            row["elastic_measured"] = measured(summ, f"elastic-w{w}")
            row["single_measured"] = measured(summ, "single-w1") if w == 1 else None
            rows.append(row)
        points[name] = rows
    out["this_machine"] = points

    wide = models["wide"]
    g = wide.get("g_engine_s", wide["g_s"])
    curves: dict[str, list[tuple[int, float]]] = {}
    ws = [1, 2, 4, 8, 16, 32, 64]
    for rule in RULES:
        curves[f"downpour_{rule}"] = [
            (w, downpour_time(wide["N_steps"], w, g, wide["L_s"], wide["m_s"], tau, w + 1, rule))
            for w in ws
        ]
    curves["elastic"] = [
        (w, elastic_time(wide["N_steps"], wide["burn_in"], w, g, wide["L_s"], tau, w + 1))
        for w in ws
    ]
    out["curves_one_core_per_process_wide"] = curves
    out["master_bound_workers_wide"] = math.floor(tau * g / wide["m_s"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    figure(out, Path(args.figure))
    print(json.dumps({k: out[k] for k in ("inputs", "this_machine")}, indent=1))
    print(f"wrote {args.out} and {args.figure}")


def figure(out: dict[str, Any], path: Path) -> None:
    import matplotlib  # only the figure needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    styles = {"downpour_none": "C0", "downpour_inverse": "C1", "downpour_inverse_square": "C2",
              "elastic": "C3"}  # fmt: skip
    for ax, name in zip(axes[:2], ("digits", "wide"), strict=True):
        rows = out["this_machine"][name]
        ws = [r["W"] for r in rows]
        for series, color in styles.items():
            pred = [r.get(f"{series}_predicted") for r in rows]
            meas = [r.get(f"{series}_measured") for r in rows]
            ax.plot(ws, pred, "--", color=color, label=f"{series} predicted")
            pts = [(w, v) for w, v in zip(ws, meas, strict=True) if v is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), "o", color=color, label=f"{series} measured")
        single = rows[0]["single_measured"]
        if single:
            ax.axhline(single, color="k", lw=0.8, label="single chain measured")
        ax.set(xlabel="workers W", ylabel="s to BMA accuracy 0.95", xticks=ws, yscale="log",
               title=f"{name}: this machine ({int(out['inputs'][name]['N_steps'] or 0)} steps)")  # fmt: skip
        ax.legend(fontsize=6)
    ax = axes[2]
    for series, pts in out["curves_one_core_per_process_wide"].items():
        ax.plot(*zip(*pts, strict=True), "-o", ms=3, color=styles[series], label=series)
    ax.set(xscale="log", yscale="log", xlabel="workers W (one core each)",
           ylabel="predicted s to 0.95", title="hidden 1000, predicted to W = 64")  # fmt: skip
    ax.legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
