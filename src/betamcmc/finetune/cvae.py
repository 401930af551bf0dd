"""Conditional VAE for dialog responses (Zhao, Zhao & Eskenazi, ACL 2017, "Learning
Discourse-level Diversity for Neural Dialog Models using Conditional Variational Autoencoders").

Read top to bottom: the config, the batch, the modules, the loss, sampling, checkpoint I/O.

    utterance encoder   each utterance -> u (final states of an LSTM over word embeddings;
                        may start from the pretrained text VAE's embedding + encoder)
    context encoder     GRU over the previous turns [u_k; same-speaker flag] -> c
    prior network       p(z|c)   = N(mu_p, diag sigma_p^2), an MLP of c           (Eq. 3)
    recognition network q(z|c,x) = N(mu_q, diag sigma_q^2), linear in [c; u_x]    (Eq. 2)
    response decoder    LSTM language model of x whose initial state is W [c; z]
    bag-of-words loss   optional: f([c; z]) predicts every word of x regardless of order (Eq. 5),
                        which forces z to carry information and counters KL vanishing

Training loss per response (the negative ELBO of Eq. 4 with a weight on the KL term)::

    loss = -log p(x|z,c) + beta_t * KL(q(z|c,x) || p(z|c)) [+ -log p_bow(x|z,c)]

where beta_t follows a schedule of :mod:`betamcmc.vae.schedules`. Generation samples z ~ p(z|c)
and decodes greedily, so diversity across samples comes from z alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from betamcmc.core.checkpoint import build, read_checkpoint
from betamcmc.core.errors import InputError
from betamcmc.data.prepared import Dialog, Vocab, load_vocab

PAD_ID, BOS_ID, EOS_ID = Vocab.pad_id, Vocab.bos_id, Vocab.eos_id


@dataclass
class CVAEConfig:
    """The model's sizes: no defaults, the values come from ``finetune.dialog`` (and the
    pretrained VAE's encoder) in params.yaml."""

    vocab_size: int
    emb_dim: int
    utt_hidden: int
    bidirectional: bool
    ctx_hidden: int
    latent_dim: int
    dec_hidden: int
    prior_hidden: int
    dropout: float
    bow: bool
    max_context: int

    @property
    def utt_dim(self) -> int:
        return self.utt_hidden * (2 if self.bidirectional else 1)


# --------------------------------------------------------------------------- batches
@dataclass
class DialogBatch:
    """Padded tensors for a list of dialog examples (ids are raw: no <bos>/<eos>)."""

    ctx_ids: torch.Tensor  # [B, K, T] context utterances, most recent last, right-padded
    ctx_lens: torch.Tensor  # [B, K] tokens per context utterance (0: no such turn)
    ctx_turns: torch.Tensor  # [B] number of context turns (>= 1)
    ctx_same_speaker: torch.Tensor  # [B, K] 1.0 where the turn's speaker is the responder
    resp_ids: torch.Tensor  # [B, T] response
    resp_lens: torch.Tensor  # [B]

    def to(self, device: torch.device | str) -> DialogBatch:
        """The same batch on ``device`` (the model's: a GPU under ``device: auto``)."""
        return DialogBatch(**{k: v.to(device) for k, v in vars(self).items()})


def collate(dialogs: list[Dialog], max_context: int) -> DialogBatch:
    """Batch dialog examples, keeping the last ``max_context`` context turns of each."""
    contexts = [d.context[-max_context:] or [[]] for d in dialogs]
    speakers = [d.speakers[-max_context:] or [""] for d in dialogs]
    b, k = len(dialogs), max(len(c) for c in contexts)
    t = max(1, max(len(u) for c in contexts for u in c))
    ctx_ids = torch.zeros(b, k, t, dtype=torch.long)
    ctx_lens = torch.zeros(b, k, dtype=torch.long)
    same = torch.zeros(b, k)
    for i, (ctx, spk, d) in enumerate(zip(contexts, speakers, dialogs, strict=True)):
        for j, (utt, who) in enumerate(zip(ctx, spk, strict=True)):
            ctx_ids[i, j, : len(utt)] = torch.tensor(utt, dtype=torch.long)
            ctx_lens[i, j] = len(utt)
            same[i, j] = float(who == d.response_speaker)
    rt = max(1, max(len(d.response) for d in dialogs))
    resp_ids = torch.zeros(b, rt, dtype=torch.long)
    for i, d in enumerate(dialogs):
        resp_ids[i, : len(d.response)] = torch.tensor(d.response, dtype=torch.long)
    return DialogBatch(
        ctx_ids=ctx_ids,
        ctx_lens=ctx_lens,
        ctx_turns=torch.tensor([len(c) for c in contexts], dtype=torch.long),
        ctx_same_speaker=same,
        resp_ids=resp_ids,
        resp_lens=torch.tensor([len(d.response) for d in dialogs], dtype=torch.long),
    )


