"""Links into the MLflow UI that open on the comparisons the README lists (``betamcmc ui``).

MLflow 3's UI opens an experiment in its "GenAI" mode (a traces overview: "Traces 0") unless
the browser was switched to "Model training" before; the experiment tag
``mlflow.experimentKind`` does not change that. A link whose hash query carries
``workflowType=machine_learning`` does, and ``searchFilter`` applies a filter
(docs/tracking.md).

Which columns the runs table shows is UI state, kept in the browser, but MLflow 3.17's UI also
reads it from a *saved view*: the experiment tag ``mlflow.sharedViewState.<key>`` (what the
runs page's "Views" / "Share" menu writes), opened by the hash query
``viewStateShareKey=<key>``. Its value is an envelope
``{"name", "createdAt", "updatedAt", "state"}`` (times in ms) whose ``state`` is a JSON string
holding the search facets (``searchFilter``, ``orderByKey``, ...) and the UI state
(``selectedColumns`` as ``metrics.`<name>```, ...); ``view_state`` builds it. Each comparison
gets such a view (its key a hash of the value, so reruns reuse it) and a link to MLflow's
compare page for the same runs.

No MLflow import here: :func:`comparison_links` takes a client the caller made.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

SHARED_VIEW_TAG = "mlflow.sharedViewState."  # + key; MLflow UI constant (js bundle)


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


def view_url(base: str, experiment_id: str, key: str) -> str:
    """The runs table in Model-training mode, opened on the saved view ``key``. No search
    facet may sit beside it: the UI ignores the view when the query has one."""
    query = {"workflowType": "machine_learning", "viewStateShareKey": key}
    return f"{base}/#/experiments/{experiment_id}/runs?{urlencode(query, quote_via=quote)}"


def compare_url(base: str, experiment_id: str, run_ids: list[str]) -> str:
    """MLflow's compare page for ``run_ids`` (its route takes JSON lists, URL-encoded here)."""
    query = {"runs": json.dumps(run_ids), "experiments": json.dumps([experiment_id])}
    return f"{base}/#/compare-runs?{urlencode(query, quote_via=quote)}"


def metric_column(name: str) -> str:
    """The runs table's key (and ag-grid column id) of metric ``name``: ``metrics.`name```."""
    return f"metrics.`{name}`"


def column_width(name: str) -> int:
    """A width (px) that shows the header ``name`` whole in MLflow's font, 90 at least: the
    README's four metrics then fit beside Run Name, Created and Duration at 1600 px even with
    the Assistant panel open (MLflow's own default is 100, which cuts the longer names)."""
    return max(90, round(6.5 * len(name) + 14))


def view_state(search_filter: str, metrics: tuple[str, ...]) -> dict[str, Any]:
    """The runs page state of a comparison: MLflow's search facets (every one, at its default
    but the filter and an oldest-first order) and UI state whose ``selectedColumns`` are
    exactly ``metrics``, in that order (``columnOrder``) and wide enough to read
    (``columnWidths``). The attribute columns MLflow shows by default (Source, Models,
    Dataset) are left out so the metrics fit the width; Duration (always shown) goes last."""
    columns = [metric_column(name) for name in metrics]
    return {
        "searchFilter": search_filter,
        "orderByKey": "attributes.start_time",
        "orderByAsc": True,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "modelVersionFilter": "All Runs",
        "datasetsFilter": [],
        "selectedColumns": columns,
        "columnOrder": columns,
        "columnWidths": {col: column_width(name) for col, name in zip(columns, metrics)},
        "runsHiddenMode": "SHOW_ALL",  # the chart view plots every run of the comparison
    }


