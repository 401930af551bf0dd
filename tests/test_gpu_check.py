"""``bench/gpu_check.py`` (issue 30, item 8): the one script that checks every CUDA path on the
day a GPU is lent. Here its CPU dry run, on a subset of the checks (the full dry run takes
about 100 s on 2 cores; ``python bench/gpu_check.py --cpu`` runs it all)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO

CUDA_PATHS = ("pretrain", "classify", "dialog", "vae_head", "sgmcmc_single", "sgmcmc_downpour",
              "sgmcmc_elastic", "bench")  # fmt: skip


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def test_it_lists_every_cuda_path():
    proc = _run("--list")
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[0] for line in proc.stdout.splitlines()]
    assert names == ["prepare", *CUDA_PATHS]


def test_an_unknown_check_is_one_line():
    proc = _run("--only", "pretrain,warp_drive")
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        "error: --only: no check warp_drive (known: prepare, pretrain, classify, dialog, "
        "vae_head, sgmcmc_single, sgmcmc_downpour, sgmcmc_elastic, bench)"
    ]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the real check would run")
def test_without_a_gpu_it_says_so_in_one_line():
    proc = _run("--only", "prepare")
    assert proc.returncode != 0 and "torch sees no CUDA device" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_cpu_dry_run_passes_pretrain_in_bf16_and_the_bench(tmp_path: Path):
    out = tmp_path / "check.json"
    proc = _run("--cpu", "--only", "prepare,pretrain,bench", "--json", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(("PASS", "FAIL"))]
    assert [ln.split()[:2] for ln in lines] == [
        ["PASS", "prepare"],
        ["PASS", "pretrain"],
        ["PASS", "bench"],
    ]
    assert "bf16 GEMM peak" in lines[2]
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and all(c["passed"] for c in result["checks"])
    assert "3/3 passed" in proc.stdout
