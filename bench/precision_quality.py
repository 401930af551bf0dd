"""bf16 against fp32 training: the same pretrain runs (params, seeds, data) in both precisions, and
whether bf16's test metrics fall within fp32's seed spread (issue 30, item 5).

For each precision the script runs the real stages in a scratch project (``prepare`` once, then
``stages/pretrain.py <schedule> --params <file>`` per schedule, the way DVC runs them), with
``runtime.precision`` set and every other setting the same, and reads each seed's test metrics
from ``metrics/pretrain/<schedule>.json``. Per schedule and metric (test KL, MI, AU, NLL) it
writes, for each precision, the mean, sample std (ddof = 1) and 95 % t-interval over the seeds
(:func:`betamcmc.core.stats.mean_std_ci`), and for bf16 against fp32:

- ``within_std``: the bf16 mean lies within one fp32 sample std of the fp32 mean;
- ``within_ci``: the bf16 mean lies inside fp32's 95 % interval of the mean;
- ``paired``: the per-seed comparison (same seed in both arms; :func:`betamcmc.core.stats.paired`)
  with the interval of the difference and its :func:`betamcmc.core.stats.verdict`
  (``indistinguishable`` unless the interval excludes 0).

The runs write ``data/``, ``models/``, ``metrics/`` and ``mlflow.db`` into ``--project``, so give
it a scratch clone, never your checkout::

    git clone -q . /tmp/q && cp <changed files> /tmp/q/...      # the code to measure
    python bench/precision_quality.py --project /tmp/q --corpus embedded
    python bench/precision_quality.py --project /tmp/q --corpus yelp --seeds 0 1 2 \\
        --schedules constant cyclical --set pretrain.train.iterations=2000

``--corpus embedded`` runs the default pipeline's pretrain (params.yaml as committed);
``--corpus yelp`` the real-text study's Yelp settings (``studies/real_text.yaml``) on
``../shared/data/yelp``, read in place. ``--set key=value`` overrides a setting (a reduced
budget); the JSON records every override. Results from several calls merge into ``--out``, one
entry per corpus; a call with the same settings as the entry there adds its schedules to it
(so a long study can run one schedule per call).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
METRICS = ("kl", "mi", "au", "nll")
# studies/real_text.yaml's `yelp` experiment (the model and evaluation of the real-text study)
YELP = {
    "data.corpus": "yelp",
    "data.path": str(HERE.parent.parent / "shared" / "data" / "yelp"),
    "pretrain.model.emb_dim": 64,
    "pretrain.model.hidden_dim": 128,
    "pretrain.model.latent_dim": 16,
    "pretrain.train.iterations": 16000,
    "pretrain.train.eval_every": 2000,
    "pretrain.eval.importance_samples": 20,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--project", required=True, help="a scratch clone the runs may write into")
    ap.add_argument("--corpus", choices=["embedded", "yelp"], default="embedded")
    ap.add_argument("--schedules", nargs="+", help="default: every pretrain.schedules entry")
    ap.add_argument("--seeds", type=int, nargs="+", help="default: pretrain.seeds")
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a params key (YAML value), e.g. pretrain.train.iterations=2000")  # fmt: skip
    ap.add_argument("--out", default=str(HERE / "results" / "precision_quality.json"))
    return ap.parse_args(argv)


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The dotted keys this corpus and the command line set (``--set`` wins)."""
    out: dict[str, Any] = dict(YELP) if args.corpus == "yelp" else {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"error: --set {item!r}: expected KEY=VALUE")
        out[key] = yaml.safe_load(value)
    if args.seeds:
        out["pretrain.seeds"] = args.seeds
    return out


