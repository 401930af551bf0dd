"""Links into the MLflow UI that open on the comparisons the README lists (``betamcmc ui``).

MLflow 3's UI opens an experiment in its "GenAI" mode (a traces overview: "Traces 0") unless
the browser was switched to "Model training" before; the experiment tag
``mlflow.experimentKind`` does not change that. A link whose hash query carries
``workflowType=machine_learning`` does, and ``searchFilter`` applies a filter
(docs/tracking.md). The runs table cannot be told which columns to show from a link (MLflow
keeps that choice in the browser), so each comparison also gets a link to MLflow's compare page
for the runs of the latest pipeline run, which lists every metric of those runs side by side.

No MLflow import here: :func:`comparison_links` takes a client the caller made.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode


@dataclass(frozen=True)
class Comparison:
    """One comparison of the README's table: which runs (a filter) and which metrics."""

    title: str
    runs_filter: str  # without the pipeline_run clause
    metrics: tuple[str, ...]


COMPARISONS = (
    Comparison(
        "the beta schedules side by side",
        "tags.stage = 'pretrain'",
        ("test.kl", "test.mi", "test.au", "test.nll"),
    ),
    Comparison(
        "the protocols at W = 2",
        "tags.stage = 'sgmcmc' and tags.workers = '2'",
        ("accuracy", "log_likelihood", "time_to_acc95_s", "bytes_per_sample"),
    ),
)


def runs_table_url(base: str, experiment_id: str, search_filter: str = "") -> str:
    """The experiment's runs table in Model-training mode, with ``search_filter`` applied."""
    query = {"workflowType": "machine_learning"}
    if search_filter:
        query["searchFilter"] = search_filter
    return f"{base}/#/experiments/{experiment_id}/runs?{urlencode(query, quote_via=quote)}"


def compare_url(base: str, experiment_id: str, run_ids: list[str]) -> str:
    """MLflow's compare page for ``run_ids`` (its route takes JSON lists, URL-encoded here)."""
    query = {"runs": json.dumps(run_ids), "experiments": json.dumps([experiment_id])}
    return f"{base}/#/compare-runs?{urlencode(query, quote_via=quote)}"


def latest_pipeline_runs(
    client: Any, experiment_id: str, comparison: Comparison
) -> tuple[str | None, list[Any]]:
    """The ``pipeline_run`` of the newest run that ``comparison`` selects, and every run of that
    pipeline run it selects (oldest first); ``(None, [])`` when the store has none yet."""
    newest = client.search_runs(
        [experiment_id],
        comparison.runs_filter,
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    pipeline_run = newest[0].data.tags.get("pipeline_run") if newest else None
    if pipeline_run is None:
        return None, []
    runs = client.search_runs(
        [experiment_id],
        f"{comparison.runs_filter} and tags.pipeline_run = '{pipeline_run}'",
        order_by=["attributes.start_time ASC"],
        max_results=200,
    )
    return pipeline_run, list(runs)


def comparison_links(client: Any, experiment_id: str, base: str) -> list[str]:
    """The lines ``betamcmc ui`` prints: per comparison, its runs table (filtered to the latest
    pipeline run) and the compare page of those runs, with the metric columns to read."""
    lines = [f"runs table (Model training): {runs_table_url(base, experiment_id)}"]
    for comparison in COMPARISONS:
        pipeline_run, runs = latest_pipeline_runs(client, experiment_id, comparison)
        columns = ", ".join(comparison.metrics)
        if pipeline_run is None:
            lines.append(f"{comparison.title}: no runs yet ({comparison.runs_filter})")
            lines.append(f"  table: {runs_table_url(base, experiment_id, comparison.runs_filter)}")
            continue
        names = ", ".join(r.info.run_name for r in runs)
        search = f"{comparison.runs_filter} and tags.pipeline_run = '{pipeline_run}'"
        lines.append(f"{comparison.title} (pipeline run {pipeline_run}: {names}); "
                     f"metrics {columns}")  # fmt: skip
        lines.append(f"  table:   {runs_table_url(base, experiment_id, search)}")
        lines.append(
            f"  compare: {compare_url(base, experiment_id, [r.info.run_id for r in runs])}"
        )
    return lines
