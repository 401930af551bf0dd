"""glibc's heap keeps freed memory (betamcmc.core.heap): fewer page faults, the same numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="betamcmc.core.heap tunes glibc's malloc (Linux only)",
)

# In a fresh process: a thread (as the batch split's) runs 20 "steps", each allocating, touching
# and freeing tensors of a few MB whose sizes vary from step to step (as a batch's length does),
# about 80-120 MB at once; prints the minor page faults those steps took.
_FAULTS = """
import json, resource, sys, threading
import torch
if sys.argv[1] == "keep":
    from betamcmc.core.heap import keep_freed_memory
    assert keep_freed_memory()
torch.set_num_threads(1)
out = {}
def step(k):
    scale = 1 + (k * 7 % 5) / 10
    sizes = (5 << 20, 5 << 20, 3 << 20, 2 << 20, 1 << 20, 2 << 20, 2 << 20)  # floats
    tensors = [torch.empty(int(n * scale)).fill_(1.0) for n in sizes]
    del tensors
def work():
    for k in range(3):
        step(k)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for k in range(20):
        step(k)
    out["faults"] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
t = threading.Thread(target=work); t.start(); t.join()
print(json.dumps(out))
"""


def _faults(heap: str) -> int:
    proc = subprocess.run([sys.executable, "-c", _FAULTS, heap], cwd=REPO, capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])["faults"]


@glibc
def test_kept_heap_reuses_freed_blocks_without_page_faults() -> None:
    # glibc's defaults hand the thread arena's emptied segments back to the kernel and fault
    # them in again on the next step (~90,000 faults here, ~350 MB); the kept heap reuses them
    default, keep = _faults("default"), _faults("keep")
    assert default > 3 * keep, (default, keep)


@glibc
def test_keep_freed_memory_takes_effect_once() -> None:
    from betamcmc.core import heap

    assert heap.keep_freed_memory() is True
    assert heap.keep_freed_memory() is True
    assert heap.keep_freed_memory.cache_info().misses == 1  # mallopt is called once per process


def test_keep_freed_memory_is_a_no_op_off_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    from betamcmc.core import heap

    monkeypatch.setattr(heap.sys, "platform", "darwin")
    assert heap._glibc() is None
