"""`betamcmc ui` serves the MLflow UI on 127.0.0.1 over the project's store, prints links that
open the runs table in Model-training mode and the README's comparisons (saved views, stored as
experiment tags in the format MLflow 3.17's UI reads), and refuses a taken port with one
line."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from betamcmc.uilinks import (
    COMPARISONS,
    SHARED_VIEW_TAG,
    Comparison,
    compare_url,
    comparison_links,
    runs_table_url,
    shared_view_tag,
    view_state,
    view_url,
)

from conftest import PipelineRun, copy_pipeline


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ui_serves_the_project_store(pipeline: PipelineRun, tmp_path: Path) -> None:
    tiny_repo = copy_pipeline(pipeline, tmp_path / "repo")  # a store with the pipeline's runs
    port = _free_port()
    cli = Path(sys.executable).parent / "betamcmc"
    proc = subprocess.Popen(
        [str(cli), "ui", "--port", str(port)],
        cwd=tiny_repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        first = proc.stdout.readline() + proc.stdout.readline()
        assert f"sqlite:///{tiny_repo / 'mlflow.db'}" in first
        assert f"http://127.0.0.1:{port}" in first
        links = "".join(proc.stdout.readline() for _ in range(1 + 3 * len(COMPARISONS)))
        _check_links(links, tiny_repo, f"http://127.0.0.1:{port}")
        url = f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search"
        deadline, body = time.time() + 240, None
        while time.time() < deadline and body is None:
            assert proc.poll() is None, "mlflow ui exited early"
            try:
                req = urllib.request.Request(
                    url,
                    data=b'{"max_results": 10}',
                    method="POST",
                    headers={"Content-Type": "application/json"},
                )
                body = json.loads(urllib.request.urlopen(req, timeout=5).read())
            except OSError:
                time.sleep(1)
        assert body is not None, "UI did not answer within 240 s"
        assert "betamcmc" in [e["name"] for e in body["experiments"]]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def _check_links(printed: str, repo: Path, base: str) -> None:
    """The printed links: the runs table in Model-training mode, and per comparison its
    filtered table and the compare page of exactly the runs of its latest pipeline run."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    exp_id = client.get_experiment_by_name("betamcmc").experiment_id
    assert f"runs table (Model training): {runs_table_url(base, exp_id)}\n" in printed
    assert "workflowType=machine_learning" in runs_table_url(base, exp_id)
    for comparison in COMPARISONS:
        runs = client.search_runs([exp_id], comparison.runs_filter, max_results=100)
        pipeline_run = runs[0].data.tags["pipeline_run"]  # the tiny pipeline ran once
        ids = sorted(r.info.run_id for r in runs)
        assert len(ids) >= 2, comparison.title
        head = f"{comparison.title} (pipeline run {pipeline_run}: "
        logged = {m for r in runs for m in r.data.metrics}
        shown = tuple(m for m in comparison.metrics if m in logged)
        assert head in printed and f"; metrics {', '.join(shown)}" in printed, printed
        search = f"{comparison.runs_filter} and tags.pipeline_run = '{pipeline_run}'"
        tags = client.get_experiment(exp_id).tags
        key = _view_key(printed, comparison.title)
        state = _opened_state(tags[SHARED_VIEW_TAG + key])
        assert state == view_state(search, shown), state
        assert f"  table:   {view_url(base, exp_id, key)}\n" in printed
        line = next(
            ln
            for ln in printed.splitlines()
            if ln.startswith("  compare: ") and all(i in ln for i in ids)
        )
        assert line == f"  compare: {compare_url(base, exp_id, _in_order(line, ids))}"


def _in_order(line: str, ids: list[str]) -> list[str]:
    return sorted(ids, key=line.index)


def _view_key(printed: str, title: str) -> str:
    """The ``viewStateShareKey`` of the table link printed under the comparison ``title``."""
    lines = printed.splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.startswith(title))
    return lines[at + 1].rsplit("viewStateShareKey=", 1)[1]


# What MLflow 3.17's runs page takes from a saved view (static/js: 57637 `sO` search facets;
# 1395 `HC` UI state keys less `hN`, the per-browser ones it never restores).
FACETS = {"searchFilter", "orderByKey", "orderByAsc", "startTime", "lifecycleFilter",
          "modelVersionFilter", "datasetsFilter"}  # fmt: skip
UI_KEYS = {"selectedColumns", "columnOrder", "columnWidths", "runsHiddenMode",
           "compareRunCharts", "compareRunSections", "viewMaximized", "runListHidden",
           "isAccordionReordered", "groupBy", "groupsExpanded", "useGroupedValuesInCharts",
           "hideEmptyCharts", "globalLineChartConfig", "chartsSearchFilter"}  # fmt: skip


def _opened_state(value: str) -> dict:
    """The state the UI restores from a ``mlflow.sharedViewState.*`` tag value, read the way its
    loader does: the saved-view envelope (``name`` a string, ``createdAt`` a number, ``state``
    a string of JSON), then only the keys it knows."""
    envelope = json.loads(value)
    assert isinstance(envelope["name"], str) and isinstance(envelope["state"], str)
    assert isinstance(envelope["createdAt"], int) and envelope["updatedAt"] >= 0
    state = json.loads(envelope["state"])
    assert set(state) <= FACETS | UI_KEYS, set(state) - FACETS - UI_KEYS
    return state


