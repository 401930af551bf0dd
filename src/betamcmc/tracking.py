"""One MLflow store for the whole project, also under ``dvc exp run --queue``, and no run lost
or held up when the store goes away.

Every stage item opens its run with :func:`stage_run` (names, tags, params: docs/tracking.md)::

    stage = pipeline.stage_item("pretrain", schedule="cyclical")   # from dvc.yaml
    with tracking.stage_run(params, stage) as run:                 # run "pretrain@cyclical"
        tracking.log_result(metrics)                               # "test.kl", "test.mi", ...

Where the store lives (first that applies):

1. the ``MLFLOW_TRACKING_URI`` environment variable (a lab's server: ``http://host:5000``);
2. ``tracking.uri`` in params.yaml (a relative ``sqlite:///x.db`` is resolved against the project root);
3. ``sqlite:///<project root>/mlflow.db``.

The *project root* is the user's repository, found from the working directory. Queued DVC
experiments run in temporary workspaces under ``<repo>/.dvc/tmp/exps/``; a relative store there
would be deleted with the workspace, so :func:`project_root` climbs out of it. Artifacts of a
local store go to ``<project root>/mlartifacts/``; a server keeps them in its own artifact store
(``mlflow server --artifacts-destination``: the client uploads through the server). The SQLite
schema is created under a file lock, so stages started in parallel do not race in its migration.

Outages (docs/tracking.md, "When the store goes away"):

* **At the start** of a stage the store is checked (a server's ``/health``, an SQLite file's
  header and folder) and the run is opened with short HTTP timeouts: a store that is unreachable,
  not SQLite or not writable stops the stage with one line naming it and the cause
  (:class:`TrackingError`, exit 2), before any work. ``BETAMCMC_TRACKING=optional`` runs the
  stage untracked instead, with one warning.
* **During** a stage every logging call is queued and sent, in order, by a background thread
  (one per process and store): training never waits on the store. The first call that fails
  prints one warning for the whole stage (its seed processes included); it and every later call
  are written to a spool file under ``<project root>/mlflow-spool/``.
* **Later** the spooled calls are sent by the next stage that opens a run on the same store, or by
  ``betamcmc tracking replay`` (:func:`replay`). A spool file is locked by its process while it
  lives, so a replay never sends the calls of a run that is still going.

Logging goes through this module only; MLflow's import costs seconds, so the functions import it
themselves (lazy): importing this module is cheap, a stage checks its params first.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import fcntl
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from betamcmc.errors import BetamcmcError, ParamsError
from betamcmc.params import Params
from betamcmc.pipeline import StageItem, dvc_str

# MLflow is imported lazily: it costs ~1-2 s of import time that `params check` should not pay.

_EXPS_MARK = (".dvc", "tmp", "exps")

# mlflow.set_tracking_uri() also exports MLFLOW_TRACKING_URI; remember what *we* exported, so a
# later setup() in the same process (another repo, a test) is not captured by our own leftover.
_exported_uri: str | None = None

MODE_ENV = "BETAMCMC_TRACKING"
MODES = ("required", "optional")
SPOOL_DIR = "mlflow-spool"
# MLflow's client retries an unreachable server 7 times with exponential backoff and waits 120 s
# per request (minutes per call, measured 12 minutes of a stalled run): short, unless the user
# set their own. The calls run on the sender thread, so this bounds only how soon a loss is seen.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    # MLflow prints two link lines (after one more request) per run it ends, seeds included;
    # a stage prints its run's link once, when it opens it (_open_run)
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
PROBE_TIMEOUT_S = 5.0  # a server's /health at the start of a stage
DRAIN_S = 10.0  # at the end of a stage: how long the calls still queued may take to go out
SQLITE_MAGIC = b"SQLite format 3\x00"
HINT = f"fix or start it, or set {MODE_ENV}=optional to run untracked"


class TrackingError(BetamcmcError):
    """The tracking store cannot be used at the start of a stage (unreachable, not SQLite, not
    writable): one line naming the store and the cause, exit 2, before any work is done."""

    exit_code = 2

    def __init__(self, uri: str, cause: str) -> None:
        super().__init__(f"tracking store {uri}: {cause}; {HINT}")
        self.uri, self.cause = uri, cause


# --------------------------------------------------------------------------- where the store is
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


def tracking_mode() -> str:
    """``BETAMCMC_TRACKING``: ``required`` (default; a store that cannot be used stops the stage)
    or ``optional`` (the stage then runs untracked, with one warning)."""
    mode = (os.environ.get(MODE_ENV) or "required").strip().lower()
    if mode not in MODES:
        raise ParamsError(f"{MODE_ENV}: must be 'required' or 'optional' (got {mode!r})")
    return mode


def spool_dir(root: Path | None = None) -> Path:
    """Where the calls a store did not take wait for it: ``<project root>/mlflow-spool/``."""
    return (root or project_root()) / SPOOL_DIR


def _is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def _http_defaults(uri: str) -> None:
    """Short HTTP timeouts and retries for a server (unless the user set MLflow's own)."""
    if _is_http(uri):
        for name, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)


