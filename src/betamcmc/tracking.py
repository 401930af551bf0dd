"""One MLflow store for the whole project, also under ``dvc exp run --queue``.

Every stage opens its run with :func:`stage_run`::

    with tracking.stage_run(params, stage="pretrain", item="cyclical",
                            keys=["seed", "data", "pretrain"]) as run:
        tracking.log_metrics({"loss": 1.2}, step=10)

Where the store lives (first that applies):

1. the ``MLFLOW_TRACKING_URI`` environment variable;
2. ``tracking.uri`` in params.yaml (a relative ``sqlite:///x.db`` is resolved against the project root);
3. ``sqlite:///<project root>/mlflow.db``.

The *project root* is the user's repository, found from the working directory. Queued DVC
experiments run in temporary workspaces under ``<repo>/.dvc/tmp/exps/``; a relative store there
would be deleted with the workspace, so :func:`project_root` climbs out of it.

Artifacts go to ``<project root>/mlartifacts/`` (set when the experiment is created). The SQLite
schema is created under a file lock, so stages started in parallel (``dvc queue start -j 2``)
do not race in MLflow's schema migration.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from betamcmc.params import Params

# MLflow is imported lazily: it costs ~1-2 s of import time that `params check` should not pay.

_EXPS_MARK = (".dvc", "tmp", "exps")

# mlflow.set_tracking_uri() also exports MLFLOW_TRACKING_URI; remember what *we* exported, so a
# later setup() in the same process (another repo, a test) is not captured by our own leftover.
_exported_uri: str | None = None


def project_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The user's repository root: the nearest ancestor with ``dvc.yaml`` or ``.dvc``,
    lifted out of a DVC temporary experiment workspace (``<repo>/.dvc/tmp/exps/...``)."""
    here = Path(start or os.getcwd()).resolve()
    parts = here.parts
    for i in range(len(parts) - len(_EXPS_MARK) + 1):
        if parts[i : i + len(_EXPS_MARK)] == _EXPS_MARK:
            return Path(*parts[:i])
    for candidate in (here, *here.parents):
        if (candidate / "dvc.yaml").exists() or (candidate / ".dvc").is_dir():
            return candidate
    return here


def tracking_uri(params: Params | None = None, root: Path | None = None) -> str:
    """Resolve the tracking URI (env var > params > default SQLite file at the project root)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env and env != _exported_uri:
        return env
    root = root or project_root()
    configured = params.tracking.uri if params is not None else None
    if configured:
        prefix = "sqlite:///"
        if configured.startswith(prefix) and not configured[len(prefix) :].startswith("/"):
            return prefix + str((root / configured[len(prefix) :]).resolve())
        return configured
    return f"sqlite:///{root / 'mlflow.db'}"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def setup(params: Params | None = None) -> str:
    """Point MLflow at the project store and make sure the experiment exists. Returns its id.

    Store creation and experiment creation happen under a file lock beside the store.
    """
    import mlflow
    from filelock import FileLock

    global _exported_uri
    root = project_root()
    uri = tracking_uri(params, root)
    name = params.tracking.experiment if params is not None else "betamcmc"
    mlflow.set_tracking_uri(uri)
    _exported_uri = uri
    lock_path = root / ".mlflow.lock"
    if uri.startswith("sqlite:///"):
        lock_path = Path(uri[len("sqlite:///") :]).with_suffix(".lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_path), timeout=120):
        client = mlflow.MlflowClient(uri)
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            artifacts = (root / "mlartifacts").resolve().as_uri()
            experiment_id = client.create_experiment(name, artifact_location=artifacts)
        else:
            experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def run_tags(params: Params, stage: str, item: str | None, keys: Sequence[str]) -> dict[str, str]:
    """Tags every stage run carries: git commit, DVC experiment, stage, item, params hash."""
    tags = {
        "stage": stage,
        "params_hash": params.digest(list(keys)),
        "project_root": str(project_root()),
    }
    if item is not None:
        tags["item"] = item
    commit = _git("rev-parse", "HEAD")
    if commit:
        tags["git_commit"] = commit
    for env, tag in (
        ("DVC_EXP_NAME", "dvc_exp_name"),
        ("DVC_EXP_BASELINE_REV", "dvc_exp_baseline"),
    ):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    return tags


@contextlib.contextmanager
def stage_run(
    params: Params,
    stage: str,
    item: str | None = None,
    keys: Sequence[str] = (),
    tags: Mapping[str, str] | None = None,
) -> Iterator[Any]:
    """Open the MLflow run of one stage (item), log its params flattened, yield the run.

    ``keys`` are the params key paths the stage depends on (the same list as its ``params:``
    in dvc.yaml); they are logged as ``section.key`` params and hashed into ``params_hash``.
    The run is marked FAILED if the body raises.
    """
    import mlflow

    setup(params)
    all_tags = run_tags(params, stage, item, keys)
    all_tags.update(tags or {})
    name = f"{stage}@{item}" if item is not None else stage
    with mlflow.start_run(run_name=name, tags=all_tags) as run:
        flat = params.flat(list(keys) or None)
        items = list(flat.items())
        for i in range(0, len(items), 100):  # MLflow caps a batch at 100 params
            mlflow.log_params({k: _param_value(v) for k, v in items[i : i + 100]})
        yield run


def _param_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log finite numeric metrics in one batch (non-finite values are skipped, not logged)."""
    import math

    import mlflow

    clean = {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }
    if clean:
        mlflow.log_metrics(clean, step=step)


def log_series(name_to_values: Mapping[str, Sequence[float]], steps: Sequence[int]) -> None:
    """Log whole per-step series at once (one batched call per 1000 points, not one per point)."""
    import math
    import time

    import mlflow
    from mlflow.entities import Metric

    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("log_series needs an active MLflow run")
    now = int(time.time() * 1000)
    batch = [
        Metric(key=name, value=float(v), timestamp=now, step=int(s))
        for name, values in name_to_values.items()
        for s, v in zip(steps, values, strict=True)
        if math.isfinite(float(v))
    ]
    client = mlflow.MlflowClient()
    for i in range(0, len(batch), 1000):
        client.log_batch(run.info.run_id, metrics=batch[i : i + 1000])
