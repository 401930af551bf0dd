"""The text VAE: shapes, the packed/fused loss against a naive per-step computation, checkpoints."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from betamcmc.vae.model import TextVAE, gaussian_kl, load_vae, pad_batch, save_vae

from conftest import vae_config

SENTENCES = [[5, 6, 7, 8], [9, 5], [7, 7, 7, 7, 7, 6], [4]]


def tiny(**kw) -> TextVAE:
    torch.manual_seed(0)
    return TextVAE(vae_config(12, emb_dim=8, hidden_dim=10, latent_dim=3, **kw))


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("z_to_decoder", ["init", "concat", "both"])
def test_shapes_and_loss(bidirectional, z_to_decoder):
    torch.set_num_threads(1)
    model = tiny(bidirectional=bidirectional, z_to_decoder=z_to_decoder)
    ids, lengths = pad_batch(SENTENCES)
    assert ids.shape == (4, 6) and lengths.tolist() == [4, 2, 6, 1]
    mu, logvar = model.encode(ids, lengths)
    assert mu.shape == (4, 3) and logvar.shape == (4, 3)
    out = model(ids, lengths, beta=0.5)
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    assert out["loss"].item() == pytest.approx(
        out["recon"].item() + 0.5 * out["kl"].item(), rel=1e-5
    )
    # untrained: reconstruction ~ log V per target token (words + <eos>)
    tokens = (lengths + 1).sum().item()
    assert out["recon"].item() * 4 / tokens == pytest.approx(math.log(12), rel=0.3)
    out["loss"].backward()
    assert model.embedding.weight.grad is not None and model.encoder.weight_ih_l0.grad is not None


def test_padding_does_not_change_encoding():
    model = tiny(bidirectional=True).eval()
    ids, lengths = pad_batch(SENTENCES)
    wide = torch.cat([ids, torch.zeros(4, 5, dtype=torch.long)], 1)
    mu1, _ = model.encode(ids, lengths)
    mu2, _ = model.encode(wide, lengths)
    single, _ = model.encode(ids[1:2, :2], lengths[1:2])
    torch.testing.assert_close(mu1, mu2)
    torch.testing.assert_close(mu1[1:2], single)


def test_packed_reconstruction_matches_naive_per_step():
    """The fused packed loss equals a step-by-step decoder with an explicit <eos> target."""
    model = tiny(z_to_decoder="both").eval()
    ids, lengths = pad_batch(SENTENCES)
    z = torch.randn(4, 3)
    fused = model.reconstruction_nll(ids, lengths, z)
    for b, sent in enumerate(SENTENCES):
        state = model._initial_state(z[b : b + 1])
        inputs = [2, *sent]
        targets = [*sent, 3]
        total = 0.0
        for x, y in zip(inputs, targets, strict=True):
            emb = model.embedding(torch.tensor([[x]]))
            emb = torch.cat([emb, z[b : b + 1].unsqueeze(1)], -1)
            out, state = model.decoder(emb, state)
            total += F.cross_entropy(model.output(out[:, -1]), torch.tensor([y])).item()
        assert fused[b].item() == pytest.approx(total, rel=1e-5)


def test_kl_closed_form():
    mu = torch.tensor([[0.0, 0.0], [1.0, -2.0]])
    logvar = torch.tensor([[0.0, 0.0], [math.log(2.0), 0.0]])
    kl = gaussian_kl(mu, logvar)
    assert kl[0].item() == 0.0
    assert kl[1].item() == pytest.approx(0.5 * (1 + 2 - 1 - math.log(2)) + 0.5 * 4)


def test_word_dropout_only_in_training():
    model = tiny(word_dropout=1.0, dropout=0.0)
    ids, lengths = pad_batch(SENTENCES)
    z = torch.zeros(4, 3)
    model.eval()
    a = model.reconstruction_nll(ids, lengths, z)
    model.train()
    b = model.reconstruction_nll(ids, lengths, z)  # every input word replaced by <unk>
    model.eval()
    c = model.reconstruction_nll(ids, lengths, z)
    torch.testing.assert_close(a, c)
    assert not torch.allclose(a, b)
    # with every input word dropped, the decoder sees only <bos> <unk> ...: sentences of the same
    # length with different words get the same input sequence
    same = model.train().reconstruction_nll(*pad_batch([[5, 6], [9, 8]]), torch.zeros(2, 3))
    other = model.eval().reconstruction_nll(*pad_batch([[5, 6], [9, 8]]), torch.zeros(2, 3))
    assert not torch.allclose(same, other)


def test_save_load_weights_only(tmp_path):
    model = tiny(bidirectional=True, z_to_decoder="init").eval()
    save_vae(model, tmp_path / "model.pt", meta={"schedule": "x", "iteration": 3})
    ckpt = torch.load(tmp_path / "model.pt", weights_only=True)
    assert ckpt["meta"]["iteration"] == 3
    loaded = load_vae(tmp_path)
    assert loaded.config == model.config and not loaded.training
    ids, lengths = pad_batch(SENTENCES)
    torch.testing.assert_close(loaded.encode(ids, lengths), model.encode(ids, lengths))


def test_generate():
    model = tiny().eval()
    out = model.generate(torch.zeros(3, 3), max_len=5)
    assert len(out) == 3 and all(len(s) <= 5 for s in out)
    assert all(0 <= t < 12 and t != 3 for s in out for t in s)