# --------------------------------------------------------------------------- checking the store
def check_store(uri: str) -> None:
    """Fail fast, with the cause in a few words, where MLflow would retry for minutes or print a
    long traceback: a server that does not answer, a file that is not SQLite or cannot be written.
    Raises :class:`TrackingError`."""
    cause = None
    if uri.startswith("sqlite:///"):
        cause = _sqlite_problem(Path(uri[len("sqlite:///") :]))
    elif _is_http(uri):
        cause = _server_problem(uri)
    if cause:
        raise TrackingError(uri, cause)


def _sqlite_problem(path: Path) -> str | None:
    """Why an SQLite store file cannot be used, or None. SQLite writes a journal beside the file,
    so its folder must be writable too (probed by writing, which also sees read-only mounts)."""
    if path.is_dir():
        return "is a folder, not an SQLite file"
    try:
        if path.exists():
            with path.open("rb") as fh:
                head = fh.read(len(SQLITE_MAGIC))
            if head and head != SQLITE_MAGIC:
                return f"not an SQLite database (the file starts with {head[:12]!r})"
            with path.open("ab"):
                pass
    except OSError as err:
        return f"cannot write {path} ({err.strerror or err})"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as err:
        return f"cannot write in {path.parent} ({err.strerror or err})"
    return None


def _server_problem(uri: str) -> str | None:
    """Whether a tracking server answers at all (any HTTP answer counts: a server behind a proxy
    or a login may refuse /health, MLflow's own calls then say why)."""
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT_S):
            return None
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        return f"cannot reach the server ({_short(reason)})"


def _short(reason: object) -> str:
    text = str(reason)
    errno_text = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if errno_text:
        return errno_text.group(1).strip()
    if isinstance(reason, TimeoutError) or "timed out" in text:
        return f"no answer within {PROBE_TIMEOUT_S:.0f} s"
    return text.splitlines()[0][:200] if text else type(reason).__name__


def _cause(err: BaseException) -> str:
    """One line for a failure of MLflow's own calls (their messages run to many lines)."""
    text = str(getattr(err, "message", None) or err)
    if re.search(r"ConnectionError|Connection refused|Max retries exceeded", text):
        return f"cannot reach the server ({_short(text)})"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return (first or type(err).__name__)[:300]


def setup(params: Params | None = None) -> str:
    """Point MLflow at the project store and make sure the experiment exists. Returns its id.

    Checks the store first (:func:`check_store`); store and experiment creation happen under a
    file lock beside the store. Raises :class:`TrackingError` naming the store and the cause."""
    return _connect(params)[1]


def _connect(params: Params | None) -> tuple[str, str]:
    """(uri, experiment id) of the project store, checked and ready."""
    import mlflow  # lazy: see the module docstring (filelock only serves it)
    from filelock import FileLock

    global _exported_uri
    root = project_root()
    uri = tracking_uri(params, root)
    check_store(uri)
    _http_defaults(uri)
    name = params.tracking.experiment if params is not None else "betamcmc"
    mlflow.set_tracking_uri(uri)
    _exported_uri = uri
    lock_path = root / ".mlflow.lock"
    if uri.startswith("sqlite:///"):
        lock_path = Path(uri[len("sqlite:///") :]).with_suffix(".lock")
    try:
        with FileLock(str(lock_path), timeout=120):
            client = mlflow.MlflowClient(uri)
            experiment = client.get_experiment_by_name(name)
            if experiment is not None:
                return uri, experiment.experiment_id
            # a server keeps artifacts in its own store (--artifacts-destination)
            artifacts = None if _is_http(uri) else (root / "mlartifacts").resolve().as_uri()
            return uri, client.create_experiment(name, artifact_location=artifacts)
    except TrackingError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure of the store is one line, not a traceback
        raise TrackingError(uri, _cause(err)) from None


