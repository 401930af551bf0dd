"""One MLflow store for the whole project, also under ``dvc exp run --queue``.

Every stage item opens its run with :func:`stage_run` (names, tags, params: docs/tracking.md)::

    stage = pipeline.stage_item("pretrain", schedule="cyclical")   # from dvc.yaml
    with tracking.stage_run(params, stage) as run:                 # run "pretrain@cyclical"
        tracking.log_result(metrics)                               # "test.kl", "test.mi", ...

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

MLflow's import costs seconds: the functions import it themselves (lazy), so importing this
module is cheap and a stage checks its params, and an untracked run finishes, without it.
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from betamcmc.params import Params
from betamcmc.pipeline import StageItem, dvc_str

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
    import mlflow  # lazy: see the module docstring (filelock only serves it)
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


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks after boot) of a process, from /proc (Linux)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces
    return int(fields[1]), int(fields[19])


def _dvc_ancestor() -> tuple[int, float] | None:
    """(pid, start time) of the ``dvc`` process this stage runs under, if any (Linux /proc)."""
    pid = os.getpid()
    for _ in range(12):
        stat = _proc_stat(pid)
        if stat is None or stat[0] <= 1:
            return None
        pid = stat[0]
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            return None
        if any(Path(a).name == "dvc" for a in argv[:2]) or argv[1:3] == ["-m", "dvc"]:
            ticks = _proc_stat(pid)
            boot = next(
                float(line.split()[1])
                for line in Path("/proc/stat").read_text().splitlines()
                if line.startswith("btime")
            )
            started = boot + (ticks[1] if ticks else 0) / os.sysconf("SC_CLK_TCK")
            return pid, started
    return None


def pipeline_run() -> str:
    """One id shared by every stage run of one ``dvc exp run`` (its experiment name) or one
    ``dvc repro`` (``repro-<start time>-<pid>`` of the dvc process); a stage script run by hand
    gets ``manual-<time>-<pid>``. Filter on it in the MLflow UI: ``tags.pipeline_run = '...'``."""
    if os.environ.get("DVC_EXP_NAME"):
        return os.environ["DVC_EXP_NAME"]
    found = _dvc_ancestor()
    if found is not None:
        pid, started = found
        return f"repro-{time.strftime('%Y%m%d-%H%M%S', time.localtime(started))}-{pid}"
    return f"manual-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def run_tags(params: Params, stage: StageItem) -> dict[str, str]:
    """Tags every stage run carries: stage, item and its identity (``schedule``, ``protocol``,
    ``workers``, ``method``, ``bow``), pipeline run, git commit, DVC experiment, params hash."""
    tags = {
        "stage": stage.stage,
        "pipeline_run": pipeline_run(),
        "params_hash": params.digest(stage.params),
        "project_root": str(project_root()),
        **{dim: dvc_str(value) for dim, value in stage.identity.items()},
    }
    if stage.key is not None:
        tags["item"] = stage.key
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


def run_params(params: Params, stage: StageItem) -> dict[str, Any]:
    """The params a stage depends on, flattened ``section.key``; an entry that names the item
    (``pretrain.schedules.<schedule>``) is logged under its dimension (``schedule.cycles``), so
    columns line up across items; the identity itself too (``schedule``, ``workers``)."""
    out: dict[str, Any] = {dim: dvc_str(value) for dim, value in stage.identity.items()}
    for key in stage.params:
        flat = params.flat([key])
        if key in stage.item_params:
            dim = stage.item_params[key]
            flat = {dim + name[len(key) :]: value for name, value in flat.items()}
        out.update(flat)
    return out


@contextlib.contextmanager
def stage_run(
    params: Params, stage: StageItem, identity: Mapping[str, Any] | None = None
) -> Iterator[Any]:
    """Open the MLflow run of one stage item (named as DVC names it), tag it, log its params
    (:func:`run_params`), yield the run. The run is marked FAILED if the body raises.

    ``identity``: what else identifies the run beyond its dvc.yaml item (e.g. the protocol of the
    Bayesian head, the corpus of ``prepare``): logged as tags and params under the same names."""
    import mlflow  # lazy: see the module docstring

    setup(params)
    extra = {k: dvc_str(v) for k, v in (identity or {}).items()}
    all_tags = {**run_tags(params, stage), **extra}
    with mlflow.start_run(run_name=stage.name, tags=all_tags) as run:
        items = list({**extra, **run_params(params, stage)}.items())
        for i in range(0, len(items), 100):  # MLflow caps a batch at 100 params
            mlflow.log_params({k: _param_value(v) for k, v in items[i : i + 100]})
        yield run


def _param_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log finite numeric metrics in one batch (non-finite values are skipped, not logged)."""
    import mlflow  # lazy: see the module docstring

    clean = {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }
    if clean:
        mlflow.log_metrics(clean, step=step)


def log_artifact(path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    """Attach a file to the active run."""
    import mlflow  # lazy: see the module docstring

    mlflow.log_artifact(str(path), artifact_path=artifact_path)


def log_artifacts(directory: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    """Attach every file of a directory to the active run."""
    import mlflow  # lazy: see the module docstring

    mlflow.log_artifacts(str(directory), artifact_path=artifact_path)


def flatten_numbers(tree: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers of a nested metrics mapping under dotted names (``test.kl``,
    ``fractions.10pct.vae.mean``): strings, booleans, lists and nulls are left out."""
    out: dict[str, float] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_numbers(value, name + "."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def log_result(
    result: Mapping[str, Any], as_params: Sequence[str] = (), skip: Sequence[str] = ()
) -> None:
    """Log a stage's metrics file to its run under the file's own key paths (one naming rule for
    DVC and MLflow: dots between levels; strings, lists and nulls left out).

    ``as_params``: entries that describe the run rather than measure it (counts and settings
    such as ``workers``, ``samples``) go in as params; ``skip``: entries left out. Each name is
    a dotted key (``per_seed``, ``runs.single-tau1.tau``, its subtree included) or a last key
    part (``tau`` matches ``runs.<any>.tau``)."""
    import mlflow  # lazy: see the module docstring

    def matches(name: str, keys: Sequence[str]) -> bool:
        last = name.rsplit(".", 1)[-1]
        return any(name == k or name.startswith(k + ".") or last == k for k in keys)

    numbers = flatten_numbers(result)
    log_metrics({k: v for k, v in numbers.items() if not matches(k, (*as_params, *skip))})
    described = {
        k: v
        for k, v in _flatten_all(result).items()
        if matches(k, as_params) and not matches(k, skip)
    }
    items = list(described.items())
    for i in range(0, len(items), 100):  # MLflow caps a batch at 100 params
        mlflow.log_params({k: _param_value(v) for k, v in items[i : i + 100]})


def _flatten_all(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_flatten_all(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def log_series(name_to_values: Mapping[str, Sequence[float]], steps: Sequence[int]) -> None:
    """Log whole per-step series at once (one batched call per 1000 points, not one per point)."""
    import mlflow  # lazy: see the module docstring
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
