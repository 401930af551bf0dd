"""``runtime.precision`` (issue 30, item 5): which precision ``auto`` picks on which hardware,
bf16 autocast in the training step (also inside the batch split's threads), determinism within
a precision, and the precision the stage reports (first line, metrics file, MLflow)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import mlflow
import pytest
import torch

from betamcmc.core import runner
from betamcmc.core.errors import ParamsError
from betamcmc.core.runner import describe_precision, resolve_precision
from betamcmc.params import validate_params
from betamcmc.vae.model import TextVAE, VAEConfig, pad_batch
from betamcmc.vae.split import BatchSplitter
from betamcmc.vae.step import make_optimizer, precision_autocast, train_step
from betamcmc.vae.train import train_vae

from conftest import PipelineRun, tiny_params

ZEN4 = frozenset({"avx2", "avx512f", "avx512_bf16"})
SAPPHIRE_RAPIDS = frozenset({"avx2", "avx512f", "amx_tile", "amx_bf16"})
AVX2_ONLY = frozenset({"avx", "avx2", "fma"})


@pytest.mark.parametrize(
    ("setting", "flags", "resolved"),
    [
        ("auto", ZEN4, "bf16"),
        ("auto", SAPPHIRE_RAPIDS, "bf16"),
        ("auto", AVX2_ONLY, "fp32"),  # emulated bf16 is slower than fp32: auto keeps fp32
        ("fp32", ZEN4, "fp32"),
        ("bf16", AVX2_ONLY, "bf16"),  # asked for explicitly: runs, emulated
        ("bf16", ZEN4, "bf16"),
    ],
)
def test_auto_picks_bf16_only_on_native_bf16_cpus(setting: str, flags: frozenset, resolved: str):
    assert resolve_precision(setting, "cpu", flags) == resolved


def test_the_first_line_says_which_and_why(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(runner, "_cpu_flags", lambda: ZEN4)
    assert describe_precision("auto", "bf16", "cpu") == (
        "precision bf16 (runtime.precision auto: avx512_bf16)"
    )
    assert describe_precision("fp32", "fp32", "cpu") == "precision fp32"
    monkeypatch.setattr(runner, "_cpu_flags", lambda: AVX2_ONLY)
    assert describe_precision("auto", "fp32", "cpu") == (
        "precision fp32 (runtime.precision auto: no native bf16 on this CPU)"
    )
    assert "emulated" in describe_precision("bf16", "bf16", "cpu")


def test_bf16_on_a_cuda_card_without_it_is_an_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", "cuda") == "fp32"
    with pytest.raises(ParamsError, match=r"runtime.precision: .*no bf16"):
        resolve_precision("bf16", "cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", "cuda") == "bf16"


def test_the_setting_is_validated():
    with pytest.raises(ParamsError, match=r"runtime.precision"):
        validate_params(tiny_params({"runtime": {"precision": "fp16"}}))
    assert validate_params(tiny_params()).runtime.precision == "fp32"  # the shipped default


def _model() -> TextVAE:
    torch.manual_seed(0)
    cfg = VAEConfig(vocab_size=40, emb_dim=12, hidden_dim=16, latent_dim=4, bidirectional=False,
                    z_to_decoder="both", dropout=0.2, word_dropout=0.1)  # fmt: skip
    return TextVAE(cfg).train()


def _batch(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    sents = [torch.randint(4, 40, (int(k),), generator=gen).tolist()
             for k in torch.randint(3, 9, (n,), generator=gen)]  # fmt: skip
    return pad_batch(sents)


def test_bf16_autocast_runs_the_products_in_bf16_and_the_latent_in_fp32():
    model = _model()
    ids, lengths = _batch()
    with precision_autocast("cpu", "bf16"):
        mu, logvar = model.encode(ids, lengths)
        hidden = model.output(torch.randn(3, 16))
    assert hidden.dtype == torch.bfloat16  # the matrix products
    assert mu.dtype == logvar.dtype == torch.float32  # KL and reparameterization in fp32
    with precision_autocast("cpu", "fp32"):
        assert model.output(torch.randn(3, 16)).dtype == torch.float32
    with pytest.raises(ValueError, match="resolved fp32 or bf16"):
        precision_autocast("cpu", "auto")


def _steps(precision: str, parts: int, steps: int = 3) -> list[torch.Tensor]:
    """The weights after a few training steps (batch split over ``parts`` threads if > 1)."""
    model, (ids, lengths) = _model(), _batch()
    opt = make_optimizer(model, 1e-2)
    torch.manual_seed(3)
    splitter = BatchSplitter(parts) if parts > 1 else None
    try:
        for it in range(steps):
            train_step(model, opt, ids, lengths, 0.5, 5.0, "test", it, splitter, precision)
    finally:
        if splitter is not None:
            splitter.close()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("parts", [1, 2])
def test_deterministic_within_a_precision_and_bf16_really_applies(parts: int):
    bf16_a, bf16_b, fp32 = _steps("bf16", parts), _steps("bf16", parts), _steps("fp32", parts)
    assert all(torch.equal(a, b) for a, b in zip(bf16_a, bf16_b, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(bf16_a, fp32, strict=True))
    for a, b in zip(bf16_a, fp32, strict=True):  # a few steps apart by bf16 rounding only
        torch.testing.assert_close(a, b, rtol=0.05, atol=0.02)


def _loss(parts: int, precision: str, pass_autocast: bool = True) -> float:
    """One forward pass's loss, unsplit or split over ``parts`` threads (the same draws)."""
    model, (ids, lengths) = _model(), _batch(8)
    torch.manual_seed(0)
    if parts == 1:
        with precision_autocast("cpu", precision):
            return float(model(ids, lengths, 0.5)["loss"].detach())
    autocast = functools.partial(precision_autocast, "cpu", precision)
    with BatchSplitter(parts) as splitter, precision_autocast("cpu", precision):
        if pass_autocast:
            out, _ = splitter.forward_backward(model, ids, lengths, 0.5, autocast)
        else:  # only the calling thread under autocast
            out, _ = splitter.forward_backward(model, ids, lengths, 0.5)
    return float(out["loss"])