# --------------------------------------------------------------------------- names and tags
def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


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


# --------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class Link:
    """Where the logging calls of one run go. Picklable: a seed's process gets the link of its
    nested run and logs to it. ``scope`` (the stage run's id) and ``stage`` (its name) make the
    stage's processes print one warning between them when the store goes away."""

    uri: str
    run_id: str
    spool: str
    scope: str
    stage: str


@dataclass(frozen=True)
class StageRun:
    """The MLflow run of one stage item; untracked (``run_id`` and ``link`` None) when the store
    could not be used and ``BETAMCMC_TRACKING=optional``."""

    name: str
    tags: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None
    experiment_id: str | None = None
    link: Link | None = None


_ACTIVE: list[StageRun] = []  # the stage runs open in this process, innermost last


@contextlib.contextmanager
def stage_run(
    params: Params, stage: StageItem, identity: Mapping[str, Any] | None = None
) -> Iterator[StageRun]:
    """Open the MLflow run of one stage item (named as DVC names it), tag it, log its params
    (:func:`run_params`), yield it. The run ends FAILED if the body raises, FINISHED otherwise;
    on the way out the calls still queued get :data:`DRAIN_S` seconds, the rest is spooled.

    ``identity``: what else identifies the run beyond its dvc.yaml item (e.g. the protocol of the
    Bayesian head, the corpus of ``prepare``): logged as tags and params under the same names."""
    extra = {k: dvc_str(v) for k, v in (identity or {}).items()}
    run = _open_run(params, stage.name, {**run_tags(params, stage), **extra})
    _ACTIVE.append(run)
    status = "FAILED"
    try:
        log_params({**extra, **run_params(params, stage)})
        yield run
        status = "FINISHED"
    finally:
        _ACTIVE.remove(run)
        if run.link is not None:
            end_run(run.link, status)
            _close_sink(run.link)


def _open_run(params: Params, name: str, tags: dict[str, str]) -> StageRun:
    """Check the store, send what earlier runs spooled for it, create the run: all before the
    stage's work. A store that cannot be used raises, or (optional) leaves the run untracked."""
    mode = tracking_mode()
    try:
        uri, experiment_id = _connect(params)
        _replay_at_start(uri)
        run = _create_run(uri, experiment_id, name, tags, resolve=True)
    except TrackingError as err:
        if mode == "required":
            raise
        _untracked_warning(err, name)
        return StageRun(name, tags)
    link = Link(uri, run.info.run_id, str(spool_dir()), scope=run.info.run_id, stage=name)
    if _is_http(uri):
        where = f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run.info.run_id}"
        print(f"tracking: {name} -> {where}", flush=True)
    return StageRun(name, tags, run.info.run_id, experiment_id, link)


def _create_run(
    uri: str, experiment_id: str, name: str, tags: Mapping[str, str], resolve: bool = False
) -> Any:
    """Create a run now (its id is needed before anything is logged to it). ``resolve``: add
    MLflow's own context tags (user, source), as ``mlflow.start_run`` does."""
    import mlflow  # lazy: see the module docstring
    from mlflow.tracking.context import registry

    all_tags = registry.resolve_tags(dict(tags)) if resolve else dict(tags)
    try:
        return mlflow.MlflowClient(uri).create_run(experiment_id, run_name=name, tags=all_tags)
    except Exception as err:  # noqa: BLE001 - any failure of the store is one line
        raise TrackingError(uri, _cause(err)) from None


def _untracked_warning(err: TrackingError, name: str) -> None:
    print(f"warning: tracking store {err.uri}: {err.cause}; {MODE_ENV}=optional, so {name} "
          "runs untracked", file=sys.stderr, flush=True)  # fmt: skip


def start_child(parent: StageRun, name: str, tags: Mapping[str, str]) -> Link | None:
    """Open a run nested under the stage run (a seed's, whose own process logs to it), at the
    start of the stage like the stage run itself; None when the stage runs untracked."""
    if parent.link is None or parent.experiment_id is None:
        return None
    nested = {"mlflow.parentRunId": parent.link.run_id, **tags}
    try:
        run = _create_run(parent.link.uri, parent.experiment_id, name, nested)
    except TrackingError as err:
        if tracking_mode() == "required":
            raise
        _untracked_warning(err, name)
        return None
    return replace(parent.link, run_id=run.info.run_id)


