"""The logging API of a stage: metrics, series, params, its result file and artifacts, to the
current stage run (:func:`betamcmc.tracking.links.current_link`) or to a run's ``link`` (a
seed's, in its own process). Every call is queued for the background sender
(:mod:`betamcmc.tracking.sender`) and returns at once; untracked, every call is a no-op.
"""

from __future__ import annotations

import errno
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from betamcmc.core.io import flatten, flatten_numbers
from betamcmc.tracking.links import Link, current_link
from betamcmc.tracking.sender import submit_call


def _param_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."


def now_ms() -> int:
    return int(time.time() * 1000)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def send_metrics(link: Link | None, points: Sequence[Sequence[Any]]) -> None:
    """Queue step metrics ``(key, value, timestamp ms, step)`` for a run, 1000 per call; never
    waits on the store (see the module docstring)."""
    if link is None:
        return
    rows = [[str(k), float(v), int(t), int(s)] for k, v, t, s in points if _finite(v)]
    for i in range(0, len(rows), 1000):
        submit_call(link, {"op": "batch", "run": link.run_id, "metrics": rows[i : i + 1000]})


def log_metrics(
    metrics: Mapping[str, float], step: int | None = None, link: Link | None = None
) -> None:
    """Log finite numeric metrics in one batch (non-finite values are skipped, not logged), to
    the current stage run or to ``link``."""
    now = now_ms()
    send_metrics(link or current_link(), [(k, v, now, step or 0) for k, v in metrics.items()])


def log_params(values: Mapping[str, Any], link: Link | None = None) -> None:
    """Log params (100 per call, MLflow's cap) to the current stage run or to ``link``."""
    target = link or current_link()
    if target is None:
        return
    items = [(k, _param_value(v)) for k, v in values.items()]
    for i in range(0, len(items), 100):
        submit_call(
            target, {"op": "batch", "run": target.run_id, "params": dict(items[i : i + 100])}
        )


def log_artifact(
    path: str | os.PathLike[str], artifact_path: str | None = None, link: Link | None = None
) -> None:
    """Attach a file to the current stage run (or ``link``'s)."""
    _log_files("artifact", path, artifact_path, link)


def log_artifacts(
    directory: str | os.PathLike[str], artifact_path: str | None = None, link: Link | None = None
) -> None:
    """Attach every file of a directory to the current stage run (or ``link``'s)."""
    _log_files("artifacts", directory, artifact_path, link)


def _log_files(kind: str, path: Any, artifact_path: str | None, link: Link | None) -> None:
    """Queue an upload; a missing file fails here, in the caller, as MLflow's own call would."""
    target = link or current_link()
    if target is not None:
        where = Path(path).resolve()
        if not where.exists():
            raise FileNotFoundError(errno.ENOENT, "no such file to log to MLflow", str(path))
        submit_call(
            target, {"op": kind, "run": target.run_id, "path": str(where), "dir": artifact_path}
        )


def log_result(
    result: Mapping[str, Any], as_params: Sequence[str] = (), skip: Sequence[str] = ()
) -> None:
    """Log a stage's metrics file to its run under the file's own key paths (one naming rule for
    DVC and MLflow: dots between levels; strings, lists and nulls left out).

    ``as_params``: entries that describe the run rather than measure it (counts and settings
    such as ``workers``, ``samples``) go in as params; ``skip``: entries left out. Each name is
    a dotted key (``per_seed``, ``runs.single-tau1.tau``, its subtree included) or a last key
    part (``tau`` matches ``runs.<any>.tau``)."""

    def matches(name: str, keys: Sequence[str]) -> bool:
        last = name.rsplit(".", 1)[-1]
        return any(name == k or name.startswith(k + ".") or last == k for k in keys)

    numbers = flatten_numbers(result)
    log_metrics({k: v for k, v in numbers.items() if not matches(k, (*as_params, *skip))})
    described = {
        k: v for k, v in flatten(result).items() if matches(k, as_params) and not matches(k, skip)
    }
    log_params(described)


def log_series(name_to_values: Mapping[str, Sequence[float]], steps: Sequence[int]) -> None:
    """Log whole per-step series at once (one batched call per 1000 points, not one per point)."""
    now = now_ms()
    send_metrics(
        current_link(),
        [
            (name, float(v), now, int(s))
            for name, values in name_to_values.items()
            for s, v in zip(steps, values, strict=True)
        ],
    )
