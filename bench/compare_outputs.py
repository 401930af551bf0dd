"""Compare the outputs of two pipeline runs: are the deterministic results bit-identical?

    python bench/compare_outputs.py BEFORE AFTER [--out bench/results/refactor_identity.json]

BEFORE and AFTER are two project directories where `dvc repro` ran (e.g. fresh clones of the
commits before and after a refactoring). Every file under ``metrics/`` and ``reports/`` that a
stage writes (an ``outs`` path in BEFORE's ``dvc.lock``, or a file under one) is compared byte
for byte; the tracked inputs there (``metrics/studies/``, the READMEs) are not outputs and are
skipped. A file that differs is then read, where it is JSON, as flat key paths
and split into what may differ between two runs of the *same* code and what may not:

- wall-clock figures (keys naming time, seconds, rates, staleness, load) differ on every run;
- the asynchronous protocols (``downpour``, ``elastic``: which worker's message the master takes
  first depends on timing) differ run to run in every number, and so do the files that draw or
  summarize them (the page, the plots, the RL items that sample with them).

``identical`` lists the files equal byte for byte; ``timing_only`` the JSON files whose only
differences are wall-clock keys; ``asynchronous`` those expected to vary; ``unexpected`` any
other difference: a refactoring that changes no number leaves it empty. Prints one line per
group and writes the JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from betamcmc.core.io import read_csv_rows

TIMING = re.compile(r"(time|wall|_s$|_s_|_s\.|per_s|seconds|staleness|elapsed|load|duration)")
ASYNC = re.compile(
    r"(downpour|elastic|rl[/_]|sgmcmc_bma|rl_return|summary\.json|index\.md|\.png$|"
    r"reports/sgmcmc|sgmcmc_cyclical_curves)"  # the curves: one grid over all arms, async included
)
ASYNC_KEY = re.compile(r"(downpour|elastic)-|tau_comparisons")  # consistency: async arms, pairs


def flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A JSON value as ``{"a.b.0": leaf}``; a list entry that names its arms (``{"arm": ...,
    "against": ...}``: a paired comparison) is keyed by them instead of its index, so that a
    comparison of asynchronous arms is seen as one."""
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, list):
        items = [(_entry_key(i, value), value) for i, value in enumerate(tree)]
    else:
        return {prefix[:-1]: tree}
    out: dict[str, Any] = {}
    for key, value in items:
        out.update(flat(value, f"{prefix}{key}."))
    return out


def _entry_key(index: int, value: Any) -> str:
    if isinstance(value, dict) and "arm" in value:
        return "_vs_".join(str(value[k]) for k in ("arm", "against", "metric") if k in value)
    return str(index)


def classify(before: Path, after: Path, rel: str) -> str:
    """``identical``, ``timing_only``, ``asynchronous`` or ``unexpected`` for one file."""
    a, b = before / rel, after / rel
    if b.exists() and a.read_bytes() == b.read_bytes():
        return "identical"
    if ASYNC.search(rel) or "/samples/" in rel:
        return "asynchronous"
    if rel.endswith(".json") and b.exists():
        fa, fb = flat(json.loads(a.read_text())), flat(json.loads(b.read_text()))
        keys = {k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k)}
        if keys and all(TIMING.search(k) for k in keys):
            return "timing_only"
        if any(ASYNC_KEY.search(k) for k in keys) and all(
            TIMING.search(k) or ASYNC_KEY.search(k) for k in keys
        ):
            return "asynchronous"
    if rel.endswith(".csv") and b.exists():
        ca, cb = csv_columns(a), csv_columns(b)
        differ = {k for k in ca.keys() | cb.keys() if ca.get(k) != cb.get(k)}
        if differ and all(TIMING.search(k) for k in differ):
            return "timing_only"
    return "unexpected"


def csv_columns(path: Path) -> dict[str, list[str]]:
    """A CSV file as its columns of cells (text)."""
    rows = read_csv_rows(path)
    return {name: [row[name] for row in rows] for name in (rows[0] if rows else {})}


def output_paths(project: Path) -> list[str]:
    """Every ``outs`` path of every stage item in the project's ``dvc.lock``."""
    lock = yaml.safe_load((project / "dvc.lock").read_text(encoding="utf-8"))
    return sorted({out["path"] for item in lock["stages"].values() for out in item.get("outs", [])})


def is_output(rel: str, outs: list[str]) -> bool:
    return any(rel == out or rel.startswith(out.rstrip("/") + "/") for out in outs)


def commit_of(project: Path) -> str | None:
    """The git commit a project directory has checked out (None outside git)."""
    proc = subprocess.run(
        ["git", "-C", str(project), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    return proc.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--out", type=Path, default=Path("bench/results/refactor_identity.json"))
    args = ap.parse_args(argv)
    outs = output_paths(args.before)
    found = sorted(
        str(p.relative_to(args.before))
        for top in ("metrics", "reports")
        for p in (args.before / top).rglob("*")
        if p.is_file()
    )
    files = [rel for rel in found if is_output(rel, outs)]
    groups: dict[str, list[str]] = {
        "identical": [],
        "timing_only": [],
        "asynchronous": [],
        "unexpected": [],
    }
    for rel in files:
        groups[classify(args.before, args.after, rel)].append(rel)
    result = {
        "before": {"path": str(args.before), "commit": commit_of(args.before)},
        "after": {"path": str(args.after), "commit": commit_of(args.after)},
        "files": len(files),
        "inputs_skipped": [rel for rel in found if not is_output(rel, outs)],
        **groups,
    }
    for name, members in groups.items():
        print(f"{name}: {len(members)}" + (f" {members}" if name == "unexpected" else ""))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 1 if groups["unexpected"] else 0


if __name__ == "__main__":
    sys.exit(main())
