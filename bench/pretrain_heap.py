"""pretrain's own training loop with glibc's heap kept (betamcmc.core.heap) against glibc's
defaults.

Each measurement is a fresh process that runs :func:`betamcmc.vae.train.train_vae` (the loop the
``pretrain`` stage runs, batch split across threads included) on ``pretrain_throughput.py``'s
workload (PTB valid x 12, vocabulary 10,002, model 256 / 256 / 32, dropout 0.5, batch 32) for
``--iterations`` steps, and times the steps after ``--skip`` (tokens per second and minor page
faults per step, from the iteration hook). ``keep``: as ``pretrain`` runs on a CPU, glibc keeps
freed memory; ``default``: that call is skipped, glibc's defaults. The two alternate, ``--repeats``
times per thread count, so that both see the same machine; a fresh process for each because the
heap's state (glibc's dynamic mmap threshold, its thread arenas) depends on everything the process
did before, which is what ``pretrain_throughput.py``'s one-process figures cannot show.

The float32 GEMM peak is measured at each thread count before and after (``machine.py``), so the
run says how quiet the machine was; the figure that matters is the keep / default ratio.

Usage::

    python bench/pretrain_heap.py                       # 2 and 1 threads, 3 repeats
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/ptb/valid.txt")
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--iterations", type=int, default=50, help="training steps per process")
    ap.add_argument("--skip", type=int, default=10, help="first steps not timed (warm-up)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--gemm-size", type=int, default=2048,
                    help="n of the n x n GEMM peak measured around each figure (a quick run: less)")  # fmt: skip
    ap.add_argument("--emb", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--latent", type=int, default=32)
    ap.add_argument("--out", default="bench/results/pretrain_heap.json")
    ap.add_argument("--child", choices=["keep", "default"], help=argparse.SUPPRESS)
    ap.add_argument("--child-threads", type=int, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def child(args: argparse.Namespace) -> int:
    """One measurement: train_vae in this process; prints one JSON line."""
    import resource

    import torch
    import yaml
    from pretrain_throughput import load_workload

    import betamcmc.vae.train as train
    from betamcmc.params import validate_params

    if args.child == "default":
        train.keep_freed_memory = lambda: False  # the one call train_vae makes on a CPU
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    raw["device"] = "cpu"
    raw["pretrain"]["model"].update(emb_dim=args.emb, hidden_dim=args.hidden,
                                    latent_dim=args.latent, dropout=0.5, word_dropout=0.0)  # fmt: skip
    raw["pretrain"]["train"].update(iterations=args.iterations, eval_every=10**6, lr=0.001)
    params = validate_params(raw, "bench/pretrain_heap.py")
    sentences, _ = load_workload(Path(args.data), 12, 10002)
    torch.set_num_threads(args.child_threads)
    stamps: list[tuple[float, int]] = []

    real_step = train.train_step

    def stamped_step(*step_args: Any, **step_kwargs: Any) -> Any:
        stamps.append((time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt))
        return real_step(*step_args, **step_kwargs)

    train.train_step = stamped_step  # stamps each iteration before its training step
    train.train_vae(
        sentences, sentences[:64], 10002, params.pretrain, params.runtime, "constant", 0
    )
    stream = train.BatchStream(sentences, params.pretrain.train.batch_size, 0)
    last = args.iterations - 1  # a stamp is taken before each step: stamps[i] .. stamps[last]
    lengths = [stream(it)[1] for it in range(args.skip, last)]
    tokens = sum(int(n.sum()) + len(n) for n in lengths)
    (t0, f0), (t1, f1) = stamps[args.skip], stamps[last]
    steps = last - args.skip
    print(json.dumps({"tokens_per_s": tokens / (t1 - t0), "page_faults_per_step": (f1 - f0) / steps,
                      "steps": steps, "threads": torch.get_num_threads()}))  # fmt: skip
    return 0


def measure(args: argparse.Namespace, heap: str, threads: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", heap, "--child-threads",
           str(threads), "--data", args.data, "--iterations", str(args.iterations), "--skip",
           str(args.skip), "--emb", str(args.emb), "--hidden", str(args.hidden), "--latent",
           str(args.latent)]  # fmt: skip
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{heap} x {threads} threads failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path[:0] = [str(HERE), str(REPO / "src")]
    if args.child:
        return child(args)
    if args.skip < 1 or args.iterations < args.skip + 2:
        print("error: --iterations must exceed --skip by at least 2, --skip >= 1", file=sys.stderr)
        return 2
    if not Path(args.data).exists():
        print(f"error: {args.data}: PTB-format file not found (see ../shared/data/README.md)",
              file=sys.stderr)  # fmt: skip
        return 2
    from machine import facts, flagged, foreign_load, gemm_peak, loadavg, spread

    from betamcmc.core.io import write_json

    start_load = loadavg()
    results: dict = {"workload": {"data": args.data, "repeat": 12, "vocab": 10002, "emb": args.emb,
                                  "hidden": args.hidden, "latent": args.latent, "batch_size": 32,
                                  "dropout": 0.5, "iterations": args.iterations,
                                  "timed_from": args.skip},  # fmt: skip
                     "machine": facts(), "load_at_start": start_load, "threads": {}}  # fmt: skip
    flags: list[str] = []
    for threads in args.threads:
        gemm_before = gemm_peak(threads, args.gemm_size)
        runs: dict[str, list[dict]] = {"keep": [], "default": []}
        for _ in range(args.repeats):
            for heap in ("keep", "default"):
                runs[heap].append(measure(args, heap, threads))
        gemm_after = gemm_peak(threads, args.gemm_size)
        row: dict = {"gemm_before": gemm_before, "gemm_after": gemm_after, "runs": runs}
        for heap, rs in runs.items():
            for key in ("tokens_per_s", "page_faults_per_step"):
                row[f"{heap}_{key}"] = spread([r[key] for r in rs])
        ratios = [k["tokens_per_s"] / d["tokens_per_s"]
                  for k, d in zip(runs["keep"], runs["default"], strict=True)]  # fmt: skip
        row["keep_over_default"] = {**spread(ratios), "pairs": ratios}
        row["foreign_load"] = foreign_load(gemm_before, gemm_after, start_load)
        flags += row["foreign_load"]
        results["threads"][str(threads)] = row
        parts = [f"threads={threads}:"]
        for heap in ("keep", "default"):
            t, faults = row[f"{heap}_tokens_per_s"], row[f"{heap}_page_faults_per_step"]["median"]
            parts.append(f"{heap} {t['median']:.0f} tokens/s [{t['min']:.0f}-{t['max']:.0f}] "
                         f"({faults:.0f} page faults/step);")  # fmt: skip
        parts.append(f"keep / default {row['keep_over_default']['median']:.2f}x "
                     f"[{min(ratios):.2f}-{max(ratios):.2f}]; GEMM {gemm_before['gflops']:.0f} / "
                     f"{gemm_after['gflops']:.0f} GFLOP/s")  # fmt: skip
        print(" ".join(parts) + flagged(row["foreign_load"]), flush=True)
    results["load_at_end"] = loadavg()
    results["foreign_load"] = sorted(set(flags))
    write_json(Path(args.out), results)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
