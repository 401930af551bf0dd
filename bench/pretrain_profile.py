"""Where the pretrain step's time goes, per operator, at 1 and 2 threads (issue 13, item 1).

The workload and the step are ``bench/pretrain_throughput.py``'s (the reference's PTB setting,
the library's own ``train_step``). For each thread count the step runs ``--iterations`` times
under ``torch.profiler`` (CPU activities), ``--repeats`` times; the fastest repeat is kept (the
least disturbed by other processes). Reported per operator: self CPU time at 1 thread, its share,
self CPU time at 2 threads and the speedup 1 -> 2 threads.

Also measured in the same run, at each thread count: the 2048x2048 GEMM that
``pretrain_throughput`` uses as its utilization denominator, and the three output-layer GEMM
shapes of one batch (logits ``[T, H] x [H, V]``, its weight gradient ``[H, T] x [T, V]`` and its
input gradient ``[T, V] x [V, H]``; T = the batch's target tokens). From them the script states
the ceiling the 2-thread utilization can reach if every operator sped up as much as the output
layer's GEMMs do (they are most of the FLOPs): ``utilization_1t x speedup_output_gemm x
gemm_1t / gemm_2t``.

``--precision bf16`` profiles the step under bf16 autocast (``runtime.precision: bf16``) and
measures the GEMMs in bf16: where the 2-thread bf16 step's time goes (issue 30, item 5).

Profiling adds overhead per operator call, so the walls here are slower than the throughput
bench's; the shares and the speedups are what this script is for.

Usage::

    python bench/pretrain_profile.py            # writes bench/results/pretrain_profile.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/ptb/valid.txt")
    ap.add_argument("--iterations", type=int, default=30, help="profiled steps per repeat")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--top", type=int, default=16, help="operators printed")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                    help="the step's precision (bf16: autocast) and the GEMMs' dtype")  # fmt: skip
    ap.add_argument("--out", default="bench/results/pretrain_profile.json")
    return ap.parse_args(argv)


def shape_gemms(threads: int, tokens: int, h: int, v: int, calls: int = 7,
                dtype: str = "float32") -> dict[str, float]:  # fmt: skip
    """Median GFLOP/s of the output layer's three GEMM shapes at this thread count."""
    import torch
    from machine import mm_gflops

    torch.set_num_threads(threads)
    dt = getattr(torch, dtype)
    x, w, g = (torch.randn(*shape, dtype=dt) for shape in ((tokens, h), (h, v), (tokens, v)))
    shapes = {"logits": (x, w), "weight_grad": (x.t(), g), "input_grad": (g, w.t())}
    out = {}
    for name, (a, b) in shapes.items():
        torch.mm(a, b)  # warm-up
        out[name] = statistics.median(mm_gflops(a, b, calls))
    return out


