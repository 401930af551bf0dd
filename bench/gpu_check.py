"""Every CUDA path of the project on tiny configs, one PASS / FAIL line each (issue 30, item 8).

The project's machines have no GPU, so the CUDA paths are tested only where one is lent
(``tests/test_gpu.py``, ``tests/test_sgmcmc_gpu.py`` skip elsewhere). This script is the one call
that validates all of them on the day a device is available, in a few minutes: it builds a
temporary copy of the project (git-tracked files, working-tree content) with the test suite's
tiny params (``tests/conftest.py``: ``tiny_params``), ``device: cuda`` and
``runtime.precision: bf16``, runs the real stage scripts there the way DVC does, and checks
their exit code, their metrics file and, for ``pretrain``, that its first line names the device
and the precision. The checks:

- ``prepare``: the tiny synthetic corpus (what the others read; no CUDA);
- ``pretrain``: the VAE of schedule ``cyclical`` trained on the GPU under bf16 autocast;
- ``classify``: that VAE's codes (loaded from the GPU-trained checkpoint; the classifiers are
  scikit-learn's, on the CPU);
- ``dialog``: the dialog CVAE on the GPU (bf16 autocast where the card has it);
- ``vae_head``: the Bayesian classifier head on the codes, SG-MCMC on the GPU;
- ``sgmcmc_single``, ``sgmcmc_downpour``, ``sgmcmc_elastic``: the sampling engine, workers on
  the GPU (``single`` with W = 1, the asynchronous protocols with W = 2 on one card);
- ``bench``: ``bench/pretrain_throughput.py --device cuda`` (the PTB-sized model, 3 repeats) with
  the GPU's own bf16 GEMM peak, on ``../shared/data/ptb/valid.txt`` when present, else on the tiny
  corpus's text.

``--cpu`` is the dry run: the same checks with ``device: cpu`` (bf16 autocast on the CPU, emulated
where it has no native bf16) and a tiny throughput bench; the suite runs a subset of it
(``tests/test_gpu_check.py``). Exit code 0 when every check passed, 1 otherwise.

Usage::

    python bench/gpu_check.py                      # on a GPU machine (under 8 minutes)
    python bench/gpu_check.py --cpu                # dry run on the CPU
    python bench/gpu_check.py --cpu --only prepare,pretrain,bench
    python bench/gpu_check.py --list               # the checks, one per line
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PTB = REPO.parent / "shared" / "data" / "ptb" / "valid.txt"


@dataclass(frozen=True)
class Check:
    """One check: a stage script run in the tiny project, and what must hold afterwards."""

    name: str
    what: str  # the CUDA path it covers, as its line says
    script: str  # stages/<script>.py
    args: tuple[str, ...] = ()
    stage: str = ""  # the dvc.yaml stage whose metrics file must exist afterwards
    dims: dict[str, object] = field(default_factory=dict)
    needs: tuple[str, ...] = ()  # checks that must have passed first
    expect: tuple[str, ...] = ()  # substrings of stdout ({device}, {precision} filled in)


CHECKS = (
    Check("prepare", "tiny synthetic corpus", "prepare", (), "prepare"),
    Check("pretrain", "VAE training under bf16 autocast", "pretrain", ("cyclical",), "pretrain",
          {"schedule": "cyclical"}, ("prepare",), ("device {device}", "precision bf16")),
    Check("classify", "codes of the GPU-trained VAE", "classify", ("cyclical",), "classify",
          {"schedule": "cyclical"}, ("pretrain",)),
    Check("dialog", "dialog CVAE", "dialog", ("cyclical", "--bow", "bow"), "dialog",
          {"schedule": "cyclical", "bow": "bow"}, ("pretrain",)),
    Check("vae_head", "Bayesian head (SG-MCMC on the codes)", "sgmcmc_vae_head", ("cyclical",),
          "sgmcmc_vae_head", {"schedule": "cyclical"}, ("pretrain",)),
    Check("sgmcmc_single", "SG-MCMC single, W = 1", "sgmcmc", ("single", "1"), "sgmcmc",
          {"protocol": "single", "workers": 1}),
    Check("sgmcmc_downpour", "SG-MCMC downpour, W = 2", "sgmcmc", ("downpour", "2"), "sgmcmc",
          {"protocol": "downpour", "workers": 2}),
    Check("sgmcmc_elastic", "SG-MCMC elastic, W = 2", "sgmcmc", ("elastic", "2"), "sgmcmc",
          {"protocol": "elastic", "workers": 2}),
    Check("bench", "throughput bench + GEMM peak", "", (), "", {}, ("prepare",)),
)  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpu", action="store_true", help="dry run: device cpu, tiny bench")
    ap.add_argument("--only", default="", help="comma-separated check names (default: all)")
    ap.add_argument("--list", action="store_true", help="print the checks and exit")
    ap.add_argument("--timeout", type=float, default=240.0, help="seconds per check")
    ap.add_argument("--keep", default="", help="build the tiny project here and keep it")
    ap.add_argument("--json", default="", help="also write the results to this JSON file")
    return ap.parse_args(argv)


def selected(only: str) -> list[Check]:
    """The checks ``--only`` names, in :data:`CHECKS` order (an unknown name is an error)."""
    if not only:
        return list(CHECKS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = sorted(set(names) - {c.name for c in CHECKS})
    if unknown:
        raise SystemExit(f"error: --only: no check {', '.join(unknown)} "
                         f"(known: {', '.join(c.name for c in CHECKS)})")  # fmt: skip
    return [c for c in CHECKS if c.name in names]


def build_project(dest: Path, device: str) -> Path:
    """The tiny project: the suite's ``copy_repo`` + ``tiny_params`` with the check's device and
    bf16 (one place for the tiny sizes: ``tests/conftest.py``)."""
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import copy_repo, tiny_params, write_params

    repo = copy_repo(dest)
    params = tiny_params({"device": device, "runtime": {"precision": "bf16"}})
    write_params(repo / "params.yaml", params)
    return repo


def run_script(repo: Path, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``python <argv>`` in ``repo`` as DVC would (the project's own MLflow store)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["BETAMCMC_PROGRESS"] = "off"
    try:
        return subprocess.run([sys.executable, *argv], cwd=repo, env=env, capture_output=True,
                              text=True, timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired as err:
        return subprocess.CompletedProcess(
            argv, 124, _text(err.stdout), f"timed out after {timeout:.0f} s"
        )


def _text(out: bytes | str | None) -> str:
    return out.decode(errors="replace") if isinstance(out, bytes) else (out or "")


def stage_outcome(repo: Path, check: Check, device: str, timeout: float) -> tuple[bool, str]:
    """Run the check's stage; passed, and the detail its line shows."""
    from betamcmc.core import pipeline

    proc = run_script(repo, [f"stages/{check.script}.py", *check.args], timeout)
    if proc.returncode != 0:
        return False, f"exit {proc.returncode}: {_last_line(proc.stderr or proc.stdout)}"
    missing = [e for e in (x.format(device=device) for x in check.expect) if e not in proc.stdout]
    if missing:
        return False, f"stdout lacks {missing}: {_last_line(proc.stdout)}"
    metrics = pipeline.stage_item(check.stage, repo / "dvc.yaml", **check.dims).path(".json")
    try:
        json.loads((repo / metrics).read_text())
    except (OSError, ValueError) as err:
        return False, f"no readable {metrics}: {err}"
    return True, _last_line(proc.stdout)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:160] if lines else "(no output)"


