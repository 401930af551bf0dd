"""Files in and out: every file a stage produces appears whole or not at all.

Stages write to a temporary sibling and ``os.replace`` it into place, so a crash, a SIGTERM or a
validation error never leaves a half-written output that DVC or a later stage would trust.
The one CSV writer and reader of the package live here too (curves and tables for DVC plots),
and the one flattener of nested mappings into dotted keys (metrics files, params, MLflow).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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


# --------------------------------------------------------------------------- CSV
def csv_cell(value: Any) -> str:
    """A CSV cell as every table of the package writes it: a whole number without a decimal
    point, any other number to 6 significant figures, text as it is."""
    if isinstance(value, str):
        return value
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def csv_text(
    columns: Sequence[str],
    rows: Iterable[Mapping[str, Any]],
    cell: Callable[[Any], str] = csv_cell,
) -> str:
    """A header and one line per row (``row[column]`` through ``cell``), ``\\n`` line ends."""
    lines = [",".join(columns)]
    lines += [",".join(cell(row[c]) for c in columns) for row in rows]
    return "\n".join(lines) + "\n"


def column_rows(columns: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """``{"a": [1, 2], "b": [3, 4]}`` -> ``[{"a": 1, "b": 3}, {"a": 2, "b": 4}]``."""
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def write_csv(
    path: str | os.PathLike[str],
    columns: Sequence[str],
    rows: Iterable[Mapping[str, Any]],
    cell: Callable[[Any], str] = csv_cell,
) -> None:
    """Write a table atomically (see :func:`csv_text`)."""
    write_text(path, csv_text(columns, rows, cell))


def read_csv_rows(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """A CSV file as its rows (header keys, cells as text)."""
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def read_csv(path: str | os.PathLike[str]) -> dict[str, list[float]]:
    """A CSV file as columns of floats (a cell that is no number becomes NaN)."""
    rows = read_csv_rows(path)

    def number(text: str) -> float:
        try:
            return float(text)
        except ValueError:
            return math.nan

    return {k: [number(r[k]) for r in rows] for k in (rows[0] if rows else {})}


# --------------------------------------------------------------------------- nested mappings
def flatten(tree: Mapping[str, Any], prefix: str = "", keep_empty: bool = False) -> dict[str, Any]:
    """A nested mapping as ``{"a.b.c": leaf}`` (lists are leaves). ``keep_empty``: an empty
    mapping below the root is kept as the leaf ``"{}"`` instead of vanishing."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            inner = flatten(value, name + ".", keep_empty)
            out.update(inner if inner or not keep_empty else {name: "{}"})
        else:
            out[name] = value
    return out


def flatten_numbers(tree: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers of a nested mapping under dotted names (``test.kl``): strings, booleans,
    lists and nulls are left out."""
    return {
        k: float(v)
        for k, v in flatten(tree, prefix).items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


# --------------------------------------------------------------------------- threads
def limit_threads(threads: int) -> None:
    """Cap this process's CPU threads: torch's and the BLAS libraries' (numpy, sklearn, scipy);
    0 keeps the libraries' defaults (``runtime.threads``)."""
    if threads > 0:
        # lazy: torch (a second) loads only in the processes that compute
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(threads)
        threadpool_limits(limits=threads)