def params_file(project: Path, settings: dict[str, Any], precision: str, tag: str) -> Path:
    """``project``'s params.yaml with ``settings`` and ``runtime.precision`` applied, as a file."""
    tree = yaml.safe_load((project / "params.yaml").read_text())
    for key, value in {**settings, "runtime.precision": precision}.items():
        node = tree
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        node[last] = copy.deepcopy(value)
    path = project / f"params.{tag}-{precision}.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def run_stage(project: Path, *argv: str) -> tuple[str, float]:
    """``python stages/<argv>`` in ``project`` (its own src first on the path); stdout, seconds."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = str(project / "src")
    env["BETAMCMC_PROGRESS"] = "off"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *argv], cwd=project, env=env, capture_output=True,
                          text=True)  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(argv)} exited {proc.returncode}: "
                         f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")  # fmt: skip
    return proc.stdout, time.perf_counter() - t0


def run_arm(project: Path, params: Path, schedule: str) -> dict[str, Any]:
    """One pretrain item in one precision: its first line, seconds and per-seed test metrics."""
    stdout, seconds = run_stage(project, "stages/pretrain.py", schedule, "--params", str(params))
    metrics = json.loads((project / "metrics" / "pretrain" / f"{schedule}.json").read_text())
    first = next((ln for ln in stdout.splitlines() if "precision" in ln), "")
    print(f"  {schedule} {params.name}: {seconds:.0f} s; {stdout.strip().splitlines()[-1]}",
          flush=True)  # fmt: skip
    return {
        "first_line": first,
        "precision": metrics.get("precision"),
        "seconds": seconds,
        "seeds": metrics["seeds"],
        "test": {
            m: [metrics["per_seed"][str(s)]["test"][m] for s in metrics["seeds"]] for m in METRICS
        },  # fmt: skip
    }


def compare(fp32: list[float], bf16: list[float]) -> dict[str, Any]:
    """bf16 against fp32 for one metric (same seeds, same order)."""
    from betamcmc.core import stats

    a, b = stats.mean_std_ci(fp32), stats.mean_std_ci(bf16)
    pair = stats.paired(bf16, fp32)
    inside = a["ci_low"] is not None and a["ci_low"] <= b["mean"] <= a["ci_high"]
    return {
        "fp32": a,
        "bf16": b,
        "diff": b["mean"] - a["mean"],
        "within_std": a["std"] is not None and abs(b["mean"] - a["mean"]) <= a["std"],
        "within_ci": bool(inside),
        "paired": {**pair, "verdict": stats.verdict(pair)},
    }


def summarize(arms: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Per schedule and metric the comparison; overall counts of metrics within the spread."""
    schedules = {}
    for name, by_precision in arms.items():
        fp32, bf16 = by_precision["fp32"], by_precision["bf16"]
        schedules[name] = {m: compare(fp32["test"][m], bf16["test"][m]) for m in METRICS}
        schedules[name]["seconds"] = {p: by_precision[p]["seconds"] for p in by_precision}
    cells = [c for s in schedules.values() for m, c in s.items() if m in METRICS]
    return {
        "schedules": schedules,
        "cells": len(cells),
        "within_std": sum(c["within_std"] for c in cells),
        "within_ci": sum(c["within_ci"] for c in cells),
        "indistinguishable": sum(c["paired"]["verdict"] == "indistinguishable" for c in cells),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path[:0] = [str(HERE), str(Path(args.project).resolve() / "src")]
    from machine import facts, loadavg

    project = Path(args.project).resolve()
    settings = overrides(args)
    files = {p: params_file(project, settings, p, args.corpus) for p in args.precisions}
    start_load = loadavg()
    t0 = time.perf_counter()
    run_stage(project, "stages/prepare.py", "--params", str(files[args.precisions[0]]))
    tree = yaml.safe_load(files[args.precisions[0]].read_text())
    schedules = args.schedules or list(tree["pretrain"]["schedules"])
    earlier = previous(Path(args.out), args.corpus, settings)
    arms: dict[str, dict[str, dict[str, Any]]] = dict(earlier.get("arms", {}))
    for schedule in schedules:
        arms[schedule] = {p: run_arm(project, files[p], schedule) for p in args.precisions}
    entry = {
        "settings": settings,
        "seeds": tree["pretrain"]["seeds"],
        "loads": [*earlier.get("loads", []), {"start": start_load, "end": loadavg()}],
        "seconds": earlier.get("seconds", 0.0) + time.perf_counter() - t0,
        "machine": facts(),
        "arms": arms,
        **summarize(arms),
    }
    write(Path(args.out), args.corpus, entry)
    print(f"{args.corpus}: {entry['within_std']}/{entry['cells']} bf16 means within one fp32 std, "
          f"{entry['within_ci']}/{entry['cells']} within the fp32 95 % CI, "
          f"{entry['indistinguishable']}/{entry['cells']} paired differences indistinguishable; "
          f"wrote {args.out}")  # fmt: skip
    return 0


def previous(out: Path, corpus: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The corpus's entry in ``out`` if it was run with the same settings (else nothing)."""
    if not out.exists():
        return {}
    entry = json.loads(out.read_text()).get("corpora", {}).get(corpus, {})
    return entry if entry.get("settings") == settings else {}


def write(out: Path, corpus: str, entry: dict[str, Any]) -> None:
    """Merge ``entry`` into ``out`` under ``corpora.<corpus>`` (other corpora kept)."""
    from betamcmc.core.io import write_json

    data = json.loads(out.read_text()) if out.exists() else {}
    data.setdefault("corpora", {})[corpus] = entry
    data["metrics"] = [f"test.{m}" for m in METRICS]
    write_json(out, data)


if __name__ == "__main__":
    sys.exit(main())
