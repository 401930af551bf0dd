"""The classifiers of the semi-supervised classification (:mod:`betamcmc.finetune.classify`) and
the label study (:mod:`betamcmc.finetune.labels`), each fitted on the labeled examples and
predicting another split's classes:

- :func:`betamcmc.vae.codes.fit_predict_logreg`: L2 logistic regression on frozen codes or
  bag-of-words rows (the readout shared with the ``pretrain_report`` stage's code probe);
- :func:`fit_predict_mlp`: a one-hidden-layer MLP on frozen codes;
- :func:`finetune_predict`: the VAE encoder and a linear layer trained end to end.

:func:`classify_codes` picks the code classifier ``finetune.classifier`` names.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from betamcmc.core.errors import DivergenceError
from betamcmc.finetune.params import FinetuneParams
from betamcmc.vae.codes import fit_predict_logreg
from betamcmc.vae.model import pad_batch


@dataclass
class LabeledSplit:
    """The token ids of a split's labeled sentences and their classes."""

    ids: list[list[int]]
    y: np.ndarray


def fit_predict_mlp(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    n_classes: int,
    p: FinetuneParams,
    seed: int,
) -> np.ndarray:
    """One-hidden-layer MLP (tanh), full-batch Adam for ``p.epochs`` epochs, standardized inputs."""
    torch.manual_seed(seed)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-8
    xt = torch.tensor((x_train - mean) / std, dtype=torch.float32)
    xs = torch.tensor((x_test - mean) / std, dtype=torch.float32)
    yt = torch.tensor(y_train)
    net = torch.nn.Sequential(
        torch.nn.Linear(xt.shape[1], p.mlp_hidden),
        torch.nn.Tanh(),
        torch.nn.Linear(p.mlp_hidden, n_classes),
    )
    opt = torch.optim.Adam(net.parameters(), lr=p.lr, weight_decay=1e-4)
    for epoch in range(p.epochs):
        loss = torch.nn.functional.cross_entropy(net(xt), yt)
        if not torch.isfinite(loss):
            raise DivergenceError(f"classifier loss is {loss.item()} at epoch {epoch}")
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return net(xs).argmax(-1).numpy()


def finetune_predict(
    vae: Any, train: LabeledSplit, test: LabeledSplit, n_classes: int, p: FinetuneParams, seed: int
) -> np.ndarray:
    """Encoder (embedding + LSTM + posterior mean layer) and a linear layer trained end to end
    with cross-entropy on the labeled sentences; the VAE passed in is not modified."""
    torch.manual_seed(seed)
    model = copy.deepcopy(vae)
    model.train()
    head = torch.nn.Linear(model.config.latent_dim, n_classes)
    params = [
        q
        for name, q in model.named_parameters()
        if name.split(".")[0] in ("embedding", "encoder", "posterior")
    ]
    opt = torch.optim.Adam([*params, *head.parameters()], lr=p.finetune_lr)
    generator = torch.Generator().manual_seed(seed)
    y = torch.tensor(train.y)
    for epoch in range(p.finetune_epochs):
        order = torch.randperm(len(train.ids), generator=generator).tolist()
        for i in range(0, len(order), p.batch_size):
            rows = order[i : i + p.batch_size]
            x, lengths = pad_batch([train.ids[r] for r in rows])
            mu, _ = model.encode(x, lengths)
            loss = torch.nn.functional.cross_entropy(head(mu), y[rows])
            if not torch.isfinite(loss):
                raise DivergenceError(
                    f"end-to-end fine-tuning loss is {loss.item()} at epoch {epoch}"
                )
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_([*params, *head.parameters()], 5.0)
            opt.step()
    model.eval()
    with torch.no_grad():
        preds = []
        for i in range(0, len(test.ids), 256):
            x, lengths = pad_batch(test.ids[i : i + 256])
            preds.append(head(model.encode(x, lengths)[0]).argmax(-1))
    return torch.cat(preds).numpy()


def classify_codes(
    p: FinetuneParams, n_classes: int, x_tr: Any, y_tr: np.ndarray, x_te: Any, seed: int
) -> np.ndarray:
    """The predicted classes of ``x_te`` by the code classifier ``p.classifier`` names."""
    if p.classifier == "mlp":
        return fit_predict_mlp(x_tr, y_tr, x_te, n_classes, p, seed)
    return fit_predict_logreg(x_tr, y_tr, x_te, p.logreg_c, scale=True)
