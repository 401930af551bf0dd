"""Machine facts and the GEMM peak, for every benchmark's JSON (shared by the scripts in bench/).

A throughput figure means something only next to what the same machine can do at that moment:
:func:`gemm_peak` times a float32 ``torch.mm`` of two ``n x n`` matrices several times at the
thread count of the measurement and reports the median (and the spread) of those calls, and
:func:`foreign_load` says whether the samples show another process competing for the cores (the
machine is shared: utilization = model FLOP/s / GEMM FLOP/s is honest only on a quiet machine).

Usage inside a benchmark::

    from machine import facts, gemm_peak, foreign_load
    before = gemm_peak(threads)           # {'gflops': median, 'samples': [...], ...}
    ... measure ...
    after = gemm_peak(threads)
    flags = foreign_load(before, after, start_load)
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

# Samples whose slowest call is more than this much slower than the fastest, or before/after
# medians differing by more than this, indicate that something else used the cores.
SPREAD_LIMIT = 0.15
# CPU time other processes used while a GEMM sample ran (``/proc/stat`` busy time minus this
# process's own CPU time), in cores: above this the sample saw foreign load.
FOREIGN_CORES_LIMIT = 0.25


def cpu_model_and_flags() -> tuple[str, list[str]]:
    model, flags = platform.processor() or "unknown", []
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name") and model in ("", "unknown"):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = line.split(":", 1)[1].split()
    except OSError:
        pass
    wanted = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_bf16", "avx512_vnni",
              "amx_bf16", "amx_tile", "amx_int8")  # fmt: skip
    return model, [f for f in wanted if f in flags]


def facts() -> dict[str, Any]:
    """CPU model and SIMD flags, core count, platform, torch build and its CPU capability, GPU,
    and the code measured (:func:`code_version`)."""
    import torch

    model, flags = cpu_model_and_flags()
    out: dict[str, Any] = {
        "cpu_model": model,
        "cpu_flags": flags,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
        "code": code_version(),
    }
    if torch.cuda.is_available():
        out["cuda_device"] = torch.cuda.get_device_name(0)
        out["cuda_bf16"] = bool(torch.cuda.is_bf16_supported())
    return out


def code_version() -> dict[str, Any]:
    """The commit of the ``betamcmc`` source this process imported, and whether that source had
    uncommitted changes: a figure belongs to the code that produced it (an A/B run imports the
    older code from another checkout). ``commit`` is None outside a git checkout."""
    import betamcmc

    src = Path(betamcmc.__file__).resolve().parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(src), *args], capture_output=True, text=True,
                              timeout=30, check=True)  # fmt: skip
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "."))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None, "source": str(src)}
    return {"commit": commit, "dirty": dirty, "source": str(src)}


def busy_seconds() -> float | None:
    """CPU seconds every process of the machine has used so far (``/proc/stat``), or None."""
    try:
        with open("/proc/stat", encoding="utf-8") as fh:
            f = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (f[0] + f[1] + f[2] + f[5] + f[6]) / os.sysconf("SC_CLK_TCK")


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def mm_gflops(a: Any, b: Any, calls: int, sync: Any = None) -> list[float]:
    """GFLOP/s of each of ``calls`` timed ``torch.mm(a, b)`` (warm up before calling this);
    ``sync`` waits for the device (CUDA) after each call."""
    import torch

    flops = 2 * a.shape[0] * a.shape[1] * b.shape[1]
    rates = []
    for _ in range(calls):
        t = time.perf_counter()
        torch.mm(a, b)
        if sync is not None:
            sync()
        rates.append(flops / (time.perf_counter() - t) / 1e9)
    return rates


def gemm_peak(threads: int, n: int = 2048, calls: int = 7, device: str = "cpu",
              dtype: str = "float32") -> dict[str, Any]:  # fmt: skip
    """Median GFLOP/s of ``calls`` timed ``torch.mm`` calls (n x n) at ``threads`` threads."""
    import torch

    torch.set_num_threads(threads)
    dt = getattr(torch, dtype)
    a = torch.randn(n, n, device=device, dtype=dt)
    b = torch.randn(n, n, device=device, dtype=dt)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    torch.mm(a, b)  # warm-up (page faults, thread pool start)
    sync()
    busy0, own0, wall0 = busy_seconds(), time.process_time(), time.perf_counter()
    rates = mm_gflops(a, b, calls, sync)
    busy1, own1, wall = busy_seconds(), time.process_time(), time.perf_counter() - wall0
    foreign = None
    if busy0 is not None and busy1 is not None and device == "cpu":
        foreign = round(max(0.0, (busy1 - busy0) - (own1 - own0)) / wall, 3)
    return {
        "foreign_cores": foreign,
        "gflops": statistics.median(rates),
        "min": min(rates),
        "max": max(rates),
        "samples": [round(r, 2) for r in rates],
        "n": n,
        "calls": calls,
        "threads": threads,
        "device": device,
        "dtype": dtype,
    }


def foreign_load(before: dict[str, Any], after: dict[str, Any],
                 start_load: list[float] | None = None) -> list[str]:  # fmt: skip
    """Reasons to distrust a measurement (empty when it looks clean).

    - a GEMM sample's slowest call is > SPREAD_LIMIT slower than its fastest;
    - the medians before and after the measurement differ by > SPREAD_LIMIT;
    - other processes used more than FOREIGN_CORES_LIMIT cores while a sample ran;
    - ``start_load``: the 1-minute load average when the benchmark started (before any of its own
      work, which the load average would otherwise count) was above 0.5.
    """
    reasons = []
    for name, g in (("before", before), ("after", after)):
        if g["max"] > (1 + SPREAD_LIMIT) * g["min"]:
            reasons.append(f"GEMM samples {name} spread {g['min']:.0f}-{g['max']:.0f} GFLOP/s")
    for name, g in (("before", before), ("after", after)):
        if (g.get("foreign_cores") or 0.0) > FOREIGN_CORES_LIMIT:
            reasons.append(f"other processes used {g['foreign_cores']:.2f} cores during {name}")
    lo, hi = sorted((before["gflops"], after["gflops"]))
    if hi > (1 + SPREAD_LIMIT) * lo:
        reasons.append(f"GEMM median moved {before['gflops']:.0f} -> {after['gflops']:.0f} GFLOP/s")
    if start_load is not None and start_load[0] > 0.5:
        reasons.append(f"load average {start_load[0]:.2f} when the benchmark started")
    return reasons


def flagged(reasons: list[str]) -> str:
    """The tail of a benchmark's printed line: its :func:`foreign_load` reasons, if any."""
    return f"  FLAGGED: {'; '.join(reasons)}" if reasons else ""


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max of repeated measurements (how every bench reports a figure)."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}
