"""Held-out evaluation of a text VAE: ELBO parts, importance-sampled NLL, PPL, MI, active units.

Per sentence x (nats), with q = q(z|x) and k importance samples z_1..z_k ~ q:

- ``recon``  = mean_i -log p(x|z_i)                     (reconstruction, the k samples averaged)
- ``kl``     = KL(q(z|x) || p(z))                       (closed form)
- ``elbo``   = mean_i log [p(x, z_i) / q(z_i|x)]        (Monte Carlo, the same k samples)
- ``nll``    = -log (1/k) sum_i p(x, z_i) / q(z_i|x)    (Burda et al. 2016; tighter than -ELBO)

``elbo`` equals ``-(recon + kl)`` up to the Monte Carlo error of the KL term (small for k = 100);
estimating it from the same samples as ``nll`` makes ``nll <= -elbo`` hold exactly (Jensen:
log-mean-exp >= mean), per sentence and per split, instead of only in expectation.
- ``ppl``    = exp(sum nll / sum tokens), tokens = words + ``<eos>`` per sentence

Over the split:

- ``mi``: I(x; z) under q(x, z) = p_data(x) q(z|x) (Hoffman & Johnson 2016), estimated as in
  He et al. (2019, ``calc_mi``): E_x[E_q[log q(z|x)]] - E_x E_q[log q(z)], with
  q(z) approximated by the mixture of the posteriors of the evaluated sentences. He et al. use the
  sentences of a minibatch as the mixture; we use all sentences of the split (a lower-variance
  estimate of the same quantity), one z per sentence drawn from a fixed-seed generator.
- ``au``: active units (Burda et al. 2016): dimensions d with Cov_x(E_q[z_d]) > threshold.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from betamcmc.vae.model import TextVAE, gaussian_kl, gaussian_log_density, pad_batch

# Logits allocated at once while importance sampling (floats): bounds memory on big vocabularies.
_LOGIT_BUDGET = 1 << 24


def length_sorted_batches(
    sentences: Sequence[Sequence[int]], batch_size: int, device: torch.device | str = "cpu"
) -> Iterator[tuple[list[int], Tensor, Tensor]]:
    """Yield ``(indices, ids, lengths)`` over sentences sorted by length (little padding)."""
    order = sorted(range(len(sentences)), key=lambda i: (len(sentences[i]), i))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        ids, lengths = pad_batch([list(sentences[i]) for i in idx])
        yield idx, ids.to(device), lengths.to(device)


def model_device(model: TextVAE) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def posterior_params(
    model: TextVAE, sentences: Sequence[Sequence[int]], batch_size: int = 64
) -> tuple[Tensor, Tensor]:
    """``(mu[N, Z], logvar[N, Z])`` of every sentence, in input order."""
    model.eval()
    n, z = len(sentences), model.config.latent_dim
    mu, logvar = torch.zeros(n, z), torch.zeros(n, z)
    for idx, ids, lengths in length_sorted_batches(sentences, batch_size, model_device(model)):
        m, lv = model.encode(ids, lengths)
        mu[idx], logvar[idx] = m.float().cpu(), lv.float().cpu()
    return mu, logvar


@torch.no_grad()
def importance_sampled(
    model: TextVAE, ids: Tensor, lengths: Tensor, k: int, generator: torch.Generator
) -> dict[str, Tensor]:
    """Per-sentence ``recon``, ``kl`` and ``nll`` of one batch with ``k`` samples from q(z|x)."""
    mu, logvar = model.encode(ids, lengths)
    batch, width = ids.shape
    per_chunk = max(1, _LOGIT_BUDGET // max(1, batch * (width + 1) * model.config.vocab_size))
    log_w, recon = [], []
    for start in range(0, k, per_chunk):
        s = min(per_chunk, k - start)
        eps = torch.randn((s, batch, mu.size(1)), generator=generator).to(mu.device)
        z = mu + torch.exp(0.5 * logvar) * eps  # [s, B, Z]
        nll = model.reconstruction_nll(
            ids.repeat(s, 1), lengths.repeat(s), z.reshape(s * batch, -1)
        ).view(s, batch)
        log_prior = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
        log_q = gaussian_log_density(z, mu, logvar)
        log_w.append(-nll + log_prior - log_q)
        recon.append(nll)
    weights = torch.cat(log_w)
    return {
        "recon": torch.cat(recon).mean(0),
        "kl": gaussian_kl(mu, logvar),
        "nll": -(torch.logsumexp(weights, 0) - math.log(k)),
        "elbo": weights.mean(0),
    }


def mutual_information(
    mu: Tensor, logvar: Tensor, generator: torch.Generator
) -> tuple[float, float]:
    """I(x; z) estimate of He et al. (2019) with the aggregate posterior over all N sentences,
    and its standard error.

    The estimate is the mean over sentences of ``E_q[log q(z|x_i)] - log q(z_i)``: the first
    term in closed form (minus the entropy of the Gaussian), the second with one
    ``z_i ~ q(z|x_i)`` each. Its standard error is the standard deviation of those per-sentence
    terms over sqrt(N). The estimate is not clipped: for a collapsed code (every posterior equal
    to the prior) it scatters around 0 and can come out slightly negative, which is why reports
    show it with its standard error.
    """
    n, dim = mu.shape
    if n < 2:
        return 0.0, 0.0
    neg_entropy = -0.5 * dim * math.log(2 * math.pi) - 0.5 * (1 + logvar).sum(-1)  # [N]
    z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=generator)
    log_qz = torch.empty(n)
    for start in range(0, n, 256):  # log q(z_i) = logsumexp_j log q(z_i | x_j) - log N
        zi = z[start : start + 256].unsqueeze(1)  # [b, 1, Z]
        dens = gaussian_log_density(zi, mu.unsqueeze(0), logvar.unsqueeze(0))  # [b, N]
        log_qz[start : start + 256] = torch.logsumexp(dens, 1) - math.log(n)
    terms = neg_entropy - log_qz
    return float(terms.mean()), float(terms.std() / math.sqrt(n))


def active_units(mu: Tensor, threshold: float = 0.01) -> tuple[int, list[float]]:
    """Number of dimensions with Cov_x(E_q[z_d]) > threshold, and the per-dimension variances."""
    if mu.size(0) < 2:
        return 0, [0.0] * mu.size(1)
    var = mu.var(0, unbiased=True)
    return int((var > threshold).sum()), [float(v) for v in var]


@torch.no_grad()
def evaluate_split(
    model: TextVAE,
    sentences: Sequence[Sequence[int]],
    k: int = 100,
    batch_size: int = 64,
    seed: int = 0,
    active_threshold: float = 0.01,
) -> dict[str, float]:
    """All metrics of one split (means per sentence; ``ppl`` per token incl. ``<eos>``)."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    n = len(sentences)
    if n == 0:
        raise ValueError("cannot evaluate an empty split")
    sums = {"recon": 0.0, "kl": 0.0, "elbo": 0.0, "nll": 0.0}
    tokens = 0
    for _, ids, lengths in length_sorted_batches(sentences, batch_size, model_device(model)):
        out = importance_sampled(model, ids, lengths, k, gen)
        for key in sums:
            sums[key] += float(out[key].sum())
        tokens += int((lengths + 1).sum())
    mu, logvar = posterior_params(model, sentences, batch_size)
    au, variances = active_units(mu, active_threshold)
    mi, mi_se = mutual_information(mu, logvar, gen)
    recon, kl, elbo, nll = (sums[k_] / n for k_ in ("recon", "kl", "elbo", "nll"))
    return {
        "recon": recon,
        "kl": kl,
        "elbo": elbo,
        "nll": nll,
        "ppl": math.exp(sums["nll"] / tokens),
        "mi": mi,
        "mi_se": mi_se,
        "au": au,
        "sentences": n,
        "tokens": tokens,
        "au_max_variance": max(variances),
    }


