"""`betamcmc ui` serves the MLflow UI on 127.0.0.1 over the project's store."""

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
