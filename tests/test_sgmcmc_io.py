"""Bad sgmcmc params, the IDX loader and MNIST CNN task, the samples file format."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from betamcmc.core.errors import InputError, ParamsError
from betamcmc.params import validate_params
from betamcmc.sgmcmc.engine.flat import all_finite
from betamcmc.sgmcmc.engine.samples import SampleWriter, read_samples
from betamcmc.sgmcmc.tasks import build_task, read_idx

from conftest import run_stage, shipped_section, tiny_params, write_params


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"items": {"single-0": {"protocol": "single", "workers": 0}}},
            "sgmcmc.items.single-0.workers: must be >= 1 (got 0)",
        ),
        (
            {"items": {"single-1": {"protocol": "sync", "workers": 1}}},
            "'single-1' must be named 'sync-1'",
        ),
        ({"seeds": [0, 0]}, "sgmcmc.seeds: must be distinct"),
        ({"period": 0}, "sgmcmc.period: must be >= 1 (got 0)"),
        ({"alpha": 1.5}, "sgmcmc.alpha: must be <= 1.0 (got 1.5)"),
        ({"alpha": 0.0}, "sgmcmc.alpha: must be > 0.0 (got 0.0)"),
        ({"sampler": {"step_size": -1.0}}, "sgmcmc.sampler.step_size: must be > 0.0 (got -1.0)"),
        (
            {"items": {"gossip-2": {"protocol": "gossip", "workers": 2}}},
            "sgmcmc.items.gossip-2.protocol: must be one of",
        ),
        ({"task": {"kind": "mnist"}}, "path is required when kind is 'mnist'"),
    ],
)
def test_bad_params_one_line(override: dict, message: str) -> None:
    with pytest.raises(ParamsError) as err:
        validate_params(tiny_params({"sgmcmc": override}))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_stage_bad_params_exit_2_nothing_written(tmp_path: Path) -> None:
    write_params(tmp_path / "params.yaml", tiny_params({"sgmcmc": {"period": 0}}))
    (tmp_path / "stages").mkdir()
    stage = Path(__file__).resolve().parents[1] / "stages" / "sgmcmc.py"
    (tmp_path / "stages" / "sgmcmc.py").write_text(stage.read_text())
    proc = run_stage(tmp_path, "sgmcmc", "downpour", "2", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "sgmcmc.period: must be >= 1 (got 0)" in proc.stderr
    assert not (tmp_path / "models").exists() and not (tmp_path / "metrics").exists()
    write_params(tmp_path / "params.yaml", tiny_params())
    proc = run_stage(tmp_path, "sgmcmc", "gossip", "2", check=False)
    assert proc.returncode == 2 and "sgmcmc.protocols: must be one of" in proc.stderr
    proc = run_stage(tmp_path, "sgmcmc", "downpour", "0", check=False)
    assert proc.returncode == 2 and "sgmcmc.workers: must be >= 1 (got 0)" in proc.stderr
    proc = run_stage(tmp_path, "sgmcmc", "sync", "2", check=False)  # a pair that is no item
    assert proc.returncode == 2 and "sgmcmc.items: must be one of 'single-1'" in proc.stderr
    assert "(got 'sync-2')" in proc.stderr
    assert not (tmp_path / "models").exists()


def write_idx(path: Path, array: np.ndarray) -> None:
    code = {np.uint8: 0x08}[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


def write_tiny_mnist(root: Path, n_train: int = 40, n_test: int = 12) -> None:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
        write_idx(root / f"{split}-images-idx3-ubyte", images)
        write_idx(root / f"{split}-labels-idx1-ubyte", labels)


def test_idx_round_trip_and_errors(tmp_path: Path) -> None:
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.idx", a)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx"), a)
    (tmp_path / "bad.idx").write_bytes((tmp_path / "a.idx").read_bytes()[:-1])
    with pytest.raises(InputError, match="needs 24"):
        read_idx(tmp_path / "bad.idx")
    (tmp_path / "junk.idx").write_bytes(b"\x01\x02\x08\x01")
    with pytest.raises(InputError, match="not an IDX file"):
        read_idx(tmp_path / "junk.idx")


def test_mnist_cnn_task(tmp_path: Path) -> None:
    write_tiny_mnist(tmp_path / "mnist")
    task = build_task(
        shipped_section("sgmcmc.task", kind="mnist", path=str(tmp_path / "mnist"), channels=2),
        batch_size=8,
    )
    assert task.n_train == 40 and len(task.test_targets) == 12
    torch.manual_seed(0)
    model = task.build_model()
    loss = task.minibatch_nll(model, torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters())
    assert task.test_log_probs(model).shape == (12, 10)
    with pytest.raises(InputError, match="missing train-images"):
        build_task(shipped_section("sgmcmc.task", kind="mnist", path=str(tmp_path)), batch_size=8)


def test_samples_file_survives_a_torn_record(tmp_path: Path) -> None:
    layout = [("w", [2, 3]), ("b", [2])]
    writer = SampleWriter(tmp_path / "s", layout, {"protocol": "test"})
    thetas = [np.arange(8, dtype=np.float32) + i for i in range(3)]
    for i, theta in enumerate(thetas):
        writer.append(chain=i % 2, step=10 * i, wall_s=0.5 * i, grad_evals=100 * i, theta=theta)
    writer.close()
    data = tmp_path / "s" / "samples.bin"
    with open(data, "ab") as fh:  # a crash in the middle of the 4th record
        fh.write(b"\x00" * 17)
    s = read_samples(tmp_path / "s")
    assert len(s) == 3 and s.header["dim"] == 8 and s.header["protocol"] == "test"
    np.testing.assert_array_equal(s.theta, np.stack(thetas))  # one record buffer, reused
    assert s.step.tolist() == [0, 10, 20] and s.chain.tolist() == [0, 1, 0]
    assert s.grad_evals.tolist() == [0, 100, 200] and s.wall_s[1] == 0.5


@pytest.mark.parametrize(
    ("values", "finite"),
    [
        ([0.0, -1.5, 2.0], True),
        ([3e38, 3e38, -1.0], True),  # the sum overflows: the elementwise check decides
        ([1.0, float("nan"), 2.0], False),
        ([1.0, float("inf")], False),
        ([float("-inf"), 1.0], False),
        ([float("inf"), float("-inf")], False),  # the sum is NaN
        ([float("nan")], False),
    ],
)
def test_all_finite_matches_the_elementwise_check(values: list[float], finite: bool) -> None:
    """The master's and the workers' divergence check (a sum first, elementwise on doubt)."""
    big = torch.zeros(75_000)
    big[: len(values)] = torch.tensor(values)
    for vector in (torch.tensor(values, dtype=torch.float32), big, big.flip(0)):
        assert all_finite(vector) is finite is bool(torch.isfinite(vector).all())
