"""Training throughput of the text VAE in the paper's PTB configuration (issue 13, item 1).

Workload (defaults, so that figures compare): ``../shared/data/ptb/valid.txt`` repeated 12 times
as training data; vocabulary = the file's words + specials, padded with unused entries to 10,002
(the real PTB training vocabulary size: the output layer dominates the cost); 1-layer LSTMs,
embedding 256, hidden 256, latent 32, z as initial state and on every decoder input, dropout 0.5,
batch 32, Adam 1e-3, gradient clipping 5; length-bucketed batches exactly as ``pretrain`` trains
(:class:`betamcmc.vae.batches.BatchStream`). Each timed step is the library's
:func:`betamcmc.vae.step.train_step` (the one ``pretrain`` runs: padded oneDNN LSTMs, the fused
output layer + cross-entropy, fused Adam), so the figures are the pipeline's own speed: the
``fp32`` figure on 1 thread, the ``--batch-split`` figure on 2 threads and more (``pretrain``
splits the batch across its CPU threads); ``fp32`` on 2+ threads is the same step on intra-op
threads, the comparison behind that choice.

Reported per thread count (medians over ``--repeats`` runs, with min and max):

- ``tokens_per_s``: training target tokens per second (words + ``<eos>``; padding excluded);
- ``gemm``: float32 ``torch.mm`` of two n x n matrices (``--gemm-size``, 2048; the tests' quick
  runs take less, which is no peak) at the same thread count, 7 timed
  calls each just before and just after the training window; the figure is the median call, and
  the utilization's denominator is the larger of the two medians (the quieter sample);
- ``model_gflops``: training FLOP/s by the formula below; ``utilization`` = model / GEMM FLOP/s;
- ``foreign_load``: reasons to distrust the run (GEMM samples spread > 15 %, before/after medians
  apart > 15 %, load average > 0.5 when the benchmark started); ``--strict`` refuses to write
  such a run (exit 3).

FLOP formula (matrix products only, per sentence of L words; E, H, Z, V as above; D = 1 or 2
encoder directions; Z_in = Z if z is concatenated to decoder inputs else 0)::

    forward = L * D * 2*4H(E + H)                 encoder LSTM
            + (L + 1) * 2*4H(E + Z_in + H)        decoder LSTM
            + (L + 1) * 2*H*V                     output layer (logits)
            + 2*(D*H)*(2Z) + 2*Z*H                posterior and z -> decoder state
    training = 3 * forward                        (backward = 2 x forward for matrix products)

Element-wise work (gates, softmax, Adam) and the padding positions the LSTMs also process are not
counted, so utilization is a lower bound on how well the GEMM-shaped part runs.

``--device cuda`` (or ``auto`` with a GPU) times the same step on the GPU under bf16 autocast and
reports the GPU's GEMM peak in the same dtype; ``--bf16`` adds a CPU bf16-autocast figure (the
step as ``pretrain`` runs it under ``runtime.precision: bf16``, its utilization against a bf16
GEMM peak measured the same way), and with ``--batch-split`` also the batch split in bf16;
``--native-lstm`` adds a figure with PyTorch's native LSTM kernels instead of oneDNN's (the
pipeline uses oneDNN's: this is the comparison behind that choice). ``--batch-split`` adds a
figure (at 2 threads and more) for the step as ``pretrain`` runs it on 2+ CPU threads: the
batch split into one part per thread, each part's forward and backward on its own thread with
one intra-op thread (:mod:`betamcmc.vae.split`: the same loss, random draws and gradient; the
plain ``fp32`` figure is the step on intra-op threads).

Precision: with ``--bf16`` the JSON's ``bf16_speedup`` compares the pipeline's own step in bf16
and fp32 per thread count (1 thread: ``bf16_autocast`` / ``fp32``; 2+ threads with
``--batch-split``: ``bf16_batch_split`` / ``fp32_batch_split``), as the median, min and max of the
per-repeat ratios. The repeats are interleaved (repeat r of every figure before repeat r + 1), so
a ratio pairs two measurements taken a few seconds apart.

Heap: like ``pretrain`` on a CPU, the bench first sets glibc's heap to keep freed memory
(:mod:`betamcmc.core.heap`); ``--heap default`` keeps glibc's defaults instead (the comparison
behind that choice: run it as its own process, the setting cannot be undone within one). Each figure
reports ``page_faults_per_step``, the process's minor page faults over the timed window per step.

Usage::

    python bench/pretrain_throughput.py                  # 2 and 1 threads, fp32, 3 repeats
    python bench/pretrain_throughput.py --device cuda    # on a GPU machine
    python bench/pretrain_throughput.py --bf16 --batch-split   # bf16 against fp32, as pretrain runs
"""

