"""Training throughput of the text VAE in the paper's PTB configuration (issue 4, item 8).

Workload (defaults, so that figures compare): ``../shared/data/ptb/valid.txt`` repeated 12 times
as training data; vocabulary = the file's words + specials, padded with unused entries to 10,002
(the real PTB training vocabulary size: the output layer dominates the cost); 1-layer LSTMs,
embedding 256, hidden 256, latent 32, z as initial state and on every decoder input, dropout 0.5,
batch 32, Adam 1e-3, gradient clipping 5; length-bucketed batches exactly as ``pretrain`` trains
(:class:`betamcmc.vae.train.BatchStream`), packed sequences, one fused cross-entropy per batch.

Reported per thread count (medians over ``--repeats`` runs, with min and max):

- ``tokens_per_s``: training target tokens per second (words + ``<eos>``; padding excluded);
- ``gemm_gflops``: float32 ``torch.mm`` of two 2048x2048 matrices, measured in the same run just
  before and after the training window (mean of the two), 2 * 2048^3 FLOP per call;
- ``model_gflops``: training FLOP/s by the formula below; ``utilization`` = model / GEMM FLOP/s;
- ``peak_rss_mib``: peak resident memory of the process.

FLOP formula (matrix products only, per sentence of L words; E, H, Z, V as above; D = 1 or 2
encoder directions; Z_in = Z if z is concatenated to decoder inputs else 0)::

    forward = L * D * 2*4H(E + H)                 encoder LSTM
            + (L + 1) * 2*4H(E + Z_in + H)        decoder LSTM
            + (L + 1) * 2*H*V                     output layer (logits)
            + 2*(D*H)*(2Z) + 2*Z*H                posterior and z -> decoder state
    training = 3 * forward                        (backward = 2 x forward for matrix products)

Element-wise work (gates, softmax, Adam) is not counted, so utilization is a lower bound on how
well the GEMM-shaped part runs.

The machine may be shared: the script records ``os.getloadavg()`` before and after each
measurement; compare figures only within one run (ratios) or at similar load.
``OMP_WAIT_POLICY`` defaults to PASSIVE here (spinning OpenMP workers on a busy machine make
2 threads several times slower); pass ``--omp-wait active`` to measure the other setting.

Usage::

    python bench/pretrain_throughput.py                  # 2 and 1 threads, fp32, 3 repeats
    python bench/pretrain_throughput.py --bf16           # adds a bf16-autocast figure (separate)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data/ptb/valid.txt")
    ap.add_argument("--repeat-data", type=int, default=12, help="times the file is repeated")
    ap.add_argument("--vocab", type=int, default=10002, help="vocabulary size incl. specials")
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--iterations", type=int, default=40, help="timed iterations per measurement")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--emb", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--latent", type=int, default=32)
    ap.add_argument(
        "--bf16", action="store_true", help="also measure bf16 autocast (separate figure)"
    )
    ap.add_argument("--omp-wait", choices=["passive", "active"], default="passive")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench/results/pretrain_throughput.json")
    return ap.parse_args(argv)


def load_workload(path: Path, repeat: int, vocab_size: int) -> tuple[list[list[int]], int]:
    from betamcmc.data.prepared import SPECIALS, Vocab
    from betamcmc.errors import InputError

    if not path.exists():
        raise InputError("PTB-format file not found (see ../shared/data/README.md)", path)
    lines = [ln.split() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    words = sorted({w for ln in lines for w in ln} - set(SPECIALS))
    tokens = [*SPECIALS, *words]
    if len(tokens) > vocab_size:
        raise InputError(
            f"file has {len(tokens)} distinct tokens, more than --vocab {vocab_size}", path
        )
    tokens += [f"<unused{i}>" for i in range(vocab_size - len(tokens))]
    vocab = Vocab(tokens)
    sentences = [vocab.encode(ln) for ln in lines] * repeat
    return sentences, len(words) + len(SPECIALS)


def forward_flops(lengths: list[int], e: int, h: int, z: int, v: int, dirs: int = 1,
                  z_concat: bool = True) -> float:  # fmt: skip
    """Matrix-product FLOPs of one forward pass over sentences of these lengths (see docstring)."""
    total = 0.0
    z_in = z if z_concat else 0
    for n in lengths:
        total += n * dirs * 2 * 4 * h * (e + h)
        total += (n + 1) * (2 * 4 * h * (e + z_in + h) + 2 * h * v)
        total += 2 * (dirs * h) * (2 * z) + 2 * z * h
    return total


def gemm_gflops(torch: object, n: int = 2048, calls: int = 6) -> float:
    a = torch.randn(n, n)  # type: ignore[attr-defined]
    b = torch.randn(n, n)  # type: ignore[attr-defined]
    torch.mm(a, b)  # type: ignore[attr-defined]
    best = float("inf")
    for _ in range(calls):
        t = time.perf_counter()
        torch.mm(a, b)  # type: ignore[attr-defined]
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def measure(args: argparse.Namespace, sentences: list[list[int]], threads: int, bf16: bool) -> dict:
    import contextlib

    import torch

    from betamcmc.vae.model import TextVAE, VAEConfig
    from betamcmc.vae.train import BatchStream

    torch.set_num_threads(threads)
    torch.manual_seed(args.seed)
    cfg = VAEConfig(vocab_size=args.vocab, emb_dim=args.emb, hidden_dim=args.hidden,
                    latent_dim=args.latent, dropout=0.5, z_to_decoder="both")  # fmt: skip
    model = TextVAE(cfg).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    stream = BatchStream(sentences, args.batch_size, args.seed)
    autocast = (
        (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    )

    def step(it: int) -> list[int]:
        ids, lengths = stream(it)
        with autocast():
            loss = model(ids, lengths, 1.0)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        if not torch.isfinite(loss):
            raise RuntimeError(f"non-finite loss at iteration {it}")
        return lengths.tolist()

    for it in range(args.warmup):
        step(it)
    load_before = os.getloadavg()
    gemm_before = gemm_gflops(torch)
    lengths: list[int] = []
    t0 = time.perf_counter()
    for it in range(args.warmup, args.warmup + args.iterations):
        lengths += step(it)
    wall = time.perf_counter() - t0
    gemm_after = gemm_gflops(torch)
    load_after = os.getloadavg()
    tokens = sum(n + 1 for n in lengths)
    flops = 3 * forward_flops(lengths, args.emb, args.hidden, args.latent, args.vocab)
    gemm = (gemm_before + gemm_after) / 2
    return {
        "tokens_per_s": tokens / wall,
        "model_gflops": flops / wall / 1e9,
        "gemm_gflops": gemm,
        "gemm_gflops_before_after": [gemm_before, gemm_after],
        "utilization": flops / wall / 1e9 / gemm,
        "seconds": wall,
        "tokens": tokens,
        "iterations": args.iterations,
        "loadavg_before": list(load_before),
        "loadavg_after": list(load_after),
    }


def summarize(runs: list[dict]) -> dict:
    out: dict = {"runs": runs}
    for key in ("tokens_per_s", "model_gflops", "gemm_gflops", "utilization"):
        vals = [r[key] for r in runs]
        out[key] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["OMP_WAIT_POLICY"] = args.omp_wait.upper()  # before torch loads OpenMP
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import torch

    from betamcmc.errors import BetamcmcError

    try:
        sentences, real_vocab = load_workload(Path(args.data), args.repeat_data, args.vocab)
    except BetamcmcError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    mean_len = sum(len(s) for s in sentences) / len(sentences)
    print(f"workload: {args.data} x{args.repeat_data} = {len(sentences)} sentences, mean length "
          f"{mean_len:.1f} words; vocabulary {real_vocab} real + padding = {args.vocab}; load "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; OMP_WAIT_POLICY={args.omp_wait}")  # fmt: skip
    results: dict = {
        "workload": {
            "data": args.data, "repeat": args.repeat_data, "sentences": len(sentences),
            "mean_words": mean_len, "vocab": args.vocab, "vocab_real": real_vocab,
            "emb": args.emb, "hidden": args.hidden, "latent": args.latent, "batch_size": args.batch_size,
            "iterations": args.iterations, "warmup": args.warmup, "repeats": args.repeats,
        },
        "flop_formula": "training = 3 x forward; forward per sentence of L words = "
        "L*2*4H(E+H) + (L+1)*[2*4H(E+Z+H) + 2HV] + 2H*2Z + 2ZH (matrix products only)",
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                    "omp_wait_policy": args.omp_wait},
        "fp32": {}, "bf16_autocast": {},
    }  # fmt: skip
    modes = [("fp32", False)] + ([("bf16_autocast", True)] if args.bf16 else [])
    for mode, bf16 in modes:
        for threads in args.threads:
            runs = [measure(args, sentences, threads, bf16) for _ in range(args.repeats)]
            s = summarize(runs)
            results[mode][f"threads_{threads}"] = s
            t, u = s["tokens_per_s"], s["utilization"]
            print(f"{mode:14s} threads={threads}: {t['median']:8.0f} tokens/s "
                  f"[{t['min']:.0f}-{t['max']:.0f}]  model {s['model_gflops']['median']:.1f} GFLOP/s  "
                  f"GEMM {s['gemm_gflops']['median']:.1f} GFLOP/s  utilization {u['median']:.0%} "
                  f"[{u['min']:.0%}-{u['max']:.0%}]  load {runs[-1]['loadavg_after'][0]:.2f}", flush=True)  # fmt: skip
    results["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {results['peak_rss_mib']:.0f} MiB")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
