"""The minibatches of the text VAE's training: length-bucketed, a pure function of the seed.

Each epoch shuffles the training sentences with a generator seeded by ``(seed, epoch)``, sorts
them by length (stable, so ties stay shuffled), cuts batches and shuffles the batch order. Batch
``t`` is therefore a pure function of ``(seed, t)``, which is what makes resuming exact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from betamcmc.vae.model import pad_batch


def epoch_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int
) -> list[list[int]]:
    """The minibatches (lists of sentence indices) of one epoch, bucketed by length."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    shuffled = torch.randperm(len(lengths), generator=gen).tolist()
    by_length = sorted(shuffled, key=lambda i: lengths[i])  # stable: ties stay shuffled
    batches = [by_length[i : i + batch_size] for i in range(0, len(by_length), batch_size)]
    order = torch.randperm(len(batches), generator=gen).tolist()
    return [batches[i] for i in order]


class BatchStream:
    """Batch of iteration t for any t (epochs recomputed lazily), for exact resume."""

    def __init__(self, sentences: Sequence[Sequence[int]], batch_size: int, seed: int):
        self.sentences = sentences
        self.lengths = [len(s) for s in sentences]
        self.batch_size, self.seed = batch_size, seed
        self.per_epoch = math.ceil(len(sentences) / batch_size)
        self._epoch, self._batches = -1, []

    def __call__(self, iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, pos = divmod(iteration, self.per_epoch)
        if epoch != self._epoch:
            self._epoch = epoch
            self._batches = epoch_batches(self.lengths, self.batch_size, self.seed, epoch)
        return pad_batch([list(self.sentences[i]) for i in self._batches[pos]])