def test_the_saved_view_holds_the_filter_and_exactly_the_metric_columns() -> None:
    state = view_state("tags.stage = 'pretrain'", ("test.kl", "time_to_acc95_s"))
    columns = ["metrics.`test.kl`", "metrics.`time_to_acc95_s`"]
    assert state["selectedColumns"] == columns == state["columnOrder"]
    assert list(state["columnWidths"]) == columns
    assert state["columnWidths"]["metrics.`time_to_acc95_s`"] > 100  # the name reads whole
    assert state["searchFilter"] == "tags.stage = 'pretrain'" and state["orderByAsc"] is True
    assert set(state) >= FACETS  # every facet set: none falls back to the browser's own
    tag, value = shared_view_tag("a view", state, 1_700_000_000_000)
    assert tag.startswith(SHARED_VIEW_TAG + "betamcmc-")
    assert _opened_state(value) == state
    assert json.loads(value)["createdAt"] == 1_700_000_000_000
    assert shared_view_tag("a view", dict(reversed(state.items())), 1_700_000_000_000) == (
        tag,
        value,
    )  # deterministic: same state, same tag, whatever the dict order
    assert shared_view_tag("a view", state, 1)[0] != tag


class _Run:
    def __init__(self, run_id: str, name: str, start: int, pipeline_run: str) -> None:
        self.info = type("Info", (), {"run_id": run_id, "run_name": name, "start_time": start})
        metrics = {"test.kl": 0.5, "test.mi": 0.25}
        self.data = type("Data", (), {"tags": {"pipeline_run": pipeline_run}, "metrics": metrics})


class _Client:
    """The two MlflowClient calls :func:`comparison_links` makes, over two runs per filter."""

    def __init__(self) -> None:
        self.tags: dict[str, str] = {}

    def search_runs(self, ids, search, order_by, max_results):  # noqa: ANN001, ANN201
        runs = [_Run("r1", "a", 1000, "p7"), _Run("r2", "b", 2000, "p7")]
        return runs[::-1][:max_results] if "DESC" in order_by[0] else runs

    def set_experiment_tag(self, experiment_id: str, key: str, value: str) -> None:
        assert experiment_id == "3"
        self.tags[key] = value

    def get_experiment(self, experiment_id: str) -> object:
        return type("Experiment", (), {"tags": dict(self.tags)})

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        del self.tags[key]


def test_each_comparison_link_opens_its_own_saved_view(monkeypatch: pytest.MonkeyPatch) -> None:
    comparison = Comparison("the schedules", "tags.stage = 'pretrain'", ("test.kl", "test.mi"))
    monkeypatch.setattr("betamcmc.uilinks.COMPARISONS", (comparison,))
    client = _Client()
    lines = comparison_links(client, "3", "http://h:1")
    (tag, value), = client.tags.items()  # fmt: skip
    key = tag.removeprefix(SHARED_VIEW_TAG)
    assert lines[2] == f"  table:   {view_url('http://h:1', '3', key)}"
    assert "searchFilter" not in lines[2]  # a facet in the link would make the UI skip the view
    state = _opened_state(value)
    assert state["searchFilter"] == "tags.stage = 'pretrain' and tags.pipeline_run = 'p7'"
    assert state["selectedColumns"] == ["metrics.`test.kl`", "metrics.`test.mi`"]
    envelope = json.loads(value)
    assert envelope["createdAt"] == 2000 and "p7" in envelope["name"]
    assert comparison_links(client, "3", "http://h:1") == lines  # a rerun reuses the tag
    assert len(client.tags) == 1

    mine = "mlflow.sharedViewState.my-view"  # a user's own view stays
    client.tags[mine] = json.dumps({"name": "betamcmc: the schedules (mine)", "state": "{}"})
    client.tags[f"{SHARED_VIEW_TAG}betamcmc-old"] = json.dumps(
        {"name": "betamcmc: the schedules (p6)"}
    )
    client.tags[f"{SHARED_VIEW_TAG}betamcmc-other"] = json.dumps({"name": "betamcmc: another (p6)"})
    assert comparison_links(client, "3", "http://h:1") == lines
    assert set(client.tags) == {tag, mine, f"{SHARED_VIEW_TAG}betamcmc-other"}  # p6's view went


def test_links_encode_the_mode_the_filter_and_the_runs() -> None:
    url = runs_table_url("http://h:1", "7", "tags.stage = 'pretrain'")
    assert url == (
        "http://h:1/#/experiments/7/runs?workflowType=machine_learning"
        "&searchFilter=tags.stage%20%3D%20%27pretrain%27"
    )
    compare = compare_url("http://h:1", "7", ["a1", "b2"])
    assert compare == (
        "http://h:1/#/compare-runs?runs=%5B%22a1%22%2C%20%22b2%22%5D&experiments=%5B%227%22%5D"
    )


@pytest.mark.slow
def test_a_taken_port_is_one_line_and_a_nonzero_exit(tmp_path: Path) -> None:
    """A real socket listens on the port: the command says so at once, before the store or
    MLflow are touched (mlflow itself would log it and exit 0 after ~20 s)."""
    cli = Path(sys.executable).parent / "betamcmc"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [str(cli), "ui", "--port", str(port)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 1
    assert proc.stderr == (
        f"error: port {port} on 127.0.0.1 is not free (Address already in "
        "use): stop what serves it or choose another with --port\n"
    )
    assert proc.stdout == "" and not (tmp_path / "mlflow.db").exists()


def test_a_metric_no_run_logged_is_no_column_and_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """A comparison metric none of its runs logged (a null in the metrics file, e.g. the time to
    an accuracy never reached) cannot be a column: the view leaves it out and the line says so."""
    comparison = Comparison("the schedules", "tags.stage = 'pretrain'", ("test.kl", "test.au"))
    monkeypatch.setattr("betamcmc.uilinks.COMPARISONS", (comparison,))
    client = _Client()
    lines = comparison_links(client, "3", "http://h:1")
    assert lines[1].endswith("; metrics test.kl (not logged by these runs: test.au)")
    (value,) = client.tags.values()
    assert _opened_state(value)["selectedColumns"] == ["metrics.`test.kl`"]
