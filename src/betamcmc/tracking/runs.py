"""The MLflow run of a stage item: its name, tags and params, opened at the start of the stage
(:func:`stage_run`), the seeds' runs nested under it (:func:`start_child`), and its end.

A stage run is named after its DVC item (``pretrain@cyclical``) and tagged with what groups it
(docs/tracking.md): the stage, the item's identity, the pipeline run (one ``dvc exp run`` or one
``dvc repro``), the git commit and the params hash.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from betamcmc.core.pipeline import StageItem, dvc_str
from betamcmc.tracking.dvcproc import dvc_ancestor
from betamcmc.tracking.links import OPEN_RUNS, Link, StageRun
from betamcmc.tracking.log import log_params, now_ms
from betamcmc.tracking.replay import replay_at_start
from betamcmc.tracking.sender import close_sink, submit_call
from betamcmc.tracking.store import (
    MODE_ENV,
    TrackingError,
    connect,
    failure_line,
    is_http,
    project_root,
    spool_dir,
    tracking_mode,
)

if TYPE_CHECKING:
    from betamcmc.params import Params


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def pipeline_run() -> str:
    """One id shared by every stage run of one ``dvc exp run`` (its experiment name) or one
    ``dvc repro`` (``repro-<start time>-<pid>`` of the dvc process); a stage script run by hand
    gets ``manual-<time>-<pid>``. Filter on it in the MLflow UI: ``tags.pipeline_run = '...'``."""
    if os.environ.get("DVC_EXP_NAME"):
        return os.environ["DVC_EXP_NAME"]
    found = dvc_ancestor()
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
) -> Iterator[StageRun]:
    """Open the MLflow run of one stage item (named as DVC names it), tag it, log its params
    (:func:`run_params`), yield it. The run ends FAILED if the body raises, FINISHED otherwise;
    on the way out the calls still queued get :data:`DRAIN_S` seconds, the rest is spooled.

    ``identity``: what else identifies the run beyond its dvc.yaml item (e.g. the protocol of the
    Bayesian head, the corpus of ``prepare``): logged as tags and params under the same names."""
    extra = {k: dvc_str(v) for k, v in (identity or {}).items()}
    run = _open_run(params, stage.name, {**run_tags(params, stage), **extra})
    OPEN_RUNS.append(run)
    status = "FAILED"
    try:
        log_params({**extra, **run_params(params, stage)})
        yield run
        status = "FINISHED"
    finally:
        OPEN_RUNS.remove(run)
        if run.link is not None:
            end_run(run.link, status)
            close_sink(run.link)


def _open_run(params: Params, name: str, tags: dict[str, str]) -> StageRun:
    """Check the store, send what earlier runs spooled for it, create the run: all before the
    stage's work. A store that cannot be used raises, or (optional) leaves the run untracked."""
    mode = tracking_mode()
    try:
        uri, experiment_id = connect(params)
        replay_at_start(uri)
        run = _create_run(uri, experiment_id, name, tags, resolve=True)
    except TrackingError as err:
        if mode == "required":
            raise
        _untracked_warning(err, name)
        return StageRun(name, tags)
    link = Link(uri, run.info.run_id, str(spool_dir()), scope=run.info.run_id, stage=name)
    if is_http(uri):
        where = f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run.info.run_id}"
        print(f"tracking: {name} -> {where}", flush=True)
    return StageRun(
        name=name, tags=tags, run_id=run.info.run_id, experiment_id=experiment_id, link=link
    )


def _create_run(
    uri: str, experiment_id: str, name: str, tags: Mapping[str, str], resolve: bool = False
) -> Any:
    """Create a run now (its id is needed before anything is logged to it). ``resolve``: add
    MLflow's own context tags (user, source), as ``mlflow.start_run`` does."""
    import mlflow  # lazy: MLflow's import costs seconds
    from mlflow.tracking.context import registry

    all_tags = registry.resolve_tags(dict(tags)) if resolve else dict(tags)
    try:
        return mlflow.MlflowClient(uri).create_run(experiment_id, run_name=name, tags=all_tags)
    except Exception as err:  # noqa: BLE001 - any failure of the store is one line
        raise TrackingError(uri, failure_line(err)) from None


def _untracked_warning(err: TrackingError, name: str) -> None:
    print(
        f"warning: tracking store {err.uri}: {err.cause}; {MODE_ENV}=optional, so {name} "
        "runs untracked",
        file=sys.stderr,
        flush=True,
    )


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


def end_run(link: Link | None, status: str = "FINISHED") -> None:
    """Mark a run ended (``FINISHED`` / ``FAILED``), with the time it really ended."""
    if link is not None:
        submit_call(link, {"op": "end", "run": link.run_id, "status": status, "time": now_ms()})