def workload_text(repo: Path) -> Path:
    """The throughput bench's corpus: PTB's sample where present, else the tiny corpus as text."""
    if PTB.exists():
        return PTB
    from betamcmc.data.prepared import load_prepared

    corpus = load_prepared(repo / "data" / "prepared")
    path = repo / "bench_workload.txt"
    lines = [corpus.vocab.decode(s.ids) for s in corpus.sentences["train"]]
    path.write_text("\n".join(ln for ln in lines if ln.strip()) + "\n", encoding="utf-8")
    return path


def bench_outcome(repo: Path, device: str, timeout: float) -> tuple[bool, str]:
    """``bench/pretrain_throughput.py`` on ``device``; on the GPU the PTB-sized step in bf16."""
    out = repo / "throughput.json"
    argv = [str(REPO / "bench" / "pretrain_throughput.py"), "--device", device,
            "--data", str(workload_text(repo)), "--out", str(out)]  # fmt: skip
    if device == "cuda":
        argv += ["--threads", "1", "--iterations", "20", "--warmup", "5", "--repeats", "3"]
    else:  # the dry run: a few steps of a tiny model, fp32 and bf16
        argv += ["--threads", "1", "--iterations", "2", "--warmup", "1", "--repeats", "1",
                 "--emb", "16", "--hidden", "16", "--latent", "4", "--bf16",
                 "--gemm-size", "256"]  # fmt: skip
    proc = run_script(repo, argv, timeout)
    if proc.returncode != 0:
        return False, f"exit {proc.returncode}: {_last_line(proc.stderr or proc.stdout)}"
    res = json.loads(out.read_text())
    fig = res["cuda_bf16_autocast" if device == "cuda" else "bf16_autocast"]["threads_1"]
    tokens, gemm = fig["tokens_per_s"]["median"], fig["gemm_gflops"]["median"]
    if not (tokens > 0 and gemm > 0):
        return False, f"tokens/s {tokens}, GEMM {gemm} GFLOP/s"
    util = fig["utilization"]["median"]
    return (
        True,
        f"{tokens:,.0f} tokens/s, bf16 GEMM peak {gemm:,.0f} GFLOP/s, utilization {util:.1%}",
    )