from __future__ import annotations

import argparse
import os
import resource
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
    ap.add_argument("--gemm-size", type=int, default=2048,
                    help="n of the n x n GEMM peak measured around each figure (a quick run: less)")  # fmt: skip
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--emb", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--latent", type=int, default=32)
    ap.add_argument(
        "--bf16", action="store_true", help="also measure bf16 autocast (separate figure)"
    )
    ap.add_argument(
        "--native-lstm",
        action="store_true",
        help="also measure PyTorch's native LSTM kernels instead of oneDNN's (separate figure)",
    )
    ap.add_argument(
        "--batch-split",
        action="store_true",
        help="also measure one batch part per Python thread, 1 intra-op thread each (separate figure)",
    )
    ap.add_argument("--omp-wait", choices=["passive", "active"], default="passive")
    ap.add_argument(
        "--heap",
        choices=["keep", "default"],
        default="keep",
        help="keep: glibc keeps freed memory, as pretrain sets it (betamcmc.core.heap); default: "
        "glibc's defaults (the comparison behind that choice; run it as a separate process)",
    )
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument("--strict", action="store_true", help="refuse to write a run on a busy machine")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench/results/pretrain_throughput.json")
    return ap.parse_args(argv)


def load_workload(path: Path, repeat: int, vocab_size: int) -> tuple[list[list[int]], int]:
    from betamcmc.core.errors import InputError
    from betamcmc.data.prepared import SPECIALS, Vocab

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


def measure(args: argparse.Namespace, sentences: list[list[int]], threads: int, bf16: bool,
            device: str, start_load: list[float], native_lstm: bool = False,
            batch_split: bool = False) -> dict:  # fmt: skip
    import contextlib

    import torch
    from machine import foreign_load, gemm_peak, loadavg

    from betamcmc.vae.batches import BatchStream
    from betamcmc.vae.model import TextVAE, VAEConfig
    from betamcmc.vae.split import BatchSplitter
    from betamcmc.vae.step import make_optimizer, train_step

    torch.set_num_threads(threads)
    torch.manual_seed(args.seed)
    cfg = VAEConfig(vocab_size=args.vocab, emb_dim=args.emb, hidden_dim=args.hidden,
                    latent_dim=args.latent, bidirectional=False, z_to_decoder="both",
                    dropout=0.5, word_dropout=0.0)  # fmt: skip
    model = TextVAE(cfg).to(device).train()
    opt = make_optimizer(model, 1e-3)
    stream = BatchStream(sentences, args.batch_size, args.seed)
    precision = "bf16" if bf16 else "fp32"  # autocast inside train_step (and the split's threads)

    def kernels() -> contextlib.AbstractContextManager:
        """A fresh context per step (``flags()`` can be entered only once)."""
        if native_lstm:
            return torch.backends.mkldnn.flags(enabled=False)
        return contextlib.nullcontext()

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    gemm_dtype = "bfloat16" if (device == "cuda" or bf16) else "float32"

    splitter = BatchSplitter(threads) if batch_split else None

    def step(it: int) -> list[int]:
        ids, lengths = stream(it)
        with kernels():
            train_step(model, opt, ids.to(device), lengths.to(device), 1.0, 5.0, "bench", it,
                       splitter, precision)  # fmt: skip
        return lengths.tolist()

    for it in range(args.warmup):
        step(it)
    sync()
    load_before = loadavg()
    gemm_before = gemm_peak(threads, args.gemm_size, device=device, dtype=gemm_dtype)
    lengths: list[int] = []
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0 = time.perf_counter()
    for it in range(args.warmup, args.warmup + args.iterations):
        lengths += step(it)
    sync()
    wall = time.perf_counter() - t0
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    gemm_after = gemm_peak(threads, args.gemm_size, device=device, dtype=gemm_dtype)
    load_after = loadavg()
    if splitter is not None:
        splitter.close()
    tokens = sum(n + 1 for n in lengths)
    flops = 3 * forward_flops(lengths, args.emb, args.hidden, args.latent, args.vocab)
    gemm = max(gemm_before["gflops"], gemm_after["gflops"])
    return {
        "tokens_per_s": tokens / wall,
        "model_gflops": flops / wall / 1e9,
        "gemm_gflops": gemm,
        "gemm_before": gemm_before,
        "gemm_after": gemm_after,
        "utilization": flops / wall / 1e9 / gemm,
        "seconds": wall,
        "tokens": tokens,
        "iterations": args.iterations,
        "page_faults_per_step": faults / args.iterations,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "foreign_load": foreign_load(gemm_before, gemm_after, start_load),
    }