def current_link() -> Link | None:
    """The link of the innermost stage run open in this process (None: untracked or none)."""
    return _ACTIVE[-1].link if _ACTIVE else None


# --------------------------------------------------------------------------- logging
def _param_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."


def _now_ms() -> int:
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
        _submit(link, {"op": "batch", "run": link.run_id, "metrics": rows[i : i + 1000]})


def log_metrics(
    metrics: Mapping[str, float], step: int | None = None, link: Link | None = None
) -> None:
    """Log finite numeric metrics in one batch (non-finite values are skipped, not logged), to
    the current stage run or to ``link``."""
    now = _now_ms()
    send_metrics(link or current_link(), [(k, v, now, step or 0) for k, v in metrics.items()])


def log_params(values: Mapping[str, Any], link: Link | None = None) -> None:
    """Log params (100 per call, MLflow's cap) to the current stage run or to ``link``."""
    target = link or current_link()
    if target is None:
        return
    items = [(k, _param_value(v)) for k, v in values.items()]
    for i in range(0, len(items), 100):
        _submit(target, {"op": "batch", "run": target.run_id, "params": dict(items[i : i + 100])})


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
        _submit(
            target, {"op": kind, "run": target.run_id, "path": str(where), "dir": artifact_path}
        )


def end_run(link: Link | None, status: str = "FINISHED") -> None:
    """Mark a run ended (``FINISHED`` / ``FAILED``), with the time it really ended."""
    if link is not None:
        _submit(link, {"op": "end", "run": link.run_id, "status": status, "time": _now_ms()})


def flush_link(link: Link | None) -> None:
    """Wait (at most :data:`DRAIN_S`) for this process's queued calls to ``link``'s store: a
    seed's process calls it before it exits, so nothing queued is lost with it."""
    sink = _SINKS.get(link.uri) if link is not None else None
    if sink is not None:
        sink.drain()


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
    log_params(described)


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
    now = _now_ms()
    send_metrics(
        current_link(),
        [
            (name, float(v), now, int(s))
            for name, values in name_to_values.items()
            for s, v in zip(steps, values, strict=True)
        ],
    )


# --------------------------------------------------------------------------- sending, spooling
def _apply(client: Any, op: Mapping[str, Any], base: Path | None = None) -> None:
    """Carry out one queued or spooled call (``base``: the folder spooled artifact copies are in)."""
    from mlflow.entities import Metric, Param  # lazy: see the module docstring

    kind, run = op["op"], op["run"]
    if kind == "batch":
        metrics = [Metric(k, v, t, s) for k, v, t, s in op.get("metrics", [])]
        params = [Param(k, v) for k, v in op.get("params", {}).items()]
        client.log_batch(run, metrics=metrics, params=params)
    elif kind in ("artifact", "artifacts"):
        path = Path(op["path"]) if base is None else base / op["path"]
        log = client.log_artifact if kind == "artifact" else client.log_artifacts
        log(run, str(path), op.get("dir"))
    elif kind == "end":
        client.set_terminated(run, op["status"], op["time"])
    else:
        raise ValueError(f"unknown tracking call {kind!r}")


class _SpoolFile:
    """The calls a store did not take, one JSON line each after a header line naming the store;
    artifacts copied beside it (``<name>.files/``: the outputs may be replaced before the store
    is back). Locked (``flock``) while its process lives, so no replay takes it too early."""

    def __init__(self, folder: Path, uri: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        now = time.time()
        stem = f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}.{int(now * 1000) % 1000:03d}"
        stem += f"-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.path = folder / f"{stem}.jsonl"
        self.files = folder / f"{stem}.files"
        self._lock = threading.Lock()
        self._copies = 0
        self._fh = self.path.open("a", encoding="utf-8")
        fcntl.flock(self._fh, fcntl.LOCK_EX)
        self._line({"uri": uri, "pid": os.getpid(), "created": now})

    def _line(self, record: Mapping[str, Any]) -> None:
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()  # a process that dies keeps every line written so far

    def write(self, op: Mapping[str, Any]) -> None:
        with self._lock:
            if op["op"] in ("artifact", "artifacts"):
                op = self._copy(op)
            self._line(op)

    def _copy(self, op: Mapping[str, Any]) -> dict[str, Any]:
        self._copies += 1
        source = Path(op["path"])
        dest = self.files / str(self._copies) / source.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if op["op"] == "artifacts":
            shutil.copytree(source, dest)
        else:
            shutil.copy2(source, dest)
        return {**op, "path": str(dest.relative_to(self.path.parent))}

    def close(self) -> None:
        with self._lock:
            self._fh.close()  # releases the lock: a replay may take it now


