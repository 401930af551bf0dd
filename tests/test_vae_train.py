"""Training loop and evaluation on the tiny synthetic corpus, in-process (fast)."""

from __future__ import annotations

import math
import threading

import pytest
import torch

from betamcmc.core.errors import DivergenceError
from betamcmc.data.prepare import prepare
from betamcmc.params import validate_params
from betamcmc.vae import train as train_module
from betamcmc.vae.batches import epoch_batches
from betamcmc.vae.evaluate import evaluate_split, importance_sampled, length_sorted_batches
from betamcmc.vae.train import CHECKPOINT_FILE, TrainingInterrupted, train_vae

from conftest import tiny_params


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    params = validate_params(tiny_params())
    corpus, _ = prepare(params.data, params.seed)
    split = {s: [x.ids for x in corpus.sentences[s]] for s in ("train", "valid", "test")}
    return params, corpus, split


def test_epoch_batches_cover_all_once_and_are_bucketed():
    lengths = [5, 1, 3, 3, 9, 2, 7, 1, 4, 6]
    batches = epoch_batches(lengths, 3, seed=0, epoch=0)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(10))
    for b in batches:  # each batch is a contiguous run of the length-sorted order
        ls = sorted(lengths[i] for i in b)
        assert ls[-1] - ls[0] <= 4
    assert epoch_batches(lengths, 3, 0, 0) == batches
    assert epoch_batches(lengths, 3, 0, 1) != batches


def test_train_is_deterministic_and_keeps_best(tiny):
    params, corpus, split = tiny
    a = train_vae(
        split["train"],
        split["valid"],
        len(corpus.vocab),
        params.pretrain,
        params.runtime,
        "cyclical",
        0,
    )
    b = train_vae(
        split["train"],
        split["valid"],
        len(corpus.vocab),
        params.pretrain,
        params.runtime,
        "cyclical",
        0,
    )
    assert a.history == b.history
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    assert a.best_valid_neg_elbo == min(a.valid_history["neg_elbo"])
    assert a.best_iteration in a.valid_history["iteration"]
    total = params.pretrain.train.iterations
    assert a.history["iteration"][-1] == total
    assert a.history["beta"][0] < 0.5  # cyclical starts near 0
    assert not a.model.training


def before_step(monkeypatch, action):
    """Run ``action(model, iteration)`` before each training step's forward pass."""
    real_step = train_module.train_step

    def step(model, *args, iteration, **kwargs):
        action(model, iteration)
        return real_step(model, *args, iteration=iteration, **kwargs)

    monkeypatch.setattr(train_module, "train_step", step)


def test_resume_after_interruption_matches_uninterrupted(tiny, tmp_path, monkeypatch):
    params, corpus, split = tiny
    args = (
        split["train"],
        split["valid"],
        len(corpus.vocab),
        params.pretrain,
        params.runtime,
        "monotonic",
        3,
    )
    full = train_vae(*args)
    stop = threading.Event()

    def stop_at(model, iteration):
        if iteration == 23:
            stop.set()  # as the SIGTERM handler does

    with monkeypatch.context() as patch:
        before_step(patch, stop_at)
        with pytest.raises(TrainingInterrupted, match="after iteration 24/40"):
            train_vae(*args, resume_dir=tmp_path, fingerprint="f", stop=stop)
    ckpt = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)  # plain tensors only
    assert ckpt["iteration"] == 24
    resumed = train_vae(*args, resume_dir=tmp_path, fingerprint="f")
    assert resumed.resumed_from == 24
    assert resumed.history == full.history
    assert resumed.valid_history == full.valid_history
    assert resumed.best_iteration == full.best_iteration
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    # a checkpoint of other params/data (another fingerprint) is not reused: starts from 0
    stop.set()
    with pytest.raises(TrainingInterrupted, match="after iteration 1/40"):
        train_vae(*args, resume_dir=tmp_path, fingerprint="other", stop=stop)


