"""GPU placement of the sampling stages: one GPU per worker (round robin), nccl for ``sync`` only
when every worker has its own GPU, and the SGD baseline on the resolved device.

The placement rules are checked on any machine (the GPU count is patched); the runs on a real GPU
skip, with the reason, where torch sees no CUDA device."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from betamcmc.core.pipeline import StageItem
from betamcmc.params import validate_params
from betamcmc.sgmcmc.experiment import make_spec

from conftest import tiny_params

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")


@pytest.mark.parametrize(
    ("gpus", "workers", "devices", "nccl"),
    [
        (1, 2, ["cuda:0", "cuda:0"], False),  # two ranks on one GPU: nccl would refuse, gloo
        (2, 2, ["cuda:0", "cuda:1"], True),
        (2, 4, ["cuda:0", "cuda:1", "cuda:0", "cuda:1"], False),
        (8, 4, ["cuda:0", "cuda:1", "cuda:2", "cuda:3"], True),
    ],
)
def test_one_gpu_per_worker_and_nccl_only_without_sharing(
    monkeypatch: pytest.MonkeyPatch, gpus: int, workers: int, devices: list[str], nccl: bool
) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    spec = make_spec(validate_params(tiny_params()), "sync", workers, device="cuda")
    assert [spec.worker_device(r) for r in range(1, workers + 1)] == devices
    assert spec.nccl_workers() is nccl
    cpu = make_spec(validate_params(tiny_params()), "sync", workers, device="cpu")
    assert cpu.worker_device(1) == "cpu" and cpu.nccl_workers() is False


@needs_cuda
@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["downpour", "sync"])
def test_protocols_run_on_the_gpu(tmp_path: Path, protocol: str) -> None:
    from betamcmc.sgmcmc.engine.launch import run_local

    spec = make_spec(validate_params(tiny_params()), protocol, 2, device="cuda")
    result = run_local(spec, tmp_path)
    assert result.complete and result.dead == []


@needs_cuda
@pytest.mark.slow
def test_sgd_baseline_runs_on_the_gpu(tmp_path: Path) -> None:
    from betamcmc.core.runner import resolve_device
    from betamcmc.sgmcmc.baseline import run_sgd

    params = validate_params(tiny_params({"device": "auto"}))
    device = resolve_device(params.device)
    assert device == "cuda"
    runs = {}
    for where in (device, "cpu"):  # the same seed and data on both: the same model up to rounding
        (tmp_path / where).mkdir()
        stage = StageItem(
            "sgmcmc_sgd",
            outs=[str(tmp_path / where / "m")],
            metrics=[str(tmp_path / where / "sgd.json")],
        )
        runs[where] = run_sgd(params, stage, device=where, track=False)
    assert runs["cuda"]["accuracy"] == pytest.approx(runs["cpu"]["accuracy"], abs=0.05)
