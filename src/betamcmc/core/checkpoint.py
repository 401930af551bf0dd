"""Reading model files safely: weights only, and one clear line for a file of the wrong kind.

Every model file the project reads (a text VAE, a dialog CVAE, a resumable training state) goes
through :func:`read_checkpoint`, which calls ``torch.load(..., weights_only=True)``: tensors and
plain values only, so a file that holds pickled code is refused, never run. A file that is not
the checkpoint asked for (another model's file, a vocabulary, a truncated download, a plain
pickle) raises :class:`~betamcmc.core.errors.InputError` naming the file and what it looks like, e.g.::

    models/dialog/cyclical-bow/model.pt: not a text VAE checkpoint: it is a dialog CVAE
    (use `betamcmc respond -m models/dialog/<item>`)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from betamcmc.core.errors import InputError

T = TypeVar("T")

ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive

# what a checkpoint's top-level keys say it is, and how to use it
KINDS = (
    (("config", "model"), "a text VAE (use `betamcmc sample -m models/pretrain/<schedule>`)"),
    (("config", "state_dict"), "a dialog CVAE (use `betamcmc respond -m models/dialog/<item>`)"),
    (("obs_dim", "n_actions", "state_dict"), "an rl policy (use `betamcmc rl play`)"),
    (("fingerprint", "iteration", "optimizer"), "a resumable pretrain state, not a trained model"),
)


def read_checkpoint(path: Path, what: str, keys: tuple[str, ...], device: Any = "cpu") -> dict:
    """Load ``path`` (weights only) and check it holds ``keys``; else one clear InputError."""
    if path.is_dir():
        raise InputError(f"expected a {what} checkpoint file, found a directory", path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols of foreign files
            blob = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # torch raises many kinds (zip, pickle, EOF, runtime) for a bad file
        raise InputError(f"not a {what} checkpoint: {_unreadable(path, err)}", path) from None
    if not isinstance(blob, dict) or not all(k in blob for k in keys):
        raise InputError(f"not a {what} checkpoint: {_looks_like(blob)}", path)
    return blob


def build(path: Path, what: str, make: Callable[[], T]) -> T:
    """Run ``make()`` (build the model from the checkpoint's config, load its weights); a config
    or weights that do not fit this version's model become one InputError line."""
    try:
        return make()
    except (TypeError, ValueError, KeyError, RuntimeError) as err:
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise InputError(
            f"{what} checkpoint does not fit this version's model ({reason})", path
        ) from None


def _unreadable(path: Path, err: Exception) -> str:
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError as os_err:
        return os_err.strerror or type(os_err).__name__
    if not head:
        return "the file is empty"
    if not head.startswith(ZIP_MAGIC):
        if head[:1] == b"\x80":
            return "a plain pickle, not a PyTorch checkpoint (betamcmc never unpickles code)"
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:
            text = "\x00"  # a multi-byte character cut at byte 512 is rare enough
        if "\x00" in text:
            return "not a PyTorch checkpoint"
        return "a text file, not a PyTorch checkpoint"
    message = str(err)
    if "weights_only" in message or "Unsupported global" in message:
        return "it holds objects other than tensors and plain values (refused: weights only)"
    first = message.strip().splitlines()[0].split(". ")[0][:120] if message.strip() else ""
    return f"unreadable or truncated PyTorch file ({first or type(err).__name__})"


def _looks_like(blob: Any) -> str:
    if isinstance(blob, dict):
        for keys, kind in KINDS:
            if all(k in blob for k in keys):
                return f"it is {kind}"
        shown = ", ".join(sorted(map(str, blob))[:6])
        return f"a PyTorch file with other contents (keys: {shown or 'none'})"
    return f"a PyTorch file holding a {type(blob).__name__}, not a checkpoint"
