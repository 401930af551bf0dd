"""`betamcmc ui` serves the MLflow UI on 127.0.0.1 over the project's store, prints links that
open the runs table in Model-training mode and the README's comparisons, and refuses a taken
port with one line."""

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

from betamcmc.uilinks import COMPARISONS, compare_url, runs_table_url

from conftest import PipelineRun, copy_pipeline

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
        assert head in printed and ", ".join(comparison.metrics) in printed, printed
        search = f"{comparison.runs_filter} and tags.pipeline_run = '{pipeline_run}'"
        assert f"  table:   {runs_table_url(base, exp_id, search)}\n" in printed
        line = next(
            ln
            for ln in printed.splitlines()
            if ln.startswith("  compare: ") and all(i in ln for i in ids)
        )
        assert line == f"  compare: {compare_url(base, exp_id, _in_order(line, ids))}"


def _in_order(line: str, ids: list[str]) -> list[str]:
    return sorted(ids, key=line.index)


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
