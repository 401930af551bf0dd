"""A pretrained text VAE's sentence codes and the linear readout of what they carry.

:func:`encode_sentences` runs the frozen encoder over token-id lists to one code per sentence:
its posterior mean mu or one sample z ~ q(z|x) (the code the decoder receives).
:func:`fit_predict_logreg` is the readout: an L2 logistic regression fitted on one set of
features (codes, or any other dense or sparse rows) and applied to another. The
``pretrain_report`` stage probes each schedule's codes with both, and the downstream tasks of
:mod:`betamcmc.finetune` classify from them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from betamcmc.core.errors import DivergenceError
from betamcmc.vae.model import pad_batch


@torch.no_grad()
def encode_sentences(
    vae: Any, ids: list[list[int]], features: str, seed: int, batch: int = 256
) -> np.ndarray:
    """Posterior means (``features='mean'``) or one posterior sample per sentence (``'sample'``)."""
    vae.eval()
    generator = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, len(ids), batch):
        x, lengths = pad_batch(ids[i : i + batch])
        mu, logvar = vae.encode(x, lengths)
        if features == "sample":
            mu = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=generator)
        out.append(mu)
    codes = torch.cat(out).double().numpy()
    if not np.isfinite(codes).all():
        raise DivergenceError("the VAE encoder produced non-finite codes")
    return codes


def fit_predict_logreg(
    x_train: Any, y_train: np.ndarray, x_test: Any, c: float, scale: bool
) -> np.ndarray:
    """L2 logistic regression (lbfgs, deterministic); dense features standardized first."""
    # lazy: sklearn adds ~1.5 s to this module's import (on top of torch): only a fit pays it
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(y_train)) < 2:  # one class labeled: predict it
        return np.full(x_test.shape[0], y_train[0])
    if scale:
        scaler = StandardScaler().fit(x_train)
        x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    model = LogisticRegression(C=c, max_iter=5000)
    model.fit(x_train, y_train)
    return model.predict(x_test)
