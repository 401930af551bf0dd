"""The batch split across CPU threads (betamcmc.vae.split): the same random draws, loss and
gradient as one pass over the batch, deterministic, and used by training on 2+ threads only."""

from __future__ import annotations

import threading

import pytest
import torch

from betamcmc.core.errors import DivergenceError
from betamcmc.vae.model import TextVAE, VAEConfig, pad_batch
from betamcmc.vae.split import BatchSplitter
from betamcmc.vae.step import batch_splitter_for, make_optimizer, train_step


def _model(dropout: float = 0.5, word_dropout: float = 0.3, z_to_decoder: str = "both") -> TextVAE:
    torch.manual_seed(0)
    cfg = VAEConfig(vocab_size=40, emb_dim=12, hidden_dim=16, latent_dim=4, bidirectional=False,
                    z_to_decoder=z_to_decoder, dropout=dropout, word_dropout=word_dropout)  # fmt: skip
    return TextVAE(cfg).train()


def _batch(n: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    sents = [torch.randint(4, 40, (int(k),), generator=gen).tolist()
             for k in torch.randint(3, 9, (n,), generator=gen)]  # fmt: skip
    return pad_batch(sents)


@pytest.mark.parametrize("dropout,word_dropout", [(0.5, 0.3), (0.0, 0.0), (0.2, 0.0)])
def test_draw_noise_takes_the_forward_pass_own_numbers(dropout: float, word_dropout: float):
    model = _model(dropout, word_dropout)
    ids, lengths = _batch()
    torch.manual_seed(5)
    plain = model(ids, lengths, 0.7)
    after_plain = torch.get_rng_state()
    torch.manual_seed(5)
    noise = model.draw_noise(ids, lengths)
    assert torch.equal(torch.get_rng_state(), after_plain)  # the generator advanced alike
    given = model(ids, lengths, 0.7, noise=noise)
    for key in ("loss", "recon", "kl"):
        assert torch.equal(plain[key], given[key]), key  # bit for bit
    assert (noise.emb is None) == (dropout == 0.0) and (noise.word is None) == (word_dropout == 0.0)


@pytest.mark.parametrize("parts", [2, 3])
def test_split_gives_the_batch_loss_and_gradient(parts: int):
    model = _model()
    ids, lengths = _batch()
    params = [p for p in model.parameters() if p.requires_grad]
    torch.manual_seed(5)
    plain = model(ids, lengths, 0.7)
    plain["loss"].backward()
    expected = [p.grad.clone() for p in params]
    model.zero_grad(set_to_none=True)
    torch.manual_seed(5)
    with BatchSplitter(parts) as splitter:
        out, grads = splitter.forward_backward(model, ids, lengths, 0.7)
    assert all(p.grad is None for p in params)  # the caller assigns them
    for key in ("loss", "recon", "kl"):
        torch.testing.assert_close(out[key], plain[key].detach(), rtol=1e-6, atol=1e-6)
    for g, e in zip(grads, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)


def test_split_training_is_deterministic_and_keeps_the_rng_stream():
    ids, lengths = _batch(6)

    def run(parts: int) -> tuple[list[torch.Tensor], torch.Tensor]:
        model = _model()
        opt = make_optimizer(model, 1e-2)
        torch.manual_seed(3)
        splitter = BatchSplitter(parts) if parts > 1 else None
        try:
            for it in range(4):
                train_step(model, opt, ids, lengths, 0.5, 5.0, "test", it, splitter)
        finally:
            if splitter is not None:
                splitter.close()
        return [p.detach().clone() for p in model.parameters()], torch.get_rng_state()

    a, rng_a = run(2)
    b, rng_b = run(2)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))  # deterministic
    plain, rng_plain = run(1)
    assert torch.equal(rng_a, rng_plain)  # the same draws: checkpoints resume alike
    for x, y in zip(a, plain, strict=True):  # the same update up to the order of float sums
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


def test_a_batch_smaller_than_the_split_and_a_divergence():
    model = _model()
    ids, lengths = _batch(1)
    with BatchSplitter(2) as splitter:
        out, grads = splitter.forward_backward(model, ids, lengths, 1.0)
        assert torch.isfinite(out["loss"]) and all(g is not None for g in grads)
        opt = make_optimizer(model, 1e-2)
        with torch.no_grad():
            model.output.bias.fill_(float("nan"))
        before = [p.detach().nan_to_num().clone() for p in model.parameters()]
        with pytest.raises(DivergenceError, match=r"test: loss is nan at iteration 7"):
            train_step(model, opt, ids, lengths, 1.0, 5.0, "test", 7, splitter)
    after = [p.detach().nan_to_num() for p in model.parameters()]
    assert all(torch.equal(x, y) for x, y in zip(before, after, strict=True))  # untouched


def test_training_splits_only_on_two_or_more_cpu_threads():
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert batch_splitter_for(torch.device("cpu")) is None
        torch.set_num_threads(2)
        assert batch_splitter_for(torch.device("cuda")) is None
        splitter = batch_splitter_for(torch.device("cpu"))
        assert splitter is not None and splitter.parts == 2
        both = threading.Barrier(2)

        def count() -> int:
            both.wait(timeout=30)  # two tasks at once: one on each of the pool's threads
            return torch.get_num_threads()

        tasks = [splitter._pool.submit(count) for _ in range(2)]
        assert [t.result() for t in tasks] == [1, 1]  # one intra-op thread per part
        splitter.close()
        assert torch.get_num_threads() == 2  # the caller keeps its intra-op threads
    finally:
        torch.set_num_threads(saved)
    with pytest.raises(ValueError, match="at least 2 parts"):
        BatchSplitter(1)
