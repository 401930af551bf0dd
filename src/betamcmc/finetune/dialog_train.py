"""Training of the dialog CVAE (:mod:`betamcmc.finetune.cvae`): minibatches, Adam on
rec + beta_t KL (+ bow) with the best-valid-ELBO weights kept, and the repeatable ELBO evaluation.

beta_t comes from :func:`betamcmc.vae.schedules.beta_at` over the CVAE's own iterations
(``epochs * batches per epoch``), the same schedule functions the pretraining used.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from betamcmc.core.errors import DivergenceError
from betamcmc.data.prepared import Dialog, PreparedCorpus
from betamcmc.finetune.cvae import DialogCVAE, collate
from betamcmc.finetune.params import DialogParams
from betamcmc.vae.schedules import beta_at
from betamcmc.vae.step import autocast_for


def model_device(model: torch.nn.Module) -> torch.device:
    """Where ``model``'s parameters live (its batches go there)."""
    return next(model.parameters()).device


@dataclass
class TrainResult:
    iterations: int
    best_epoch: int
    best_valid_elbo: float
    steps: list[int] = field(default_factory=list)
    series: dict[str, list[float]] = field(default_factory=dict)  # beta/loss/rec/kl/bow per step
    epochs: list[dict[str, float]] = field(default_factory=list)  # valid metrics per epoch


def minibatches(
    dialogs: list[Dialog], size: int, generator: torch.Generator | None
) -> list[list[Dialog]]:
    """``dialogs`` in chunks of ``size``: shuffled by ``generator``, in order without one."""
    order = (
        torch.randperm(len(dialogs), generator=generator).tolist()
        if generator
        else range(len(dialogs))
    )
    ordered = [dialogs[i] for i in order]
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def train_cvae(
    model: DialogCVAE,
    corpus: PreparedCorpus,
    schedule: object,
    params: DialogParams,
    seed: int,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    report: Callable[[int, int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Adam on rec + beta_t KL (+ bow), beta_t from ``schedule``; keeps the best-valid-ELBO weights
    in ``model`` on return. Raises :class:`DivergenceError` on a non-finite loss.
    ``report(iteration, of iterations, values)``: progress after every iteration (beta and the
    minibatch's loss terms)."""
    train = corpus.dialogs["train"]
    per_epoch = math.ceil(len(train) / params.batch_size)
    total = per_epoch * params.epochs
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr)
    result = TrainResult(iterations=total, best_epoch=-1, best_valid_elbo=-math.inf)
    keys = ("beta", "loss", "rec", "kl", "bow")
    result.series = {k: [] for k in keys}
    best_state: dict[str, torch.Tensor] | None = None
    device = model_device(model)
    iteration = 0
    for epoch in range(params.epochs):
        model.train()
        for chunk in minibatches(train, params.batch_size, generator):
            beta = beta_at(schedule, iteration, total)
            with autocast_for(device):
                out = model(collate(chunk, model.config.max_context).to(device), beta=beta)
            loss = out["loss"]
            if not torch.isfinite(loss):
                raise DivergenceError(
                    f"dialog CVAE loss is {loss.item()} at iteration {iteration} (epoch {epoch}, beta {beta:.4g})"
                )
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), params.clip)
            optimizer.step()
            result.steps.append(iteration)
            result.series["beta"].append(beta)
            for k in keys[1:]:
                result.series[k].append(float(out[k].item()))
            iteration += 1
            if report is not None:
                report(iteration, total, {k: result.series[k][-1] for k in keys})
        valid = evaluate_elbo(model, corpus.dialogs["valid"], params.batch_size, seed)
        result.epochs.append(valid)
        if on_epoch is not None:
            on_epoch(epoch, valid)
        if valid["elbo"] > result.best_valid_elbo:
            result.best_valid_elbo, result.best_epoch = valid["elbo"], epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return result


@torch.no_grad()
def evaluate_elbo(
    model: DialogCVAE, dialogs: list[Dialog], batch_size: int, seed: int
) -> dict[str, float]:
    """Per-response means of reconstruction (-log p(x|z,c), one z ~ q), KL, bow loss and ELBO
    (beta = 1), plus per-word reconstruction; z noise from a fixed seed so it is repeatable."""
    was_training = model.training
    model.eval()
    state = torch.random.get_rng_state()
    torch.manual_seed(seed + 7919)
    sums = {"rec": 0.0, "kl": 0.0, "bow": 0.0, "elbo": 0.0}
    words = 0
    for chunk in minibatches(dialogs, batch_size, None):
        batch = collate(chunk, model.config.max_context).to(model_device(model))
        out = model(batch, beta=1.0)
        for k in sums:
            sums[k] += float(out[k].item()) * len(chunk)
        words += int(batch.resp_lens.sum().item()) + len(chunk)  # + <eos> per response
    torch.random.set_rng_state(state)
    model.train(was_training)
    n = max(len(dialogs), 1)
    result = {k: v / n for k, v in sums.items()}
    result["rec_per_word"] = sums["rec"] / max(words, 1)
    for k, v in result.items():
        if not math.isfinite(v):
            raise DivergenceError(f"dialog CVAE evaluation: {k} is {v}")
    return result