def test_nan_stops_with_iteration(tiny, monkeypatch):
    params, corpus, split = tiny

    def poison(model, iteration):
        if iteration == 7:
            with torch.no_grad():
                model.output.bias[5] = float("nan")

    before_step(monkeypatch, poison)
    with pytest.raises(DivergenceError, match=r"pretrain\[constant\]: loss is nan at iteration 7"):
        train_vae(
            split["train"],
            split["valid"],
            len(corpus.vocab),
            params.pretrain,
            params.runtime,
            "constant",
            0,
        )
    assert DivergenceError.exit_code == 3


def test_is_nll_never_above_neg_elbo(tiny):
    params, corpus, split = tiny
    result = train_vae(
        split["train"],
        split["valid"],
        len(corpus.vocab),
        params.pretrain,
        params.runtime,
        "cyclical",
        0,
    )
    model = result.model
    gen = torch.Generator().manual_seed(0)
    for _, ids, lengths in length_sorted_batches(split["test"], 16):
        out = importance_sampled(model, ids, lengths, 20, gen)
        # log-mean-exp >= mean (Jensen): per sentence, with the same samples
        assert torch.all(out["nll"] <= -out["elbo"] + 1e-4)
        # the Monte Carlo ELBO agrees with recon + closed-form KL up to sampling error
        # (per sentence the 20-sample KL estimate is noisy; over a batch it averages out)
        assert abs(float((-out["elbo"] - out["recon"] - out["kl"]).mean())) < 0.25
    m = evaluate_split(model, split["test"], k=20, batch_size=16, seed=0)
    assert m["nll"] <= -m["elbo"]
    assert -m["elbo"] == pytest.approx(m["recon"] + m["kl"], abs=0.2)
    assert m["ppl"] == pytest.approx(math.exp(m["nll"] * m["sentences"] / m["tokens"]), rel=1e-6)
    assert m["tokens"] == sum(len(s) + 1 for s in split["test"])
    assert 0 <= m["au"] <= params.pretrain.model.latent_dim
    assert m["mi"] <= math.log(len(split["test"])) + 1e-6  # MI is bounded by log N
    assert evaluate_split(model, split["test"], k=20, batch_size=16, seed=0) == m  # deterministic


@pytest.mark.parametrize("clip", [1e-3, 1e6])  # clipped at every step / never clipped
def test_train_step_clips_as_clip_grad_norm_bit_for_bit(clip):
    from betamcmc.vae.model import TextVAE, VAEConfig, pad_batch
    from betamcmc.vae.step import make_optimizer, train_step

    cfg = VAEConfig(
        vocab_size=30,
        emb_dim=8,
        hidden_dim=12,
        latent_dim=3,
        bidirectional=False,
        z_to_decoder="both",
        dropout=0.2,
        word_dropout=0.0,
    )
    gen = torch.Generator().manual_seed(3)

    def random_batch() -> tuple[torch.Tensor, torch.Tensor]:
        lengths = torch.randint(2, 7, (6,), generator=gen)
        return pad_batch([torch.randint(4, 30, (int(k),), generator=gen).tolist() for k in lengths])

    batches = [random_batch() for _ in range(4)]

    def trained(reference: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = TextVAE(cfg).train()
        opt = make_optimizer(model, 1e-2)
        for it, (ids, lengths) in enumerate(batches):
            if reference:  # the plain recipe: backward, clip_grad_norm_, Adam
                opt.zero_grad(set_to_none=True)
                model(ids, lengths, 1.0)["loss"].backward()
                norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                assert (float(norm) > clip) == (clip < 1)
                opt.step()
            else:
                train_step(model, opt, ids, lengths, 1.0, clip, "test", it)
        return [p.detach().clone() for p in model.parameters()]

    for a, b in zip(trained(False), trained(True), strict=True):
        assert torch.equal(a, b)