@torch.no_grad()
def quick_neg_elbo(
    model: TextVAE, sentences: Sequence[Sequence[int]], batch_size: int = 64, seed: int = 0
) -> float:
    """-ELBO per sentence with one z sample per sentence (cheap; used for model selection)."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    for _, ids, lengths in length_sorted_batches(sentences, batch_size, model_device(model)):
        mu, logvar = model.encode(ids, lengths)
        eps = torch.randn(mu.shape, generator=gen).to(mu.device)
        z = mu + torch.exp(0.5 * logvar) * eps
        total += float((model.reconstruction_nll(ids, lengths, z) + gaussian_kl(mu, logvar)).sum())
    return total / max(1, len(sentences))


@torch.no_grad()
def validate(
    model: TextVAE,
    sentences: Sequence[Sequence[int]],
    batch_size: int = 64,
    seed: int = 0,
    active_threshold: float = 0.01,
) -> dict[str, float]:
    """What training checks at every evaluation: the quick -ELBO (model selection) and the KL,
    mutual information and active units of the codes (is the latent code in use?)."""
    neg_elbo = quick_neg_elbo(model, sentences, batch_size, seed)
    mu, logvar = posterior_params(model, sentences, batch_size)
    mi, _ = mutual_information(mu, logvar, torch.Generator().manual_seed(seed))
    return {
        "neg_elbo": neg_elbo,
        "kl": float(gaussian_kl(mu, logvar).mean()),
        "mi": mi,
        "au": float(active_units(mu, active_threshold)[0]),
    }