class _Sink:
    """One process's calls to one store, sent in order by a background thread, so a slow or dead
    store never holds up the caller. The first call that fails marks the store lost (one warning
    per stage); it and every later call go to a :class:`_SpoolFile`."""

    def __init__(self, link: Link) -> None:
        self.uri, self.spool = link.uri, Path(link.spool)
        self.scope, self.stage = link.scope, link.stage
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._inflight: dict[str, Any] | None = None
        self._cond = threading.Condition()
        self._lost: str | None = None
        self._abandoned = self._stopping = False
        self._file: _SpoolFile | None = None
        self._client: Any = None
        _http_defaults(self.uri)
        self._thread = threading.Thread(target=self._loop, name="betamcmc-tracking", daemon=True)
        self._thread.start()

    def submit(self, op: dict[str, Any]) -> None:
        with self._cond:
            if not self._abandoned:
                self._queue.append(op)
                self._cond.notify_all()
                return
        self._spool(op)  # the thread is stuck on a store that does not answer

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._stopping)
                if self._abandoned or not self._queue:
                    return
                op = self._inflight = self._queue.popleft()
            self._handle(op)
            with self._cond:
                if self._abandoned:
                    return
                self._inflight = None
                self._cond.notify_all()

    def _handle(self, op: dict[str, Any]) -> None:
        if "path" in op and not Path(op["path"]).exists():  # removed since: not the store's fault
            _once(f"gone:{op['path']}", f"warning: {op['path']} was removed before MLflow got it")
            return
        if self._lost is None:
            try:
                if self._client is None:
                    import mlflow  # lazy: see the module docstring

                    self._client = mlflow.MlflowClient(self.uri)
                _apply(self._client, op)
                return
            except Exception as err:  # noqa: BLE001 - whatever the store says, the run goes on
                if self._abandoned:
                    return  # too late: drain() spooled this call when it gave up waiting
                self._mark_lost(_cause(err))
        self._spool(op)

    def _mark_lost(self, cause: str) -> None:
        if self._lost is None:
            self._lost = cause
            _announce_loss(self, cause)

    def _spool(self, op: dict[str, Any]) -> None:
        try:
            with self._cond:
                if self._file is None:
                    self._file = _SpoolFile(self.spool, self.uri)
            self._file.write(op)
        except OSError as err:  # nowhere to keep it: say so once, the run goes on
            _once(f"spool:{self.scope}", f"warning: cannot spool tracking calls to {self.spool}:"
                  f" {err.strerror or err}; they are lost")  # fmt: skip

    def drain(self, timeout: float | None = None) -> None:
        """Wait until every queued call is sent or spooled; after ``timeout`` s (default
        :data:`DRAIN_S`: a store that takes a call and never answers) spool the rest and stop
        waiting on the store."""
        timeout = DRAIN_S if timeout is None else timeout
        with self._cond:
            if self._cond.wait_for(self._idle, timeout) or self._abandoned:
                return
            self._abandoned = True
            left = [op for op in (self._inflight, *self._queue) if op is not None]
            self._queue.clear()
        self._mark_lost(f"no answer within {timeout:.0f} s")
        for op in left:
            self._spool(op)

    def _idle(self) -> bool:
        return not self._queue and self._inflight is None

    def close(self) -> None:
        self.drain()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=1.0)
        if self._file is not None:
            self._file.close()


_SINKS: dict[str, _Sink] = {}
_SINKS_LOCK = threading.Lock()
_SAID: set[str] = set()


def _submit(link: Link, op: dict[str, Any]) -> None:
    with _SINKS_LOCK:
        sink = _SINKS.get(link.uri)
        if sink is None:
            sink = _SINKS[link.uri] = _Sink(link)
    sink.submit(op)


def _close_sink(link: Link) -> None:
    """End of a stage run: its calls go out (or to the spool), the thread stops, the spool file
    is released for replay, and the stage's one-warning marker is removed."""
    with _SINKS_LOCK:
        sink = _SINKS.pop(link.uri, None)
    if sink is not None:
        sink.close()
    with contextlib.suppress(OSError):
        (Path(link.spool) / f"{link.scope}.lost").unlink()


def _once(key: str, message: str) -> None:
    if key not in _SAID:
        _SAID.add(key)
        print(message, file=sys.stderr, flush=True)


