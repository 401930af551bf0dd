"""Where the project's MLflow store lives, and whether it can be used.

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

At the start of a stage the store is checked (a server's ``/health``, an SQLite file's header and
folder): a store that is unreachable, not SQLite or not writable is one line naming it and the
cause (:class:`TrackingError`, exit 2), before any work.
"""

from __future__ import annotations

import os
import re
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from betamcmc.core.errors import BetamcmcError, ParamsError

if TYPE_CHECKING:
    from betamcmc.params import Params


_EXPS_MARK = (".dvc", "tmp", "exps")

# mlflow.set_tracking_uri() also exports MLFLOW_TRACKING_URI; remember what *we* exported, so a
# later setup() in the same process (another repo, a test) is not captured by our own leftover.
# Only a change counts: a user's MLFLOW_TRACKING_URI that we connected to stays the user's, so
# every later stage of the process still logs there.
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
    # a stage prints its run's link once, when it opens it (runs._open_run)
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
PROBE_TIMEOUT_S = 5.0  # a server's /health at the start of a stage
SQLITE_MAGIC = b"SQLite format 3\x00"
HINT = f"fix or start it, or set {MODE_ENV}=optional to run untracked"


class TrackingError(BetamcmcError):
    """The tracking store cannot be used at the start of a stage (unreachable, not SQLite, not
    writable): one line naming the store and the cause, exit 2, before any work is done."""

    exit_code = 2

    def __init__(self, uri: str, cause: str) -> None:
        super().__init__(f"tracking store {uri}: {cause}; {HINT}")
        self.uri, self.cause = uri, cause


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


def is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def set_http_defaults(uri: str) -> None:
    """Short HTTP timeouts and retries for a server (unless the user set MLflow's own)."""
    if is_http(uri):
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
    elif is_http(uri):
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


def failure_line(err: BaseException) -> str:
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
    return connect(params)[1]


def store_client(uri: str) -> Any:
    """An ``MlflowClient`` on the store ``uri``, to read runs back (benchmarks, checks); the
    stages log through this package's functions, never through a client of their own."""
    import mlflow  # lazy: MLflow's import costs seconds

    return mlflow.MlflowClient(uri)


def connect(params: Params | None) -> tuple[str, str]:
    """(uri, experiment id) of the project store, checked and ready."""
    import mlflow  # lazy: MLflow's import costs seconds (filelock only serves it)
    from filelock import FileLock

    global _exported_uri
    root = project_root()
    uri = tracking_uri(params, root)
    check_store(uri)
    set_http_defaults(uri)
    name = params.tracking.experiment if params is not None else "betamcmc"
    exported_before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    if exported_before != uri:  # the user's own MLFLOW_TRACKING_URI is never taken for ours
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
            artifacts = None if is_http(uri) else (root / "mlartifacts").resolve().as_uri()
            return uri, client.create_experiment(name, artifact_location=artifacts)
    except TrackingError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure of the store is one line, not a traceback
        raise TrackingError(uri, failure_line(err)) from None
