"""Values for ``docs/results`` templates: key paths in JSON files and their formats (see
:mod:`betamcmc.results.docs`). No torch, no yaml."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from betamcmc.core import stats


class LookupFailed(Exception):
    """A file or key path that does not resolve (wrapped into a TemplateError with its place)."""


def resolve(tree: Any, keypath: str) -> Any:
    """The value at ``keypath`` in ``tree``: dotted keys matched greedily, integers index lists."""
    parts = [p for p in keypath.strip().split(".")] if keypath.strip() else []
    node, i = tree, 0
    while i < len(parts):
        if isinstance(node, dict):
            for j in range(len(parts), i, -1):
                key = ".".join(parts[i:j])
                if key in node:
                    node, i = node[key], j
                    break
            else:
                raise LookupFailed(f"no key {'.'.join(parts[i:])!r} (after {_done(parts, i)})")
        elif isinstance(node, list):
            try:
                node = node[int(parts[i])]
            except (ValueError, IndexError):
                raise LookupFailed(
                    f"{parts[i]!r} is not an index of a list of {len(node)} "
                    f"(after {_done(parts, i)})"
                ) from None
            i += 1
        else:
            raise LookupFailed(f"{_done(parts, i)} is a {type(node).__name__}, not a dict/list")
    return node


def _done(parts: list[str], i: int) -> str:
    return repr(".".join(parts[:i])) if i else "the top level"


class Source:
    """Repo-relative JSON files, each read once per render."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[str, Any] = {}

    def load(self, rel: str) -> Any:
        if rel not in self._cache:
            path = self.root / rel
            if not path.is_file():
                raise LookupFailed(f"no file {rel}")
            try:
                self._cache[rel] = json.loads(path.read_text())
            except json.JSONDecodeError as err:
                raise LookupFailed(f"{rel} is not JSON: {err}") from None
        return self._cache[rel]

    def get(self, rel: str, keypath: str) -> Any:
        try:
            return resolve(self.load(rel), keypath)
        except LookupFailed as err:
            raise LookupFailed(f"{rel}: {err}") from None

    def glob(self, pattern: str) -> list[str]:
        found = sorted(p.relative_to(self.root).as_posix() for p in self.root.glob(pattern))
        if not found:
            raise LookupFailed(f"no file matches {pattern}")
        return found


# ----------------------------------------------------------------------------- formats


def _num(value: Any) -> float:
    """A looked-up value as a float; :class:`LookupFailed` when it is no number (or a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LookupFailed(f"expected a number, got {value!r}")
    return float(value)


def _pct(value: Any, arg: str) -> str:
    return f"{_num(value) * 100:{arg or '.1f'}} %"


def _ci(value: Any, arg: str) -> str:
    if not isinstance(value, dict) or not {"mean", "std", "ci_low", "ci_high"} <= value.keys():
        raise LookupFailed(f"ci needs a {{mean, std, ci_low, ci_high}} dict, got {value!r}")
    return stats.fmt_ci(value, int(arg or 3))


def _range(value: Any, arg: str) -> str:
    """A ``{median, min, max}`` dict (or a list of numbers) as ``median (min–max)``."""
    if isinstance(value, list):
        value = summary(value)
    if not isinstance(value, dict) or not {"median", "min", "max"} <= value.keys():
        raise LookupFailed(f"range needs a {{median, min, max}} dict, got {value!r}")
    spec = arg or ".3g"
    lo, mid, hi = (format(_num(value[k]), spec) for k in ("min", "median", "max"))
    return f"{mid} ({lo}–{hi})"


FORMATS: dict[str, Callable[[Any, str], str]] = {
    "pct": _pct,  # a fraction as a percentage, "12.3 %"
    "ci": _ci,  # a stats.mean_std_ci dict as "m ± s [lo, hi]"
    "range": _range,  # a {median, min, max} dict or a list as "median (min–max)"
    "sig": lambda v, a: stats.fmt(_num(v), int(a or 3)),  # significant figures
    "x": lambda v, a: f"{_num(v):{a or '.2f'}}x",  # a ratio, "1.33x"
    "str": lambda v, a: str(v),
    "len": lambda v, a: str(len(v)),  # the number of items of a list or dict
}


def format_value(value: Any, spec: str) -> str:
    spec = spec.strip()
    name, _, arg = spec.partition(":")
    if name in FORMATS:
        return FORMATS[name](value, arg.strip())
    if not spec:
        if isinstance(value, dict | list):
            raise LookupFailed(f"the value is a {type(value).__name__}; pick a key or a format")
        return str(value)
    try:
        return format(value, spec)
    except (ValueError, TypeError) as err:
        raise LookupFailed(f"format {spec!r} does not apply to {value!r}: {err}") from None


def summary(values: list[Any]) -> dict[str, float]:
    xs = sorted(_num(v) for v in values)
    if not xs:
        raise LookupFailed("no values")
    n = len(xs)
    mid = xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
    return {"median": mid, "min": xs[0], "max": xs[-1], "n": n}