# --------------------------------------------------------------------------- model
def gaussian_kl(
    mu_q: torch.Tensor, logvar_q: torch.Tensor, mu_p: torch.Tensor, logvar_p: torch.Tensor
) -> torch.Tensor:
    """KL(N(mu_q, var_q) || N(mu_p, var_p)) for diagonal Gaussians, summed over dimensions: [B]."""
    return 0.5 * (
        logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p).pow(2)) / logvar_p.exp() - 1.0
    ).sum(-1)


class DialogCVAE(nn.Module):
    def __init__(self, config: CVAEConfig):
        super().__init__()
        self.config = config
        c = config
        self.embedding = nn.Embedding(c.vocab_size, c.emb_dim, padding_idx=PAD_ID)
        self.utt_encoder = nn.LSTM(
            c.emb_dim, c.utt_hidden, batch_first=True, bidirectional=c.bidirectional
        )
        self.ctx_encoder = nn.GRU(c.utt_dim + 1, c.ctx_hidden, batch_first=True)
        self.recognition = nn.Linear(c.ctx_hidden + c.utt_dim, 2 * c.latent_dim)
        self.prior = nn.Sequential(
            nn.Linear(c.ctx_hidden, c.prior_hidden),
            nn.Tanh(),
            nn.Linear(c.prior_hidden, 2 * c.latent_dim),
        )
        self.dec_init = nn.Linear(c.ctx_hidden + c.latent_dim, c.dec_hidden)
        self.decoder = nn.LSTM(c.emb_dim, c.dec_hidden, batch_first=True)
        self.out = nn.Linear(c.dec_hidden, c.vocab_size)
        self.bow_head = (
            nn.Sequential(
                nn.Linear(c.ctx_hidden + c.latent_dim, c.dec_hidden),
                nn.Tanh(),
                nn.Linear(c.dec_hidden, c.vocab_size),
            )
            if c.bow
            else None
        )
        self.drop = nn.Dropout(c.dropout)

    # -- encoders ------------------------------------------------------------
    def encode_utterances(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[N, T] ids, [N] lengths -> [N, utt_dim] (final states; empty utterances -> zeros)."""
        emb = self.drop(self.embedding(ids))
        packed = pack_padded_sequence(
            emb, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        _, (h, _) = self.utt_encoder(packed)  # h: [directions, N, H]
        u = torch.cat(list(h), dim=-1)
        return u * (lengths > 0).unsqueeze(-1).to(u.dtype)

    def encode_context(self, batch: DialogBatch) -> torch.Tensor:
        """The context vector c: [B, ctx_hidden]."""
        b, k, t = batch.ctx_ids.shape
        u = self.encode_utterances(batch.ctx_ids.view(b * k, t), batch.ctx_lens.view(b * k)).view(
            b, k, -1
        )
        turns = torch.cat([u, batch.ctx_same_speaker.unsqueeze(-1)], dim=-1)
        packed = pack_padded_sequence(
            turns, batch.ctx_turns.cpu(), batch_first=True, enforce_sorted=False
        )
        _, h = self.ctx_encoder(packed)
        return h[-1]

    def prior_params(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.prior(c).chunk(2, dim=-1)

    def recognition_params(
        self, c: torch.Tensor, batch: DialogBatch
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.encode_utterances(batch.resp_ids, batch.resp_lens)
        return self.recognition(torch.cat([c, x], dim=-1)).chunk(2, dim=-1)

    # -- decoder -------------------------------------------------------------
    def _init_state(self, c: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h0 = torch.tanh(self.dec_init(torch.cat([c, z], dim=-1))).unsqueeze(0)
        return h0, torch.zeros_like(h0)

    def reconstruction(self, c: torch.Tensor, z: torch.Tensor, batch: DialogBatch) -> torch.Tensor:
        """-log p(x | z, c) per response, summed over tokens incl. <eos>: [B]."""
        b = batch.resp_ids.shape[0]
        bos = torch.full((b, 1), BOS_ID, dtype=torch.long, device=c.device)
        inputs = torch.cat([bos, batch.resp_ids], dim=1)  # [B, T+1]
        targets = torch.cat([batch.resp_ids, torch.zeros_like(bos)], dim=1)
        targets[torch.arange(b, device=c.device), batch.resp_lens] = EOS_ID
        emb = self.drop(self.embedding(inputs))
        out, _ = self.decoder(emb, self._init_state(c, z))
        logits = self.out(self.drop(out))
        nll = F.cross_entropy(
            logits.transpose(1, 2), targets, ignore_index=PAD_ID, reduction="none"
        )
        return nll.sum(1)

    def bow_loss(self, c: torch.Tensor, z: torch.Tensor, batch: DialogBatch) -> torch.Tensor:
        """Bag-of-words loss: -sum_t log softmax(f([c; z]))[x_t] per response: [B]."""
        assert self.bow_head is not None
        logp = F.log_softmax(self.bow_head(torch.cat([c, z], dim=-1)), dim=-1)
        picked = logp.gather(1, batch.resp_ids)
        return -(picked * (batch.resp_ids != PAD_ID).to(picked.dtype)).sum(1)

    # -- objective -----------------------------------------------------------
    def forward(self, batch: DialogBatch, beta: float = 1.0) -> dict[str, torch.Tensor]:
        """Per-batch means: ``loss`` (to minimise), ``rec``, ``kl``, ``bow`` and the ELBO (beta = 1)."""
        c = self.encode_context(batch)
        mu_p, logvar_p = self.prior_params(c)
        mu_q, logvar_q = self.recognition_params(c, batch)
        z = mu_q + torch.randn_like(mu_q) * (0.5 * logvar_q).exp()
        rec = self.reconstruction(c, z, batch)
        kl = gaussian_kl(mu_q, logvar_q, mu_p, logvar_p)
        loss = rec + beta * kl
        bow = self.bow_loss(c, z, batch) if self.bow_head is not None else torch.zeros_like(rec)
        loss = loss + bow
        return {
            "loss": loss.mean(),
            "rec": rec.mean(),
            "kl": kl.mean(),
            "bow": bow.mean(),
            "elbo": -(rec + kl).mean(),
        }

    # -- generation ----------------------------------------------------------
    @torch.no_grad()
    def sample(self, batch: DialogBatch, n: int, max_len: int) -> list[list[list[int]]]:
        """``n`` responses per context: z ~ p(z|c), greedy decoding. Returns ids [B][n][<=max_len]."""
        c = self.encode_context(batch)
        b = c.shape[0]
        c = c.repeat_interleave(n, dim=0)
        mu_p, logvar_p = self.prior_params(c)
        z = mu_p + torch.randn_like(mu_p) * (0.5 * logvar_p).exp()
        state = self._init_state(c, z)
        token = torch.full((b * n, 1), BOS_ID, dtype=torch.long, device=c.device)
        done = torch.zeros(b * n, dtype=torch.bool, device=c.device)
        steps = []
        for _ in range(max_len):
            out, state = self.decoder(self.embedding(token), state)
            token = self.out(out[:, -1]).argmax(-1, keepdim=True)
            steps.append(token.squeeze(1))
            done |= token.squeeze(1) == EOS_ID
            if bool(done.all()):
                break
        seqs = torch.stack(steps, dim=1).tolist() if steps else [[] for _ in range(b * n)]
        cleaned = [s[: s.index(EOS_ID)] if EOS_ID in s else s for s in seqs]
        return [cleaned[i * n : (i + 1) * n] for i in range(b)]


# --------------------------------------------------------------------------- checkpoints
def save_cvae(model_dir: str | Path, model: DialogCVAE, vocab: Vocab) -> None:
    """Write ``model.pt`` (config + weights, loadable with ``weights_only=True``) and ``vocab.txt``.

    ``model_dir`` should be a fresh (temporary) directory; the caller renames it into place.
    """
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "config": asdict(model.config),
            "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
        },
        model_dir / "model.pt",
    )
    (model_dir / "vocab.txt").write_text("\n".join(vocab.tokens) + "\n", encoding="utf-8")


def load_cvae(model_dir: str | Path, map_location: str = "cpu") -> tuple[DialogCVAE, Vocab]:
    """Load a model written by :func:`save_cvae` (weights only: no pickled code)."""
    model_dir = Path(model_dir)
    if model_dir.is_file():
        raise InputError(
            "expected a dialog model directory (models/dialog/<item>), found a file", model_dir
        )
    file = model_dir / "model.pt"
    if not file.exists():
        raise InputError("dialog model not found (run `dvc repro dialog` first)", file)
    blob = read_checkpoint(file, "dialog CVAE", ("config", "state_dict"), map_location)

    def make() -> DialogCVAE:
        model = DialogCVAE(CVAEConfig(**blob["config"]))
        model.load_state_dict(blob["state_dict"])
        return model

    model = build(file, "dialog CVAE", make).eval()
    vocab = load_vocab(model_dir / "vocab.txt")
    if len(vocab) != model.config.vocab_size:
        raise InputError(
            f"vocabulary has {len(vocab)} entries but the model expects {model.config.vocab_size}",
            model_dir / "vocab.txt",
        )
    return model, vocab