def _announce_loss(sink: _Sink, cause: str) -> None:
    """One warning per stage, whichever of its processes (the stage, its seeds) sees the loss
    first: a marker file named after the stage run decides."""
    try:
        sink.spool.mkdir(parents=True, exist_ok=True)
        os.close(os.open(sink.spool / f"{sink.scope}.lost", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    except OSError:
        pass  # no marker: this process warns anyway
    _once(f"lost:{sink.scope}", f"warning: tracking store {sink.uri} lost during {sink.stage} "
          f"({cause}); the stage goes on and keeps what it logs in {sink.spool}/, sent by the "
          "next stage once the store answers, or by `betamcmc tracking replay`")  # fmt: skip


# --------------------------------------------------------------------------- replay
@dataclass(frozen=True)
class Replayed:
    """What one spool file's replay did: ``sent`` calls went to ``uri``, ``left`` stay spooled."""

    file: str
    uri: str
    sent: int
    left: int
    cause: str | None = None

    def line(self) -> str:
        if not self.left:
            return f"tracking: sent {self.sent} spooled call(s) to {self.uri} ({self.file})"
        return (f"tracking: {self.left} spooled call(s) for {self.uri} kept in {self.file} "
                f"({self.cause})")  # fmt: skip


def replay(uri: str | None = None, root: Path | None = None) -> list[Replayed]:
    """Send the spooled calls (:data:`SPOOL_DIR`) to their stores, oldest first; only ``uri``'s
    if given. Files still locked by a live process are left alone; what fails stays spooled."""
    folder = spool_dir(root)
    if not folder.is_dir():
        return []
    done = []
    for path in sorted(folder.glob("*.jsonl")):
        outcome = _replay_file(path, uri)
        if outcome is not None:
            done.append(outcome)
    return done


def _replay_at_start(uri: str) -> None:
    """A stage that opens a run on a store that answers first sends what earlier runs spooled
    (never fails the stage: what cannot be sent stays spooled)."""
    try:
        outcomes = replay(uri)
    except OSError as err:
        outcomes = []
        print(f"warning: tracking spool {spool_dir()}: {err.strerror or err}", file=sys.stderr)
    for outcome in outcomes:
        print(outcome.line(), file=sys.stdout if not outcome.left else sys.stderr, flush=True)


def _replay_file(path: Path, only_uri: str | None) -> Replayed | None:
    try:
        fh = path.open("r+", encoding="utf-8")
    except FileNotFoundError:
        return None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # its process is still running
        if not _same_file(path, fh):
            return None  # replayed and removed by another process meanwhile
        header, ops = _read_spool(fh)
        if header is None or (only_uri is not None and header.get("uri") != only_uri):
            return None
        sent, cause = _send_all(header["uri"], ops, path.parent)
        if sent == len(ops):
            path.unlink()
            shutil.rmtree(path.with_suffix(".files"), ignore_errors=True)
        elif sent:
            _rewrite(path, header, ops[sent:])
        return Replayed(path.name, header["uri"], sent, len(ops) - sent, cause)


def _same_file(path: Path, fh: Any) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fh.fileno()).st_ino
    except FileNotFoundError:
        return False


def _read_spool(fh: Any) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Header and calls of a spool file; a line cut short by a killed process is skipped."""
    records = []
    for line in fh.read().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            records.append(json.loads(line))
    if not records or "uri" not in records[0]:
        return None, []
    return records[0], records[1:]


def _send_all(uri: str, ops: list[dict[str, Any]], base: Path) -> tuple[int, str | None]:
    """Send ``ops`` in order; how many went out, and why the rest did not."""
    import mlflow  # lazy: see the module docstring

    try:
        check_store(uri)
    except TrackingError as err:
        return 0, err.cause
    _http_defaults(uri)
    client = mlflow.MlflowClient(uri)
    for i, op in enumerate(ops):
        try:
            _apply(client, op, base)
        except Exception as err:  # noqa: BLE001 - kept for the next replay, not a traceback
            return i, _cause(err)
    return len(ops), None


def _rewrite(path: Path, header: Mapping[str, Any], ops: Sequence[Mapping[str, Any]]) -> None:
    """Keep only the calls not sent (atomic replace; the artifact copies stay beside it)."""
    temp = path.with_name(path.name + ".tmp")
    temp.write_text("".join(json.dumps(r) + "\n" for r in (header, *ops)), encoding="utf-8")
    os.replace(temp, path)
