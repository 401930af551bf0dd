"""What the engine samples: a model, a minibatch loss for the workers, test predictions for the master.

A task is the pluggable part of the engine (``RunSpec.task_factory``, ``config.py``). The engine owns the parameters as
one flat vector, scales the minibatch loss to the data set size, adds the Gaussian prior and runs
the sampler; a task only says how to build the model, how to score a minibatch and what the model
predicts on the test set:

* ``build_model() -> nn.Module`` (the engine seeds torch before calling it, so every process
  builds the same initial parameters);
* ``minibatch_nll(model, generator) -> Tensor``: mean negative log-likelihood of a minibatch drawn
  with ``generator`` (the engine multiplies it by ``n_train``);
* ``test_log_probs(model) -> Tensor [n_test, n_classes]`` and ``test_targets`` for evaluation.

Tasks here: ``digits`` (MLP 64-hidden-10 on scikit-learn's bundled 8x8 digits, the embedded
default), ``mnist`` (a small CNN on MNIST-format IDX files, read by :func:`read_idx`), and
``logreg`` (Bayesian logistic regression on a fixed synthetic data set, for the consistency study).
"""

from __future__ import annotations

import gzip
import importlib.util
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from betamcmc.core.errors import InputError
from betamcmc.sgmcmc.params import TaskParams

DATA_SEED = 1234  # the data split / synthetic data do not move with the chains' seed


class Task:
    """Classification task on in-memory tensors; subclasses provide the model."""

    name = "task"

    def __init__(
        self,
        x_train: torch.Tensor,
        y_train: torch.Tensor,
        x_test: torch.Tensor,
        y_test: torch.Tensor,
        batch_size: int,
        n_classes: int,
    ):
        self.x_train, self.y_train = x_train, y_train
        self.x_test, self.test_targets = x_test, y_test
        self.batch_size = min(batch_size, len(x_train))
        self.n_train = len(x_train)
        self.n_classes = n_classes

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def to(self, device: str) -> Task:
        """Move the training data to ``device`` (the workers' gradients run there)."""
        self.x_train, self.y_train = self.x_train.to(device), self.y_train.to(device)
        return self

    def batch(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(self.n_train, (self.batch_size,), generator=generator)
        if self.x_train.device.type != "cpu":
            idx = idx.to(self.x_train.device)
        return self.x_train[idx], self.y_train[idx]

    def minibatch_nll(self, model: nn.Module, generator: torch.Generator) -> torch.Tensor:
        x, y = self.batch(generator)
        return F.cross_entropy(model(x), y)

    def full_nll(self, model: nn.Module) -> torch.Tensor:
        """Mean negative log-likelihood of the whole training set (full-batch chains)."""
        return F.cross_entropy(model(self.x_train), self.y_train)

    @torch.no_grad()
    def test_log_probs(self, model: nn.Module) -> torch.Tensor:
        out = []
        for i in range(0, len(self.x_test), 2048):
            out.append(F.log_softmax(model(self.x_test[i : i + 2048]), dim=-1))
        return torch.cat(out)

    def describe(self) -> dict[str, Any]:
        return {"task": self.name, "n_train": self.n_train, "n_test": len(self.test_targets)}


class MLP(nn.Module):
    def __init__(self, n_in: int, hidden: int, n_out: int):
        super().__init__()
        self.fc1 = nn.Linear(n_in, hidden)
        self.fc2 = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x)))


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits (1,797 x 64 pixels in 0..16, labels 0..9), read from its
    CSV file directly: importing ``sklearn.datasets`` costs seconds in every worker process."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("scikit-learn is not installed (it ships the digits data)")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "digits.csv.gz"
    data = np.loadtxt(path, delimiter=",", dtype=np.float64)
    return data[:, :-1], data[:, -1].astype(np.int64)


def stratified_test_mask(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A fixed stratified split: ``round(fraction * n_c)`` random points of each class are test."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        mask[rng.permutation(idx)[: int(round(fraction * len(idx)))]] = True
    return mask


class DigitsTask(Task):
    """MLP on scikit-learn's 1,797 8x8 digits (pixels / 16), a fixed stratified split."""

    name = "digits"

    def __init__(self, hidden: int, batch_size: int, test_fraction: float = 0.2):
        x, y = load_digits()
        test = stratified_test_mask(y, test_fraction, DATA_SEED)
        x_tr, x_te, y_tr, y_te = x[~test], x[test], y[~test], y[test]
        super().__init__(
            torch.tensor(x_tr / 16.0, dtype=torch.float32),
            torch.tensor(y_tr, dtype=torch.long),
            torch.tensor(x_te / 16.0, dtype=torch.float32),
            torch.tensor(y_te, dtype=torch.long),
            batch_size,
            10,
        )
        self.hidden = hidden

    def build_model(self) -> nn.Module:
        return MLP(64, self.hidden, 10)


# --------------------------------------------------------------------------- MNIST IDX
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format; ``.gz`` allowed): magic ``0 0 dtype ndim``, ``ndim``
    big-endian uint32 sizes, then the data in C order. Malformed files raise :class:`InputError`."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise InputError("IDX file not found", path) from None
    except (OSError, EOFError) as err:
        raise InputError(f"cannot read IDX file ({err})", path) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise InputError("not an IDX file (magic must start with two zero bytes)", path)
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise InputError(f"unknown IDX data type 0x{code:02x}", path)
    if ndim < 1 or len(raw) < 4 + 4 * ndim:
        raise InputError(f"truncated IDX header ({ndim} dimensions)", path)
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(dims)) * dtype.itemsize
    body = raw[4 + 4 * ndim :]
    if len(body) != expected:
        raise InputError(f"IDX data has {len(body)} bytes, header {dims} needs {expected}", path)
    return np.frombuffer(body, dtype=dtype).reshape(dims)


