"""A real corpus's files: read strictly, found where ``data.path`` points, cut into splits.

Reading: every file is strict UTF-8 (a UTF-8 byte-order mark dropped); UTF-16/32, binary files
and invalid bytes raise :class:`InputError` naming the file and the first bad line. Lines end at
``\\n``, ``\\r\\n`` or ``\\r`` only, as a text editor counts them.

Split rule (all real corpora): the standard split files present are used as the splits. When a
``train`` file is present, a missing ``valid``/``test`` split is carved from it; when there is no
``train`` file (e.g. only a ``valid.txt`` sample), all files found are pooled and split
deterministically (seeded shuffle) by ``data.split``. A single file is split the same way.
Dialog corpora are split by dialog, never by turn (the items split are dialogs).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from betamcmc.core.errors import InputError
from betamcmc.data.params import DataParams
from betamcmc.data.prepared import SPLITS
from betamcmc.tracking import project_root

# --------------------------------------------------------------------------- reading
_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)
UTF8_BOM = b"\xef\xbb\xbf"


def read_text(path: Path) -> str:
    """A corpus file as text: strict UTF-8, a UTF-8 byte-order mark dropped, NUL bytes refused.

    UTF-16/32 files (byte-order mark, or NUL bytes between ASCII letters) and binary files are
    rejected with one line naming the file and the first bad line.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except IsADirectoryError:
        raise InputError("expected a file, found a directory", path) from None
    except PermissionError:
        raise InputError("permission denied", path) from None
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            raise InputError(
                f"{encoding} text (byte-order mark {bom.hex(' ')}); save the file as UTF-8", path, 1
            )
    raw = raw.removeprefix(UTF8_BOM)
    nul = raw.find(b"\x00")
    if nul >= 0:
        line = raw[:nul].count(b"\n") + 1
        raise InputError(
            "NUL byte: a binary file or UTF-16/32 text; expected UTF-8 text", path, line
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise InputError(
            f"not valid UTF-8 ({err.reason}, byte 0x{raw[err.start]:02x})", path, line
        ) from None


_NEWLINE = re.compile(r"\r\n|\r|\n")


def read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-empty stripped lines with their 1-based line numbers (see :func:`read_text`).

    Lines end at ``\\n``, ``\\r\\n`` or ``\\r`` only (as a text editor counts them), not at the
    other characters :meth:`str.splitlines` breaks on (U+2028, U+0085, form feed, ...), which are
    valid inside a sentence or a JSON string.
    """
    text = read_text(path)
    lines = _NEWLINE.split(text)
    return [(i, line.strip()) for i, line in enumerate(lines, start=1) if line.strip()]


def tokenize(text: str, lowercase: bool) -> list[str]:
    return (text.lower() if lowercase else text).split()


# --------------------------------------------------------------------------- locating
def require_path(data: DataParams) -> Path:
    """``data.path``; a relative one is relative to the project root, also when a queued DVC
    experiment runs in a temporary workspace under ``.dvc/tmp/exps/`` (where ``../shared``
    would otherwise point inside ``.dvc/tmp``)."""
    path = Path(data.path or "")
    if not path.is_absolute() and not path.exists():
        path = project_root() / path
    if not path.exists():
        raise InputError(f"data.path does not exist (data.corpus={data.corpus})", data.path or "")
    return path


def standard_files(directory: Path, names: dict[str, list[str]]) -> dict[str, Path]:
    """Per split, the first of its candidate file ``names`` present in ``directory``."""
    found = {}
    for split_name, candidates in names.items():
        for name in candidates:
            if (directory / name).is_file():
                found[split_name] = directory / name
                break
    return found


# --------------------------------------------------------------------------- splitting
def split_indices(n: int, split: Any, seed: int) -> dict[str, np.ndarray]:
    """Deterministic shuffle-and-cut of ``n`` items into train/valid/test by fractions."""
    order = np.random.default_rng(seed).permutation(n)
    n_valid = max(1, int(round(n * split.valid))) if n >= 3 else 0
    n_test = max(1, int(round(n * split.test))) if n >= 3 else 0
    return {
        "valid": order[:n_valid],
        "test": order[n_valid : n_valid + n_test],
        "train": order[n_valid + n_test :],
    }


def assign_splits(
    found: dict[str, list[Any]], split: Any, seed: int, what: str, notes: list[str]
) -> dict[str, list[Any]]:
    """Apply the split rule (module docstring) to items grouped by the split file they came from."""
    if "train" in found:
        out = {s: list(found.get(s, [])) for s in SPLITS}
        missing = [s for s in ("valid", "test") if s not in found]
        if missing:
            pool = out["train"]
            idx = split_indices(len(pool), split, seed)
            out["train"] = [pool[i] for i in idx["train"]]
            for s in missing:
                out[s] = [pool[i] for i in idx[s]]
            notes.append(f"{what}: carved {', '.join(missing)} from train by data.split")
        return out
    pool = [item for key in sorted(found) for item in found[key]]
    idx = split_indices(len(pool), split, seed)
    notes.append(f"{what}: no train file; pooled {sorted(found)} and split by data.split")
    return {s: [pool[i] for i in idx[s]] for s in SPLITS}