def profile_steps(args: argparse.Namespace, sentences: list[list[int]], threads: int) -> dict:
    """The fastest of ``--repeats`` profiled windows: wall, tokens, self CPU ms per operator."""
    import torch
    from pretrain_throughput import forward_flops
    from torch.profiler import ProfilerActivity, profile

    from betamcmc.vae.batches import BatchStream
    from betamcmc.vae.model import TextVAE, VAEConfig
    from betamcmc.vae.step import make_optimizer, train_step

    best: dict | None = None
    for _ in range(args.repeats):
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        cfg = VAEConfig(vocab_size=10002, emb_dim=256, hidden_dim=256, latent_dim=32,
                        bidirectional=False, z_to_decoder="both", dropout=0.5,
                        word_dropout=0.0)  # fmt: skip
        model = TextVAE(cfg).train()
        opt = make_optimizer(model, 1e-3)
        stream = BatchStream(sentences, 32, 0)
        for it in range(args.warmup):
            ids, lengths = stream(it)
            train_step(model, opt, ids, lengths, 1.0, 5.0, "bench", it, None, args.precision)
        lengths_all: list[int] = []
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            for it in range(args.warmup, args.warmup + args.iterations):
                ids, lengths = stream(it)
                train_step(model, opt, ids, lengths, 1.0, 5.0, "bench", it, None, args.precision)
                lengths_all += lengths.tolist()
            wall = time.perf_counter() - t0
        if best is None or wall < best["wall_s"]:
            ops = {e.key: e.self_cpu_time_total / 1e3 for e in prof.key_averages()}
            tokens = sum(n + 1 for n in lengths_all)
            flops = 3 * forward_flops(lengths_all, 256, 256, 32, 10002)
            best = {"wall_s": wall, "tokens": tokens, "model_gflops_profiled": flops / wall / 1e9,
                    "ops_self_ms": ops}  # fmt: skip
    assert best is not None
    return best


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # as pretrain_throughput's default
    here = Path(__file__).resolve().parent
    sys.path[:0] = [str(here), str(here.parent / "src")]
    from machine import facts, gemm_peak, loadavg
    from pretrain_throughput import load_workload

    from betamcmc.core.errors import BetamcmcError
    from betamcmc.core.io import write_json

    start_load = loadavg()
    try:
        sentences, _ = load_workload(Path(args.data), 12, 10002)
    except BetamcmcError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    mean_tokens = round(32 * (sum(len(s) + 1 for s in sentences) / len(sentences)))
    results: dict = {"machine": facts(), "load_at_start": start_load, "threads": {},
                     "batch_tokens": mean_tokens, "iterations": args.iterations,
                     "precision": args.precision}  # fmt: skip
    dtype = "bfloat16" if args.precision == "bf16" else "float32"
    for threads in (1, 2):
        prof = profile_steps(args, sentences, threads)
        gemm = gemm_peak(threads, dtype=dtype)
        shapes = shape_gemms(threads, mean_tokens, 256, 10002, dtype=dtype)
        results["threads"][str(threads)] = {**prof, "gemm_2048": gemm, "output_gemms": shapes}
        print(f"threads={threads}: {prof['tokens'] / prof['wall_s']:.0f} tokens/s under the "
              f"profiler, GEMM 2048^2 {gemm['gflops']:.1f} GFLOP/s, output-layer GEMMs "
              + ", ".join(f"{k} {v:.1f}" for k, v in shapes.items()), flush=True)  # fmt: skip
    one, two = results["threads"]["1"], results["threads"]["2"]
    total1 = sum(one["ops_self_ms"].values())
    rows = []
    for op, ms in sorted(one["ops_self_ms"].items(), key=lambda kv: -kv[1]):
        ms2 = two["ops_self_ms"].get(op, 0.0)
        rows.append({"op": op, "ms_1t": ms, "share_1t": ms / total1, "ms_2t": ms2,
                     "speedup": ms / ms2 if ms2 else None})  # fmt: skip
    results["operators"] = rows
    speed_out = statistics.median(
        two["output_gemms"][k] / one["output_gemms"][k] for k in one["output_gemms"]
    )
    util1 = one["model_gflops_profiled"] / one["gemm_2048"]["gflops"]
    ceiling = util1 * speed_out * one["gemm_2048"]["gflops"] / two["gemm_2048"]["gflops"]
    results["summary"] = {
        "wall_speedup_2_over_1": one["wall_s"] / two["wall_s"],
        "output_gemm_speedup_2_over_1": speed_out,
        "gemm_2048_speedup_2_over_1": two["gemm_2048"]["gflops"] / one["gemm_2048"]["gflops"],
        "utilization_1t_profiled": util1,
        "utilization_2t_ceiling_if_all_ops_scale_like_output_gemms": ceiling,
        "load_at_end": loadavg(),
    }
    print(f"{'operator':40s} {'1 thread':>9s} {'share':>6s} {'2 threads':>9s} {'speedup':>7s}")
    for r in rows[: args.top]:
        sp = f"{r['speedup']:.2f}" if r["speedup"] else "-"
        print(f"{r['op'][:40]:40s} {r['ms_1t']:7.0f}ms {r['share_1t']:6.1%} "
              f"{r['ms_2t']:7.0f}ms {sp:>7s}")  # fmt: skip
    s = results["summary"]
    print(f"step 2/1 threads {s['wall_speedup_2_over_1']:.2f}x; output-layer GEMMs "
          f"{s['output_gemm_speedup_2_over_1']:.2f}x; 2048^2 GEMM {s['gemm_2048_speedup_2_over_1']:.2f}x; "
          f"2-thread utilization ceiling if every op scaled like the output GEMMs: {ceiling:.0%} "
          f"(1-thread utilization under the profiler {util1:.0%}); load {start_load[0]:.2f} -> "
          f"{s['load_at_end'][0]:.2f}")  # fmt: skip
    write_json(args.out, results)  # atomic: a failed run leaves the old file whole
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