def _find_idx(root: Path, stem: str) -> Path:
    for name in (
        stem,
        stem + ".gz",
        stem.replace("-idx", ".idx"),
        stem.replace("-idx", ".idx") + ".gz",
    ):
        if (root / name).exists():
            return root / name
    raise InputError(f"missing {stem}[.gz] (MNIST IDX layout expected)", root)


def load_mnist(root: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-*`` under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise InputError("MNIST directory not found", root)
    arrays = []
    for split in ("train", "t10k"):
        images = read_idx(_find_idx(root, f"{split}-images-idx3-ubyte"))
        labels = read_idx(_find_idx(root, f"{split}-labels-idx1-ubyte"))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise InputError(
                f"{split}: images {images.shape} and labels {labels.shape} do not match", root
            )
        if labels.size and int(labels.max()) > 9:
            raise InputError(f"{split}: labels must be 0-9 (got {int(labels.max())})", root)
        arrays += [images, labels]
    return arrays[0], arrays[1], arrays[2], arrays[3]


class CNN(nn.Module):
    def __init__(self, height: int, width: int, channels: int, n_out: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 5, padding=2)
        self.conv2 = nn.Conv2d(channels, 2 * channels, 5, padding=2)
        flat = 2 * channels * (height // 4) * (width // 4)
        self.fc = nn.Linear(flat, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


class MnistTask(Task):
    name = "mnist"

    def __init__(
        self, path: str, channels: int, batch_size: int, max_train: int | None, max_test: int | None
    ):
        x_tr, y_tr, x_te, y_te = load_mnist(path)
        x_tr, y_tr = x_tr[:max_train], y_tr[:max_train]
        x_te, y_te = x_te[:max_test], y_te[:max_test]
        if len(x_tr) == 0 or len(x_te) == 0:
            raise InputError("MNIST train and test sets must not be empty", path)
        self.shape = x_tr.shape[1:]
        self.channels = channels

        def as_tensor(a: np.ndarray) -> torch.Tensor:
            return torch.tensor(a, dtype=torch.float32).unsqueeze(1) / 255.0

        super().__init__(
            as_tensor(x_tr),
            torch.tensor(y_tr, dtype=torch.long),
            as_tensor(x_te),
            torch.tensor(y_te, dtype=torch.long),
            batch_size,
            10,
        )

    def build_model(self) -> nn.Module:
        return CNN(int(self.shape[0]), int(self.shape[1]), self.channels)


# --------------------------------------------------------------------------- logistic regression
class LogisticRegression(nn.Module):
    """``p(y=1|x) = sigmoid(w.x + b)``; outputs the two classes' logits ``[0, w.x + b]``."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(x)
        return torch.cat([torch.zeros_like(z), z], dim=1)


class LogregTask(Task):
    """Bayesian logistic regression on ``n`` synthetic points: ``x ~ N(0, I)``,
    ``w ~ N(0, I)``, ``y ~ Bernoulli(sigmoid(w.x))`` (fixed data seed)."""

    name = "logreg"

    def __init__(self, n: int, dim: int, batch_size: int, test_fraction: float = 0.2):
        g = np.random.default_rng(DATA_SEED)
        x = g.standard_normal((n, dim))
        w = g.standard_normal(dim)
        y = (g.random(n) < 1.0 / (1.0 + np.exp(-(x @ w)))).astype(np.int64)
        n_test = max(1, int(round(n * test_fraction)))
        super().__init__(
            torch.tensor(x[n_test:], dtype=torch.float32),
            torch.tensor(y[n_test:]),
            torch.tensor(x[:n_test], dtype=torch.float32),
            torch.tensor(y[:n_test]),
            batch_size,
            2,
        )
        self.dim = dim

    def build_model(self) -> nn.Module:
        return LogisticRegression(self.dim)


def build_task(params: TaskParams, batch_size: int) -> Task:
    """The task named by ``sgmcmc.task`` (its data loaded, its model not yet built)."""
    if params.kind == "digits":
        return DigitsTask(params.hidden, batch_size, params.test_fraction)
    if params.kind == "mnist":
        assert params.path is not None
        return MnistTask(
            path=params.path,
            channels=params.channels,
            batch_size=batch_size,
            max_train=params.max_train,
            max_test=params.max_test,
        )
    return LogregTask(params.logreg_n, params.logreg_dim, batch_size, params.test_fraction)
