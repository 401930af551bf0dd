"""The LSTM text VAE (Bowman et al. 2016; the language-model setting of Fu et al. 2019), one file.

    x --embedding--> encoder LSTM (optionally bidirectional) --> last state --> (mu, logvar)
    z = mu + exp(logvar / 2) * eps                                   reparameterization
    <bos> x --embedding (word dropout)--> decoder LSTM [z as initial state and/or on every input]
          --> linear --> softmax over the vocabulary, targets x <eos>

Loss per sentence: reconstruction ``-log p(x|z)`` (summed over the words and ``<eos>``) plus
``beta * KL(q(z|x) || N(0, I))`` (closed form for diagonal Gaussians).

Efficiency: batches are length-bucketed (little padding), so both LSTMs run over the right-padded
batch in one fused kernel (oneDNN on CPU); the LSTMs are causal, so the pads after a sentence
never change its states. Only the bidirectional encoder, whose backward direction must start at
each sentence's last word, uses packed sequences. The output layer and the cross-entropy run once
over the non-pad target tokens of the whole batch, fused (:mod:`betamcmc.vae.linear_ce`: the
``[tokens, V]`` logits are never stored).

Contract used by other stages (dialog CVAE, semi-supervised classifier):
:func:`load_vae` returns a :class:`TextVAE`; ``TextVAE.encode(ids, lengths) -> (mu, logvar)`` takes
the raw sentence ids of the prepared corpus (no ``<bos>``/``<eos>``) right-padded with 0;
``TextVAE.config``, ``TextVAE.embedding`` and ``TextVAE.encoder`` are public.

Random draws of a training forward pass (reparameterization noise, word dropout, the two dropout
masks) come from torch's global generator as the pass goes. :meth:`TextVAE.draw_noise` takes the
very same numbers up front (same order, shapes and kernels) as a :class:`Noise`, which
``forward(..., noise=...)`` then uses instead: the batch-split step (:mod:`betamcmc.vae.split`)
draws them once for the whole batch and gives each thread its rows.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from betamcmc.core.checkpoint import build, read_checkpoint
from betamcmc.core.errors import InputError
from betamcmc.vae.linear_ce import linear_nll

MODEL_FILE = "model.pt"
VOCAB_FILE = "vocab.txt"


@dataclass
class VAEConfig:
    """The model's sizes and dropouts: no defaults, the values come from ``pretrain.model`` in
    params.yaml (the special ids are the prepared vocabulary's)."""

    vocab_size: int
    emb_dim: int
    hidden_dim: int
    latent_dim: int
    bidirectional: bool
    z_to_decoder: str  # "init" | "concat" | "both"
    dropout: float
    word_dropout: float
    pad_id: int = 0
    unk_id: int = 1
    bos_id: int = 2
    eos_id: int = 3

    def __post_init__(self) -> None:
        if self.z_to_decoder not in ("init", "concat", "both"):
            raise ValueError(
                f"z_to_decoder must be init, concat or both (got {self.z_to_decoder!r})"
            )


@dataclass
class Noise:
    """The random draws of one training forward pass over a batch, taken up front."""

    eps: Tensor  # [B, Z] reparameterization noise
    word: Tensor | None  # [B, T + 1] uniform draws of word dropout (None: no word dropout)
    emb: Tensor | None  # [B, T + 1, E] scaled dropout mask of the decoder inputs (None: p = 0)
    out: Tensor | None  # [tokens, H] scaled dropout mask of the decoder outputs (None: p = 0)
    offsets: list[int]  # sentence i's target tokens are rows offsets[i]:offsets[i + 1] of out

    def rows(self, a: int, b: int) -> Noise:
        """The draws of sentences ``a:b`` of the batch."""
        o = self.offsets
        return Noise(
            eps=self.eps[a:b],
            word=None if self.word is None else self.word[a:b],
            emb=None if self.emb is None else self.emb[a:b],
            out=None if self.out is None else self.out[o[a] : o[b]],
            offsets=[x - o[a] for x in o[a : b + 1]],
        )


def _dropout_mask(shape: tuple[int, ...], p: float, device: torch.device) -> Tensor | None:
    """``nn.Dropout``'s CPU mask, drawn the way it draws it (``bernoulli_(1 - p)``, scaled)."""
    if p == 0.0:
        return None
    if p == 1.0:
        return torch.zeros(shape, device=device)
    return torch.empty(shape, device=device).bernoulli_(1 - p).div_(1 - p)


def pad_batch(sentences: list[list[int]], pad_id: int = 0) -> tuple[Tensor, Tensor]:
    """Right-pad raw id lists into ``ids[B, T]`` and ``lengths[B]`` (empty sentences: length 0)."""
    lengths = torch.tensor([len(s) for s in sentences], dtype=torch.long)
    ids = torch.full((len(sentences), max(1, int(lengths.max()) if len(sentences) else 1)), pad_id)
    for i, s in enumerate(sentences):
        if s:
            ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return ids, lengths


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)) per row: 0.5 * sum(mu^2 + var - 1 - logvar)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def gaussian_log_density(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mu, diag exp(logvar)), summed over the last dimension."""
    return -0.5 * (((z - mu) ** 2) / logvar.exp() + logvar + math.log(2 * math.pi)).sum(-1)


class TextVAE(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        c = config
        directions = 2 if c.bidirectional else 1
        self.embedding = nn.Embedding(c.vocab_size, c.emb_dim, padding_idx=c.pad_id)
        self.encoder = nn.LSTM(
            c.emb_dim, c.hidden_dim, batch_first=True, bidirectional=c.bidirectional
        )
        self.posterior = nn.Linear(directions * c.hidden_dim, 2 * c.latent_dim)
        self.z_init = c.z_to_decoder in ("init", "both")
        self.z_concat = c.z_to_decoder in ("concat", "both")
        # z -> decoder initial cell state c0 (and h0 = tanh(c0)), as in He et al. (2019)
        self.latent_to_state = nn.Linear(c.latent_dim, c.hidden_dim) if self.z_init else None
        dec_in = c.emb_dim + (c.latent_dim if self.z_concat else 0)
        self.decoder = nn.LSTM(dec_in, c.hidden_dim, batch_first=True)
        self.dropout = nn.Dropout(c.dropout)
        self.output = nn.Linear(c.hidden_dim, c.vocab_size)

    # ------------------------------------------------------------------ encoder q(z|x)
    def encode(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior parameters ``(mu[B, Z], logvar[B, Z])`` of raw sentences ``ids[B, T]``."""
        emb = self.embedding(ids)
        if self.config.bidirectional:  # the backward direction must start at each last word
            packed = pack_padded_sequence(
                emb, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
            )
            _, (h_n, _) = self.encoder(packed)  # h_n: [directions, B, H], in the input order
            last = torch.cat(list(h_n), dim=-1)
        else:  # causal: the output at the last word is not changed by the pads after it
            out, _ = self.encoder(emb)
            last_pos = (lengths.clamp(min=1) - 1).to(ids.device)
            last = out[torch.arange(ids.size(0), device=ids.device), last_pos]
        # at least fp32 under bf16 autocast: the KL term, the reparameterization and the codes
        # downstream stages read keep full precision (a no-op in fp32 and fp64)
        stats = self.posterior(last)
        stats = stats.to(torch.promote_types(stats.dtype, torch.float32))
        mu, logvar = stats.chunk(2, dim=-1)
        return mu, logvar

    def draw_noise(self, ids: Tensor, lengths: Tensor) -> Noise:
        """The random numbers ``forward(ids, lengths)`` would draw in training mode, in its order:
        reparameterization noise, word dropout, the decoder-input mask, the decoder-output mask.
        """
        c = self.config
        batch, width = ids.shape
        offsets = [0, *itertools.accumulate((lengths + 1).tolist())]
        eps = torch.randn(
            (batch, c.latent_dim), dtype=self.posterior.weight.dtype, device=ids.device
        )
        word = None
        if c.word_dropout > 0:
            word = torch.rand((batch, width + 1), device=ids.device)
        emb = _dropout_mask((batch, width + 1, c.emb_dim), c.dropout, ids.device)
        out = _dropout_mask((offsets[-1], c.hidden_dim), c.dropout, ids.device)
        return Noise(eps=eps, word=word, emb=emb, out=out, offsets=offsets)

    @staticmethod
    def reparameterize(
        mu: Tensor,
        logvar: Tensor,
        generator: torch.Generator | None = None,
        eps: Tensor | None = None,
    ) -> Tensor:
        """``mu + exp(logvar / 2) * eps``; ``eps`` drawn here unless given (drawn up front)."""
        if eps is None:
            eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        return mu + torch.exp(0.5 * logvar) * eps

    # ------------------------------------------------------------------ decoder p(x|z)
    def _initial_state(self, z: Tensor) -> tuple[Tensor, Tensor] | None:
        if self.latent_to_state is None:
            return None
        c0 = self.latent_to_state(z).unsqueeze(0)
        return torch.tanh(c0), c0

    def _dropout(self, x: Tensor, noise: Noise | None, mask: Tensor | None) -> Tensor:
        """``self.dropout(x)``, or ``x`` times its mask drawn up front when the pass has noise."""
        if noise is None:
            return self.dropout(x)
        return x if mask is None else x * mask

    def _decoder_input(self, ids: Tensor, z: Tensor | None, noise: Noise | None = None) -> Tensor:
        emb = self._dropout(self.embedding(ids), noise, None if noise is None else noise.emb)
        if self.z_concat:
            assert z is not None
            emb = torch.cat([emb, z.unsqueeze(1).expand(-1, ids.size(1), -1)], dim=-1)
        return emb

    def reconstruction_nll(
        self, ids: Tensor, lengths: Tensor, z: Tensor, noise: Noise | None = None
    ) -> Tensor:
        """``-log p(x|z)`` per sentence ``[B]``: words + ``<eos>``, teacher forcing from ``<bos>``.

        One decoder LSTM pass over the right-padded batch (causal, so the pads after a sentence
        do not change its outputs; the fused oneDNN kernel on CPU), then the output layer and
        the cross-entropy, fused, over the non-pad target tokens only; per-sentence sums by
        ``index_add``. ``noise``: the pass's random draws taken up front (training mode only).
        """
        c = self.config
        batch, width = ids.shape
        steps = (lengths + 1).to(ids.device)  # <bos> x  ->  x <eos>
        dec_in = torch.cat(
            [torch.full((batch, 1), c.bos_id, dtype=ids.dtype, device=ids.device), ids], 1
        )
        if self.training and c.word_dropout > 0:
            uniform = torch.rand(dec_in.shape, device=ids.device) if noise is None else noise.word
            drop = uniform < c.word_dropout
            drop[:, 0] = False
            dec_in = dec_in.masked_fill(drop & (dec_in != c.pad_id), c.unk_id)
        targets = torch.cat(
            [ids, torch.full((batch, 1), c.pad_id, dtype=ids.dtype, device=ids.device)], 1
        )
        targets = targets.scatter(1, steps.unsqueeze(1) - 1, c.eos_id)
        valid = torch.arange(width + 1, device=ids.device).unsqueeze(0) < steps.unsqueeze(1)
        out, _ = self.decoder(self._decoder_input(dec_in, z, noise), self._initial_state(z))
        # [tokens, H], non-pad positions only
        hidden = self._dropout(out[valid], noise, None if noise is None else noise.out)
        token_nll = linear_nll(hidden, self.output.weight, self.output.bias, targets[valid])
        rows = torch.arange(batch, device=ids.device).unsqueeze(1).expand(batch, width + 1)
        return torch.zeros(batch, dtype=token_nll.dtype, device=ids.device).index_add_(
            0, rows[valid], token_nll
        )

    # ------------------------------------------------------------------ objective
    def forward(
        self, ids: Tensor, lengths: Tensor, beta: float = 1.0, noise: Noise | None = None
    ) -> dict[str, Tensor]:
        """Negative beta-ELBO averaged over the batch, plus its parts per sentence (averaged).
        ``noise``: this batch's random draws from :meth:`draw_noise` (training mode only)."""
        mu, logvar = self.encode(ids, lengths)
        z = self.reparameterize(mu, logvar, eps=None if noise is None else noise.eps)
        recon = self.reconstruction_nll(ids, lengths, z, noise)
        kl = gaussian_kl(mu, logvar)
        loss = recon.mean() + beta * kl.mean()
        return {"loss": loss, "recon": recon.mean().detach(), "kl": kl.mean().detach()}

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(
        self,
        z: Tensor,
        max_len: int = 30,
        greedy: bool = True,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> list[list[int]]:
        """Decode one sentence per row of ``z`` (ids without ``<bos>``/``<eos>``)."""
        c = self.config
        batch = z.size(0)
        state = self._initial_state(z)
        token = torch.full((batch, 1), c.bos_id, dtype=torch.long, device=z.device)
        out_ids: list[list[int]] = [[] for _ in range(batch)]
        done = torch.zeros(batch, dtype=torch.bool)
        for _ in range(max_len + 1):
            emb = self.embedding(token)
            if self.z_concat:
                emb = torch.cat([emb, z.unsqueeze(1)], dim=-1)
            out, state = self.decoder(emb, state)
            logits = self.output(out[:, -1]) / max(temperature, 1e-6)
            if greedy:
                nxt = logits.argmax(-1)
            else:
                nxt = torch.multinomial(F.softmax(logits, -1), 1, generator=generator).squeeze(1)
            for i, t in enumerate(nxt.tolist()):
                if not done[i]:
                    if t == c.eos_id:
                        done[i] = True
                    else:
                        out_ids[i].append(t)
            if bool(done.all()):
                break
            token = nxt.unsqueeze(1)
        return out_ids


# ---------------------------------------------------------------------- checkpoint files
def save_vae(model: TextVAE, path: str | Path, meta: dict[str, Any] | None = None) -> None:
    """Write ``{"config", "model", "meta"}`` (plain tensors and primitives: weights_only-loadable)."""
    torch.save(
        {"config": asdict(model.config), "model": model.state_dict(), "meta": meta or {}}, path
    )


def seed_dirs(schedule_dir: str | Path) -> list[Path]:
    """The per-seed model folders of ``models/pretrain/<schedule>/``, in ``pretrain.seeds`` order
    (a folder holding ``model.pt`` itself counts as its only seed)."""
    path = Path(schedule_dir)
    if (path / MODEL_FILE).exists() or not (path / "meta.json").exists():
        return [path]
    try:
        seeds = json.loads((path / "meta.json").read_text(encoding="utf-8"))["seeds"]
        dirs = [path / f"seed{int(s)}" for s in seeds]
    except (ValueError, KeyError, TypeError):
        raise InputError(
            "not a pretrain model folder's meta.json (no list of seeds)", path / "meta.json"
        ) from None
    if not dirs:
        raise InputError("meta.json lists no seeds", path / "meta.json")
    return dirs


def load_vae(model_dir_or_file: str | Path, map_location: str | torch.device = "cpu") -> TextVAE:
    """Load a trained VAE in eval mode: ``models/pretrain/<schedule>/`` (its first seed),
    ``models/pretrain/<schedule>/seed<k>/`` or a ``model.pt``."""
    path = Path(model_dir_or_file)
    if path.is_dir():
        path = seed_dirs(path)[0] / MODEL_FILE
    if not path.exists():
        raise InputError("VAE checkpoint not found (run `dvc repro pretrain` first)", path)
    ckpt = read_checkpoint(path, "text VAE", ("config", "model"), map_location)

    def make() -> TextVAE:
        model = TextVAE(VAEConfig(**ckpt["config"]))
        model.load_state_dict(ckpt["model"])
        return model

    return build(path, "text VAE", make).eval().to(map_location)
