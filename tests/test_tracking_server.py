"""A lab's tracking server as a real component: a real ``mlflow server`` process on 127.0.0.1
(SQLite backend, its own artifact store, proxied uploads), started and stopped here.

* The tiny pipeline's ``prepare`` and ``pretrain@constant`` under ``dvc repro``, and ``prepare``
  under one ``dvc exp run``, log to it: the same run names, tags, params, step metrics and
  artifacts as the shared pipeline's local SQLite store holds for the same items.
* A server that dies mid-stage: the stage finishes and writes its outputs, with one warning;
  after the server is back, ``betamcmc tracking replay`` sends what was spooled and the run holds
  every metric.
* A server that does not answer when a stage starts: one line and exit 2 before any output
  (the other causes, and ``BETAMCMC_TRACKING=optional``: ``test_tracking``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest

from betamcmc import cli

from conftest import PipelineRun, copy_repo, dvc_command, git_init, tiny_params, write_params

pytestmark = pytest.mark.slow
SERVER_START_S = 120  # a loaded 2-core machine: ~12 s when quiet


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``mlflow server`` on 127.0.0.1 with its store and artifacts under ``root``; ``kill`` is a
    server that dies (SIGKILL, its whole process group), ``start`` brings it back on its port."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.root / 'server.db'}",
            "--artifacts-destination",
            str(self.root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        env.pop("MLFLOW_TRACKING_URI", None)
        log = (self.root / "server.log").open("ab")
        self.proc = subprocess.Popen(
            command, env=env, stdout=log, stderr=log, start_new_session=True
        )
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        self.kill()
        tail = (self.root / "server.log").read_text(errors="replace")[-3000:]
        raise AssertionError(f"mlflow server did not come up on {self.uri}:\n{tail}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)
        self.proc = None

    def client(self) -> Any:
        return mlflow.MlflowClient(self.uri)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("mlflow-server"))
    srv.start()
    try:
        yield srv
    finally:
        srv.kill(signal.SIGTERM)


def _env(uri: str | None, **extra: str) -> dict[str, str]:
    """This venv first on PATH (stage commands call ``python``), the store at ``uri``."""
    _, env = dvc_command()
    if uri:
        env["MLFLOW_TRACKING_URI"] = uri
    return {**env, **extra}


def _dvc(repo: Path, uri: str, *args: str) -> str:
    command, _ = dvc_command(*args)
    proc = subprocess.run(
        command, cwd=repo, env=_env(uri), capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"dvc {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def _stage(repo: Path, uri: str | None, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=repo,
        env=_env(uri, **env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _runs(client: Any) -> dict[str, Any]:
    """Every run of the ``betamcmc`` experiment by name (the latest of a name wins)."""
    exp = client.get_experiment_by_name("betamcmc")
    runs = client.search_runs([exp.experiment_id], max_results=1000, order_by=["start_time ASC"])
    return {r.info.run_name: r for r in runs}


def _artifacts(client: Any, run_id: str, path: str | None = None) -> list[str]:
    out = []
    for item in client.list_artifacts(run_id, path):
        out += _artifacts(client, run_id, item.path) if item.is_dir else [item.path]
    return sorted(out)


def _shape(client: Any, run: Any) -> dict[str, Any]:
    """What must match between two stores: tag names and the values that do not name the
    invocation, params, metric names and the length of every step series, artifact paths."""
    own = {
        "pipeline_run",
        "git_commit",
        "project_root",
        "mlflow.parentRunId",
        "mlflow.user",
        "mlflow.source.name",
        "mlflow.source.git.commit",
        "mlflow.runName",
    }
    tags = run.data.tags
    return {
        "status": run.info.status,
        "tags": sorted(tags),
        "tag_values": {k: v for k, v in tags.items() if k not in own},
        "params": run.data.params,
        "metrics": sorted(run.data.metrics),
        "steps": {k: len(client.get_metric_history(run.info.run_id, k)) for k in run.data.metrics},
        "artifacts": _artifacts(client, run.info.run_id),
    }


ITEMS = ("prepare", "pretrain@constant", "pretrain@constant/seed0", "pretrain@constant/seed1")


def test_pipeline_logs_to_a_server_as_to_the_local_store(
    pipeline: PipelineRun, server: Server, tmp_path: Path
) -> None:
    repo = copy_repo(tmp_path / "repo")
    write_params(repo / "params.yaml", tiny_params())
    git_init(repo)
    _dvc(repo, server.uri, "repro", "pretrain@constant")
    client = server.client()
    got = _runs(client)
    local = mlflow.MlflowClient(f"sqlite:///{pipeline.repo / 'mlflow.db'}")
    want = _runs(local)
    for name in ITEMS:
        assert _shape(client, got[name]) == _shape(local, want[name]), name
    assert got["pretrain@constant"].data.tags["pipeline_run"].startswith("repro-")
    assert (
        len(client.get_metric_history(got["pretrain@constant/seed0"].info.run_id, "train.kl"))
        == 40 // 5
    )
    # the artifacts live in the server's own store, uploaded through it
    exp = client.get_experiment_by_name("betamcmc")
    assert exp.artifact_location.startswith("mlflow-artifacts:")
    assert list((server.root / "artifacts").rglob("model.pt"))
    assert not (repo / "mlflow.db").exists() and not (repo / "mlartifacts").exists()

    out = _dvc(repo, server.uri, "exp", "run", "-S", "data.synthetic.train=100", "prepare")
    exp_run = _runs(client)["prepare"]
    name = exp_run.data.tags["dvc_exp_name"]
    assert name in out and exp_run.data.tags["pipeline_run"] == name
    assert exp_run.data.params["data.synthetic.train"] == "100"
    assert exp_run.info.status == "FINISHED" and exp_run.data.tags["dvc_exp_baseline"]
    assert _artifacts(client, exp_run.info.run_id) == ["prepare.json"]
    assert not (repo / "mlflow-spool").exists()


def test_a_server_that_dies_mid_stage_loses_nothing(
    pipeline: PipelineRun,
    server: Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo = copy_repo(tmp_path / "repo")
    iterations = 200
    write_params(
        repo / "params.yaml",
        tiny_params({"pretrain": {"train": {"iterations": iterations, "eval_every": 100}}}),
    )
    prepared = "data/prepared"  # the tiny corpus, as the shared pipeline prepared it
    shutil.copytree(pipeline.repo / prepared, repo / prepared)
    proc = subprocess.Popen(
        [sys.executable, "stages/pretrain.py", "constant"],
        cwd=repo,
        env=_env(server.uri),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:  # the seeds' progress: a line every tenth
        lines.append(line)
        if " seed " in line and f"/{iterations} (" in line:
            server.kill()  # at ~10 %: the server dies
            break
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, "".join(lines) + out + err
    assert (repo / "models/pretrain/constant/seed1/model.pt").exists()
    metrics = json.loads((repo / "metrics/pretrain/constant.json").read_text())
    assert metrics["n_seeds"] == 2
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "tracking store " + server.uri + " lost" in warnings[0], err
    assert "betamcmc tracking replay" in warnings[0]
    assert list((repo / "mlflow-spool").glob("*.jsonl"))

    server.start()
    monkeypatch.chdir(repo)
    assert cli.main(["tracking", "replay"]) == 0  # in this process: MLflow is loaded already
    assert "spooled call(s) to " + server.uri in capsys.readouterr().out
    assert not list((repo / "mlflow-spool").iterdir())
    client = server.client()
    runs = _runs(client)
    parent = runs["pretrain@constant"]
    assert parent.info.status == "FINISHED"
    assert {"test.kl", "test.nll", "valid.elbo"} <= set(parent.data.metrics)
    points = iterations // 5  # tiny runtime.log_every
    assert len(client.get_metric_history(parent.info.run_id, "train.kl")) == points
    assert "model/model.pt" in _artifacts(client, parent.info.run_id)
    for seed in (0, 1):
        child = runs[f"pretrain@constant/seed{seed}"]
        assert child.info.status == "FINISHED" and "test.nll" in child.data.metrics
        history = client.get_metric_history(child.info.run_id, "train.kl")
        assert sorted(m.step for m in history) == list(range(5, iterations + 1, 5))
        assert len(client.get_metric_history(child.info.run_id, "valid_curve.mi")) == 2


def test_unreachable_store_is_one_line_before_any_output(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path / "repo")
    write_params(repo / "params.yaml", tiny_params())
    uri = f"http://127.0.0.1:{_free_port()}"
    proc = _stage(repo, uri, "stages/prepare.py")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: tracking store {uri}: cannot reach the server (Connection refused); fix or "
        "start it, or set BETAMCMC_TRACKING=optional to run untracked"
    ]
    assert not (repo / "data").exists() and not (repo / "metrics/prepare.json").exists()
