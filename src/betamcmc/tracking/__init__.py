"""One MLflow store for the whole project, also under ``dvc exp run --queue``, and no run lost
or held up when the store goes away.

Every stage item opens its run with :func:`stage_run` (names, tags, params: docs/tracking.md)::

    stage = pipeline.stage_item("pretrain", schedule="cyclical")   # from dvc.yaml
    with tracking.stage_run(params, stage) as run:                 # run "pretrain@cyclical"
        tracking.log_result(metrics)                               # "test.kl", "test.mi", ...

The package, one module per job (read in this order):

* :mod:`~betamcmc.tracking.store`: where the store lives (``MLFLOW_TRACKING_URI``, then
  ``tracking.uri`` in params.yaml, then ``sqlite:///<project root>/mlflow.db``), the project
  root (lifted out of DVC's temporary experiment workspaces), the store check at the start of a
  stage and the experiment's creation under a file lock;
* :mod:`~betamcmc.tracking.dvcproc`: the ``dvc`` process a stage runs under (/proc), which names
  the pipeline run;
* :mod:`~betamcmc.tracking.links`: where a run's calls go, and the stage runs open here;
* :mod:`~betamcmc.tracking.runs`: a stage item's run (name, tags, params), its seeds' runs, its end;
* :mod:`~betamcmc.tracking.log`: the logging API (metrics, series, params, result, artifacts);
* :mod:`~betamcmc.tracking.sender`: the background thread that sends the calls, and the spool;
* :mod:`~betamcmc.tracking.replay`: sending the spooled calls later.

Every stage runs every module here, so dvc.yaml lists the folder as one dependency; ``betamcmc
ui`` (:mod:`betamcmc.cli.ui`) reads the store through :func:`store_client`.

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

This package is the only place that imports ``mlflow`` (``tests/test_tracking_imports.py``).
MLflow's import costs seconds, so its functions import it themselves (lazy): importing the
package is cheap, a stage checks its params first.
"""

from __future__ import annotations

from betamcmc.tracking.links import Link, StageRun, current_link
from betamcmc.tracking.log import (
    log_artifact,
    log_artifacts,
    log_metrics,
    log_params,
    log_result,
    log_series,
    send_metrics,
)
from betamcmc.tracking.replay import Replayed, replay
from betamcmc.tracking.runs import (
    end_run,
    pipeline_run,
    run_params,
    run_tags,
    stage_run,
    start_child,
)
from betamcmc.tracking.sender import DRAIN_S, flush_link
from betamcmc.tracking.store import (
    HINT,
    HTTP_DEFAULTS,
    MODE_ENV,
    MODES,
    PROBE_TIMEOUT_S,
    SPOOL_DIR,
    SQLITE_MAGIC,
    TrackingError,
    check_store,
    project_root,
    setup,
    spool_dir,
    store_client,
    tracking_mode,
    tracking_uri,
)

__all__ = [
    "DRAIN_S",
    "HINT",
    "HTTP_DEFAULTS",
    "MODES",
    "MODE_ENV",
    "PROBE_TIMEOUT_S",
    "SPOOL_DIR",
    "SQLITE_MAGIC",
    "Link",
    "Replayed",
    "StageRun",
    "TrackingError",
    "check_store",
    "current_link",
    "end_run",
    "flush_link",
    "log_artifact",
    "log_artifacts",
    "log_metrics",
    "log_params",
    "log_result",
    "log_series",
    "pipeline_run",
    "project_root",
    "replay",
    "run_params",
    "run_tags",
    "send_metrics",
    "setup",
    "spool_dir",
    "stage_run",
    "start_child",
    "store_client",
    "tracking_mode",
    "tracking_uri",
]