def summarize(runs: list[dict]) -> dict:
    from machine import spread

    out: dict = {"runs": runs}
    keys = ("tokens_per_s", "model_gflops", "gemm_gflops", "utilization", "page_faults_per_step")
    for key in keys:
        out[key] = spread([r[key] for r in runs])
    return out


def mode_table(args: argparse.Namespace, device: str) -> list[tuple[str, bool, bool, bool]]:
    """The figures to measure: (name, bf16, native LSTM, batch split)."""
    if device == "cuda":
        return [("cuda_bf16_autocast", True, False, False)]
    modes = [("fp32", False, False, False)]
    modes += [("bf16_autocast", True, False, False)] if args.bf16 else []
    modes += [("fp32_native_lstm", False, True, False)] if args.native_lstm else []
    if args.batch_split:
        modes += [("fp32_batch_split", False, False, True)]
        modes += [("bf16_batch_split", True, False, True)] if args.bf16 else []
    return modes


def measure_interleaved(args: argparse.Namespace, sentences: list[list[int]], device: str,
                        start_load: list[float], modes: list[tuple[str, bool, bool, bool]],
                        thread_counts: list[int]) -> dict[str, dict[str, list[dict]]]:  # fmt: skip
    """``runs[mode]["threads_N"]``: repeat r of every figure is taken before repeat r + 1, so a
    slow drift of a shared machine hits every figure alike and the per-repeat ratios
    (:func:`bf16_speedups`) pair measurements taken close together."""
    runs: dict[str, dict[str, list[dict]]] = {mode[0]: {} for mode in modes}
    for threads in thread_counts:
        for _ in range(args.repeats):
            for mode, bf16, native, split in modes:
                if split and threads < 2:
                    continue  # one part on one thread is the unsplit figure
                run = measure(args, sentences, threads, bf16, device, start_load, native, split)
                runs[mode].setdefault(f"threads_{threads}", []).append(run)
    return runs


def print_figure(mode: str, key: str, s: dict) -> None:
    from machine import flagged

    t, u = s["tokens_per_s"], s["utilization"]
    print(f"{mode:18s} {key}: {t['median']:8.0f} tokens/s "
          f"[{t['min']:.0f}-{t['max']:.0f}]  model {s['model_gflops']['median']:.1f} GFLOP/s  "
          f"GEMM {s['gemm_gflops']['median']:.1f} GFLOP/s  utilization {u['median']:.0%} "
          f"[{u['min']:.0%}-{u['max']:.0%}]  "
          f"{s['page_faults_per_step']['median']:.0f} page faults/step" + flagged(s["foreign_load"]),
          flush=True)  # fmt: skip


def _median_ratio(results: dict, mode: str, base: str) -> float | None:
    """Median tokens/s of ``mode`` on 2 threads over ``base`` on 1 thread (None if not measured)."""
    two = results.get(mode, {}).get("threads_2")
    one = results.get(base, {}).get("threads_1")
    if two is None or one is None:
        return None
    return two["tokens_per_s"]["median"] / one["tokens_per_s"]["median"]


def scalings(results: dict) -> dict[str, float]:
    """Two threads over one, per figure: the intra-op step and the batch split, fp32 and bf16
    (the split over the unsplit one-thread step of the same precision)."""
    names = {
        "scaling_2_over_1_threads": ("fp32", "fp32"),
        "scaling_2_over_1_threads_batch_split": ("fp32_batch_split", "fp32"),
        "scaling_2_over_1_threads_bf16": ("bf16_autocast", "bf16_autocast"),
        "scaling_2_over_1_threads_bf16_batch_split": ("bf16_batch_split", "bf16_autocast"),
    }
    out = {}
    for name, (mode, base) in names.items():
        ratio = _median_ratio(results, mode, base)
        if ratio is not None:
            out[name] = ratio
            print(f"{name}: {ratio:.2f}x")
    return out