def shared_view_tag(name: str, state: dict[str, Any], created_ms: int) -> tuple[str, str]:
    """``(tag key, tag value)`` of a saved view ``name`` holding ``state``: the envelope
    MLflow's UI reads (``state`` as a JSON string, ``createdAt`` = ``updatedAt`` =
    ``created_ms``). The key's suffix is a hash of the value, so the same view gets the same tag
    on every rerun and a changed one a new tag."""
    state_json = json.dumps(state, sort_keys=True, separators=(",", ":"))
    value = json.dumps(
        {"name": name, "createdAt": created_ms, "updatedAt": created_ms, "state": state_json},
        sort_keys=True,
    )
    digest = hashlib.sha256(value.encode()).hexdigest()[:16]
    return f"{SHARED_VIEW_TAG}betamcmc-{digest}", value


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


def save_view(
    client: Any,
    experiment_id: str,
    comparison: Comparison,
    search: str,
    runs: list[Any],
    pipeline_run: str,
    metrics: tuple[str, ...],
) -> str:
    """Write the comparison's saved view (columns: ``metrics``) as an experiment tag and return its key for
    ``viewStateShareKey``. Idempotent: ``createdAt`` is the newest run's start, so the value
    (and key) does not depend on when ``betamcmc ui`` ran. The views this wrote for the
    comparison's earlier pipeline runs are deleted: MLflow's UI allows 40 saved views per
    experiment, and a lab's store sees many pipeline runs."""
    created_ms = max(int(r.info.start_time or 0) for r in runs)
    prefix = f"betamcmc: {comparison.title} ("
    name = f"{prefix}{pipeline_run})"
    tag, value = shared_view_tag(name, view_state(search, metrics), created_ms)
    client.set_experiment_tag(experiment_id, tag, value)
    for old, old_value in client.get_experiment(experiment_id).tags.items():
        if old != tag and old.startswith(f"{SHARED_VIEW_TAG}betamcmc-"):
            if _view_name(old_value).startswith(prefix):
                client.delete_experiment_tag(experiment_id, old)
    return tag.removeprefix(SHARED_VIEW_TAG)


def _view_name(value: str) -> str:
    """The ``name`` of a saved-view tag value ("" when it is not an envelope)."""
    try:
        return str(json.loads(value).get("name", ""))
    except (ValueError, AttributeError):
        return ""


def logged_metrics(comparison: Comparison, runs: list[Any]) -> tuple[tuple[str, ...], list[str]]:
    """The comparison's metrics that at least one of ``runs`` logged (a column MLflow can
    show), and those none did (e.g. ``time_to_acc95_s`` of runs that never reached 0.95: the
    metrics file holds null, which is not logged)."""
    logged = {name for r in runs for name in getattr(r.data, "metrics", {})}
    shown = tuple(m for m in comparison.metrics if m in logged)
    return shown, [m for m in comparison.metrics if m not in logged]


def comparison_links(client: Any, experiment_id: str, base: str) -> list[str]:
    """The lines ``betamcmc ui`` prints: per comparison, its runs table (a saved view of the
    latest pipeline run's runs with exactly the comparison's metric columns) and the compare
    page of those runs. Writes one experiment tag per comparison (:func:`save_view`)."""
    lines = [f"runs table (Model training): {runs_table_url(base, experiment_id)}"]
    for comparison in COMPARISONS:
        pipeline_run, runs = latest_pipeline_runs(client, experiment_id, comparison)
        if pipeline_run is None:
            lines.append(f"{comparison.title}: no runs yet ({comparison.runs_filter})")
            lines.append(f"  table: {runs_table_url(base, experiment_id, comparison.runs_filter)}")
            continue
        names = ", ".join(r.info.run_name for r in runs)
        search = f"{comparison.runs_filter} and tags.pipeline_run = '{pipeline_run}'"
        shown, absent = logged_metrics(comparison, runs)
        key = save_view(client, experiment_id, comparison, search, runs, pipeline_run, shown)
        note = f" (not logged by these runs: {', '.join(absent)})" if absent else ""
        lines.append(
            f"{comparison.title} (pipeline run {pipeline_run}: {names}); "
            f"metrics {', '.join(shown)}{note}"
        )
        lines.append(f"  table:   {view_url(base, experiment_id, key)}")
        lines.append(
            f"  compare: {compare_url(base, experiment_id, [r.info.run_id for r in runs])}"
        )
    return lines
