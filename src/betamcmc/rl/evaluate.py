"""Learning curves: per-seed snapshot evaluations, their mean +- std over seeds, solve times.

A run's snapshots are grouped by *level*: level ``k`` is chain step ``k * thinning`` (downpour: the
master's chain; elastic: each worker's chain, the W policies of a level averaged, levels not every
chain reached left out), level 0 the initial policy. A level's x-values are the environment steps all workers had consumed and the
wall-clock seconds since sampling started when its snapshot(s) reached the master; its y-values
are the mean return over ``eval_episodes`` evaluation episodes and the policy's mean entropy over
the states visited. Curves of several seeds are aligned by level (same budget schedule).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from betamcmc.core.errors import InputError
from betamcmc.core.io import csv_text, read_csv_rows

COLUMNS = (
    "level",
    "seeds",
    "env_steps",
    "wall_s",
    "return_mean",
    "return_std",
    "entropy_mean",
    "entropy_std",
)


@dataclass
class SeedCurve:
    seed: int
    levels: list[int]
    env_steps: list[float]
    wall_s: list[float]
    returns: list[float]
    entropy: list[float]

    @classmethod
    def from_levels(
        cls, seed: int, levels: dict[int, list[tuple[float, float, float, float]]], chains: int = 1
    ) -> SeedCurve:
        """``levels``: level -> [(env_steps, wall_s, return, entropy), one per chain].

        Level 0 (the initial policy, one entry) and every level all ``chains`` reached; an elastic
        run can end with a level only the faster chains reached, and averaging fewer chains there
        would put that level's x-values before the previous level's (the slower chain's steps
        and seconds drop out of the mean). Such a tail stays in the run's snapshot records.
        """
        keys = [k for k in sorted(levels) if k == 0 or len(levels[k]) == chains]
        cols = [np.mean(np.asarray(levels[k], dtype=float), axis=0) for k in keys]
        return cls(
            seed,
            keys,
            [float(c[0]) for c in cols],
            [float(c[1]) for c in cols],
            [float(c[2]) for c in cols],
            [float(c[3]) for c in cols],
        )

    def mean_return(self) -> float:
        """Mean return over the snapshots after the initial one (area under the curve / length)."""
        later = self.returns[1:] or self.returns
        return float(np.mean(later))


def steps_to_threshold(curve: SeedCurve, threshold: float | None) -> float | None:
    """Environment steps at the first snapshot whose mean return reaches ``threshold``."""
    if threshold is None:
        return None
    for steps, ret in zip(curve.env_steps, curve.returns, strict=True):
        if ret >= threshold:
            return steps
    return None


@dataclass
class CurveTable:
    rows: list[dict[str, float]]

    def to_csv(self) -> str:
        """The ``<item>_curve.csv`` text: :data:`COLUMNS`, cells by :func:`betamcmc.core.io.csv_cell`."""
        return csv_text(COLUMNS, self.rows)


def _std(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def aggregate_curves(curves: list[SeedCurve]) -> CurveTable:
    """Mean and std over seeds at every level that every seed reached (std 0 for one seed).

    Elastic runs can end with a level only some seeds reached (the faster worker's chain takes the
    last snapshots); such a tail would mix seeds and is left out of the curve (it stays in each
    seed's record in ``run.json``).
    """
    levels = sorted(set.intersection(*(set(c.levels) for c in curves)))
    rows = []
    for level in levels:
        at = [(c, c.levels.index(level)) for c in curves if level in c.levels]
        rets = [c.returns[i] for c, i in at]
        ents = [c.entropy[i] for c, i in at]
        rows.append(
            {
                "level": level,
                "seeds": len(at),
                "env_steps": float(np.mean([c.env_steps[i] for c, i in at])),
                "wall_s": float(np.mean([c.wall_s[i] for c, i in at])),
                "return_mean": float(np.mean(rets)),
                "return_std": _std(rets),
                "entropy_mean": float(np.mean(ents)),
                "entropy_std": _std(ents),
            }
        )
    return CurveTable(rows)


def read_curve(path: str | Path) -> dict[str, list[float]]:
    """Read a ``<item>_curve.csv`` back into columns."""
    path = Path(path)
    try:
        rows = read_csv_rows(path)
    except FileNotFoundError:
        raise InputError("learning-curve CSV not found (run the rl stage first)", path) from None
    if not rows or set(COLUMNS) - set(rows[0]):  # the stage always writes level 0
        raise InputError(f"not a learning-curve CSV (columns {list(COLUMNS)})", path)
    try:
        return {k: [float(r[k]) for r in rows] for k in COLUMNS}
    except (TypeError, ValueError) as err:
        raise InputError(f"learning-curve CSV has a non-numeric value ({err})", path) from None
