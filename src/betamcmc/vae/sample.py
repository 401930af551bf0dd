"""Sampling from a trained text VAE: prior samples, reconstructions, latent interpolations.

Used by ``betamcmc sample``. Decoding is greedy by default (the most likely word at each step),
or ancestral sampling with ``greedy=False``; every random draw comes from a seeded generator.
"""

from __future__ import annotations

from pathlib import Path

import torch

from betamcmc.core.errors import InputError
from betamcmc.data.prepared import Vocab, load_vocab
from betamcmc.vae.model import VOCAB_FILE, TextVAE, load_vae, pad_batch


def load_model_and_vocab(model_dir: str | Path) -> tuple[TextVAE, Vocab]:
    model_dir = Path(model_dir)
    model = load_vae(model_dir)
    folder = model_dir if model_dir.is_dir() else model_dir.parent
    # a schedule folder holds the vocabulary; its seed<k>/ subfolders share it
    vocab_path = next(
        (d / VOCAB_FILE for d in (folder, folder.parent) if (d / VOCAB_FILE).exists()),
        folder / VOCAB_FILE,
    )
    vocab = load_vocab(vocab_path)
    if len(vocab) != model.config.vocab_size:
        raise InputError(
            f"vocabulary has {len(vocab)} entries but the model expects {model.config.vocab_size}",
            vocab_path,
        )
    return model, vocab


def encode_text(vocab: Vocab, sentences: list[str], lowercase: bool = True) -> list[list[int]]:
    out = []
    for text in sentences:
        tokens = (text.lower() if lowercase else text).split()
        if not tokens:
            raise InputError(f"empty sentence (got {text!r})")
        out.append(vocab.encode(tokens))
    return out


@torch.no_grad()
def prior_samples(
    model: TextVAE, vocab: Vocab, n: int, seed: int = 0, greedy: bool = True, max_len: int = 30
) -> list[str]:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn((n, model.config.latent_dim), generator=gen)
    return [vocab.decode(s) for s in model.generate(z, max_len, greedy, generator=gen)]


@torch.no_grad()
def reconstructions(
    model: TextVAE,
    vocab: Vocab,
    sentences: list[str],
    greedy: bool = True,
    max_len: int = 30,
    seed: int = 0,
) -> list[str]:
    """Decode the posterior mean of each sentence."""
    ids, lengths = pad_batch(encode_text(vocab, sentences))
    mu, _ = model.encode(ids, lengths)
    gen = torch.Generator().manual_seed(seed)
    return [vocab.decode(s) for s in model.generate(mu, max_len, greedy, generator=gen)]


@torch.no_grad()
def interpolation(
    model: TextVAE,
    vocab: Vocab,
    first: str,
    second: str,
    steps: int = 5,
    greedy: bool = True,
    max_len: int = 30,
    seed: int = 0,
) -> list[tuple[float, str]]:
    """Decode z = (1 - t) mu(first) + t mu(second) for ``steps`` evenly spaced t in [0, 1]."""
    ids, lengths = pad_batch(encode_text(vocab, [first, second]))
    mu, _ = model.encode(ids, lengths)
    ts = torch.linspace(0.0, 1.0, max(2, steps))
    z = (1 - ts).unsqueeze(1) * mu[0] + ts.unsqueeze(1) * mu[1]
    gen = torch.Generator().manual_seed(seed)
    decoded = model.generate(z, max_len, greedy, generator=gen)
    return [(float(t), vocab.decode(s)) for t, s in zip(ts, decoded, strict=True)]