def test_the_batch_split_threads_run_under_the_callers_precision():
    """Autocast is per thread: entered in each part, the split bf16 loss is the unsplit bf16
    loss (up to the order of sums); entered in the calling thread only, it would be fp32's."""
    plain_bf16, plain_fp32 = _loss(1, "bf16"), _loss(1, "fp32")
    assert abs(plain_bf16 - plain_fp32) > 5e-5  # bf16 rounding shows in the loss
    assert abs(_loss(2, "bf16") - plain_bf16) < 1e-5
    assert abs(_loss(2, "bf16", pass_autocast=False) - plain_fp32) < 1e-5
    assert abs(_loss(2, "fp32") - plain_fp32) < 1e-5


def test_train_vae_reports_the_resolved_precision_and_repeats():
    params = validate_params(tiny_params({"runtime": {"precision": "bf16"}}))
    sents = [[4, 5, 6, 7], [8, 9], [10, 4, 4, 5, 6]] * 10
    runs = [
        train_vae(sents, sents[:6], 12, params.pretrain, params.runtime, "cyclical", 0)
        for _ in range(2)
    ]
    assert runs[0].extra["precision"] == "bf16"
    assert runs[0].history == runs[1].history
    assert runs[0].valid_history == runs[1].valid_history


@pytest.mark.slow
def test_the_stage_reports_its_precision(pipeline: PipelineRun):
    """The shipped default (fp32) in pretrain's first line, its metrics file and MLflow."""
    repo: Path = pipeline.repo
    assert "iterations each, device cpu, precision fp32" in pipeline.output
    metrics = json.loads((repo / "metrics" / "pretrain" / "cyclical.json").read_text())
    assert metrics["precision"] == "fp32"
    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("betamcmc")
    parent = client.search_runs(
        [exp.experiment_id], filter_string="tags.stage = 'pretrain' and tags.schedule = 'cyclical'"
    )[0]
    assert parent.data.params["precision"] == "fp32"
    seeds = client.search_runs([exp.experiment_id], filter_string="tags.stage = 'pretrain_seed'")
    assert seeds and {r.data.tags["precision"] for r in seeds} == {"fp32"}


def test_the_bench_pairs_bf16_and_fp32_per_repeat_on_the_pipelines_step():
    """``bench/pretrain_throughput.py --bf16 --batch-split``: the figures it measures and the
    bf16 / fp32 ratio of the step pretrain runs (unsplit on 1 thread, split on 2)."""
    import argparse
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import pretrain_throughput as bench

    args = argparse.Namespace(bf16=True, native_lstm=False, batch_split=True)
    assert [m[0] for m in bench.mode_table(args, "cpu")] == [
        "fp32", "bf16_autocast", "fp32_batch_split", "bf16_batch_split"
    ]  # fmt: skip
    assert [m[0] for m in bench.mode_table(args, "cuda")] == ["cuda_bf16_autocast"]

    def runs(*rates: float) -> list[dict]:
        return [{"tokens_per_s": r} for r in rates]

    raw = {
        "fp32": {"threads_1": runs(100, 110), "threads_2": runs(150, 150)},
        "bf16_autocast": {"threads_1": runs(200, 165), "threads_2": runs(180, 180)},
        "fp32_batch_split": {"threads_2": runs(160, 200)},
        "bf16_batch_split": {"threads_2": runs(320, 300)},
    }
    speedups = bench.bf16_speedups(raw)
    assert speedups["threads_1"] == {"median": 1.75, "min": 1.5, "max": 2.0, "step": "unsplit"}
    assert speedups["threads_2"] == {"median": 1.75, "min": 1.5, "max": 2.0, "step": "batch_split"}