def bf16_speedups(raw: dict[str, dict[str, list[dict]]]) -> dict[str, dict[str, float]]:
    """Per thread count, the pipeline step's bf16 tokens/s over its fp32 tokens/s, per repeat
    (median, min, max): on 1 thread the unsplit step, on 2+ the batch split where measured
    (what ``pretrain`` runs), else the intra-op step."""
    from machine import spread

    out = {}
    for key in raw.get("bf16_autocast", {}):
        split = key != "threads_1" and key in raw.get("bf16_batch_split", {})
        bf16 = raw["bf16_batch_split" if split else "bf16_autocast"][key]
        fp32 = raw.get("fp32_batch_split" if split else "fp32", {}).get(key)
        if fp32:
            ratios = [
                b["tokens_per_s"] / f["tokens_per_s"] for b, f in zip(bf16, fp32, strict=True)
            ]
            out[key] = {**spread(ratios), "step": "batch_split" if split else "unsplit"}
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["OMP_WAIT_POLICY"] = args.omp_wait.upper()  # before torch loads OpenMP
    here = Path(__file__).resolve().parent
    sys.path[:0] = [str(here), str(here.parent / "src")]
    from machine import facts, loadavg

    start_load = loadavg()  # before any of our own work enters the load average
    import torch

    from betamcmc.core.errors import BetamcmcError
    from betamcmc.core.heap import keep_freed_memory
    from betamcmc.core.io import write_json

    heap_kept = keep_freed_memory() if args.heap == "keep" else False
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda: torch sees no CUDA device", file=sys.stderr)
        return 2
    try:
        sentences, real_vocab = load_workload(Path(args.data), args.repeat_data, args.vocab)
    except BetamcmcError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    mean_len = sum(len(s) for s in sentences) / len(sentences)
    machine = facts()
    print(f"workload: {args.data} x{args.repeat_data} = {len(sentences)} sentences, mean length "
          f"{mean_len:.1f} words; vocabulary {real_vocab} real + padding = {args.vocab}; "
          f"{machine['cpu_model']} ({', '.join(machine['cpu_flags'])}); device {device}; "
          f"load {start_load[0]:.2f} on {os.cpu_count()} CPUs", flush=True)  # fmt: skip
    results: dict = {
        "workload": {
            "data": args.data, "repeat": args.repeat_data, "sentences": len(sentences),
            "mean_words": mean_len, "vocab": args.vocab, "vocab_real": real_vocab,
            "emb": args.emb, "hidden": args.hidden, "latent": args.latent, "batch_size": args.batch_size,
            "iterations": args.iterations, "warmup": args.warmup, "repeats": args.repeats,
            "device": device,
        },
        "flop_formula": "training = 3 x forward; forward per sentence of L words = "
        "L*2*4H(E+H) + (L+1)*[2*4H(E+Z+H) + 2HV] + 2H*2Z + 2ZH (matrix products only)",
        "utilization_denominator": "median of 7 timed 2048x2048 torch.mm calls at the same thread "
        "count, the larger of the medians just before and just after the timed window",
        "machine": machine,
        "load_at_start": start_load,
        "heap": {"requested": args.heap, "glibc_keeps_freed_memory": heap_kept},
    }  # fmt: skip
    modes = mode_table(args, device)
    thread_counts = [args.threads[0]] if device == "cuda" else args.threads
    raw = measure_interleaved(args, sentences, device, start_load, modes, thread_counts)
    suspicious = []
    for mode, per_threads in raw.items():
        results[mode] = {}
        for key, runs in per_threads.items():
            s = summarize(runs)
            s["foreign_load"] = sorted({r for run in runs for r in run["foreign_load"]})
            results[mode][key] = s
            suspicious += s["foreign_load"]
            print_figure(mode, key, s)
    results.update(scalings(results))
    if "bf16_autocast" in raw:
        results["bf16_speedup"] = bf16_speedups(raw)
        for key, r in results["bf16_speedup"].items():
            print(f"bf16 / fp32, pipeline step, {key}: {r['median']:.2f}x "
                  f"[{r['min']:.2f}-{r['max']:.2f}]")  # fmt: skip
    results["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results["foreign_load"] = sorted(set(suspicious))
    print(f"peak RSS {results['peak_rss_mib']:.0f} MiB")
    if suspicious and args.strict:
        print("error: --strict: the machine was not quiet (" + "; ".join(sorted(set(suspicious)))
              + "); nothing written", file=sys.stderr)  # fmt: skip
        return 3
    write_json(args.out, results)  # atomic: a failed run leaves the old file whole
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