def run_checks(checks: list[Check], repo: Path, device: str, timeout: float) -> list[dict]:
    """Each check in order, one line each as it finishes; a check whose prerequisite failed or
    was not selected-and-passed fails without running."""
    passed: set[str] = set()
    names = {c.name for c in checks}
    results = []
    for check in checks:
        t0 = time.perf_counter()
        blocked = [n for n in check.needs if n in names and n not in passed]
        if blocked:
            ok, detail = False, f"not run: {', '.join(blocked)} failed"
        elif check.name == "bench":
            ok, detail = bench_outcome(repo, device, timeout)
        else:
            ok, detail = stage_outcome(repo, check, device, timeout)
        seconds = time.perf_counter() - t0
        if ok:
            passed.add(check.name)
        print(f"{'PASS' if ok else 'FAIL'}  {check.name:16s} {check.what:38s} {seconds:6.1f} s  "
              f"{detail}", flush=True)  # fmt: skip
        results.append({"check": check.name, "passed": ok, "seconds": seconds, "detail": detail})
    return results


def device_or_error(cpu: bool) -> str:
    """``cpu`` for the dry run; ``cuda`` only where torch sees a GPU (else a one-line error)."""
    if cpu:
        return "cpu"
    import torch  # lazy: --list and --help need no torch

    if not torch.cuda.is_available():
        raise SystemExit("error: torch sees no CUDA device (a CUDA build of torch 2.13.0 in "
                         ".venv on a GPU machine); --cpu runs the dry run")  # fmt: skip
    return "cuda"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    checks = selected(args.only)
    if args.list:
        for c in checks:
            print(f"{c.name:16s} {c.what}")
        return 0
    sys.path.insert(0, str(REPO / "src"))
    device = device_or_error(args.cpu)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        repo = build_project(Path(args.keep or tmp) / "repo", device)
        print(
            f"gpu_check: device {device}, tiny project {repo}, {len(checks)} check(s)", flush=True
        )
        results = run_checks(checks, repo, device, args.timeout)
    failed = [r["check"] for r in results if not r["passed"]]
    total = time.perf_counter() - t0
    print(f"gpu_check: {len(results) - len(failed)}/{len(results)} passed in {total:.0f} s"
          + (f"; failed: {', '.join(failed)}" if failed else ""))  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device, "seconds": total,
                                               "checks": results}, indent=2) + "\n")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
