"""Atomic output writing: every file a stage produces appears whole or not at all.

Stages write to a temporary sibling and ``os.replace`` it into place, so a crash, a SIGTERM or a
validation error never leaves a half-written output that DVC or a later stage would trust.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``.

    Works for files and directories (a directory output is replaced as a whole).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    staged = tmp / target.name
    try:
        try:
            yield staged
        except OSError as err:
            if err.filename is None:  # a write that failed (full disk): name the output
                raise OSError(err.errno, err.strerror, str(target)) from err
            raise
        old = None
        if target.is_dir() and not target.is_symlink():
            old = tmp / (target.name + ".old")
            os.replace(target, old)
        try:
            os.replace(staged, target)
        except BaseException:
            if old is not None:  # put the previous directory back before the temp dir goes
                os.replace(old, target)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as pretty JSON atomically (NaN is refused: metrics must be finite or null)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
