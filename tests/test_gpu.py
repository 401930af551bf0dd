"""The GPU path (`device: auto` with CUDA present): the VAE really trains on the card, with bf16
autocast where supported. Skipped with the reason on CPU-only machines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import copy_repo, run_stage, tiny_params, write_params

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device: the GPU path is tested on GPU machines"
)


def test_fused_cross_entropy_on_cuda_under_bf16_autocast():
    from betamcmc.vae.linear_ce import linear_nll

    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(300, 64, generator=gen).cuda().requires_grad_()
    weight = torch.randn(500, 64, generator=gen).cuda().requires_grad_()
    bias = torch.randn(500, generator=gen).cuda().requires_grad_()
    target = torch.randint(0, 500, (300,), generator=gen).cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        fused = linear_nll(hidden, weight, bias, target)
    fused.mean().backward()
    ref = F.cross_entropy(
        F.linear(hidden.detach(), weight.detach(), bias.detach()), target, reduction="none"
    )
    assert fused.dtype == torch.float32 and hidden.grad.device.type == "cuda"
    torch.testing.assert_close(fused, ref, rtol=0.05, atol=0.2)


def test_train_vae_runs_on_the_gpu():
    from betamcmc.params import Params
    from betamcmc.vae.train import train_vae

    params = Params.model_validate(tiny_params())
    sents = [[4, 5, 6, 7], [8, 9], [10, 4, 4, 5, 6]] * 20
    result = train_vae(
        sents, sents[:6], 12, params.pretrain, params.runtime, "cyclical", 0, device="cuda"
    )
    assert next(result.model.parameters()).device.type == "cuda"
    assert result.best_valid_neg_elbo == min(result.valid_history["neg_elbo"])


def test_pretrain_stage_with_device_auto_uses_cuda(tmp_path: Path):
    repo = copy_repo(tmp_path / "repo")
    write_params(repo / "params.yaml", tiny_params({"device": "auto"}))
    run_stage(repo, "prepare")
    proc = run_stage(repo, "pretrain", "cyclical")
    assert "device cuda" in proc.stdout and "1 process(es)" in proc.stdout
    metrics = json.loads((repo / "metrics/pretrain/cyclical.json").read_text())
    assert metrics["seeds"] == [0, 1]


def test_dialog_cvae_trains_on_the_gpu():
    from betamcmc.data.prepare import prepare
    from betamcmc.finetune import dialog
    from betamcmc.params import Params

    params = Params.model_validate(tiny_params())
    corpus, _ = prepare(params.data, 0)
    dp = params.finetune.dialog
    model = dialog.build_model(dp, True, corpus.vocab, params.data.dialog_context).cuda()
    result = dialog.train_cvae(model, corpus, params.pretrain.schedules["cyclical"], dp, 0)
    assert next(model.parameters()).device.type == "cuda" and result.best_epoch >= 0
    assert dialog.sample_responses(model, corpus.dialogs["test"][:2], 2, 8, 0)
