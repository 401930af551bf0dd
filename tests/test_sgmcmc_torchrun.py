"""A real run across two ``torchrun`` launches ("nodes") on localhost: one launch with the
master's rank, one with two workers, a c10d rendezvous on 127.0.0.1 (the README's multi-machine
command with HOST0 = 127.0.0.1). Only rank 0 opens an MLflow run and writes outputs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from betamcmc.sgmcmc.engine.samples import read_samples

from conftest import copy_repo, tiny_params, write_params

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_torchrun_nodes_on_localhost(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path / "repo")
    write_params(repo / "params.yaml", tiny_params())
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["GLOO_SOCKET_IFNAME"] = "lo"
    torchrun = str(Path(sys.executable).parent / "torchrun")
    port = free_port()

    def launch(processes: int) -> subprocess.Popen:
        return subprocess.Popen(
            [
                torchrun,
                "--nnodes",
                "2",
                "--nproc-per-node",
                str(processes),
                "--rdzv-backend",
                "c10d",
                "--rdzv-endpoint",
                f"127.0.0.1:{port}",
                "--rdzv-id",
                "test",
                "stages/sgmcmc.py",
                "downpour",
                "2",
            ],  # fmt: skip
            cwd=repo,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    nodes = [launch(1), launch(2)]  # world size 3: 1 master + 2 workers
    outputs = [p.communicate(timeout=300) for p in nodes]
    for p, (out, err) in zip(nodes, outputs, strict=True):
        assert p.returncode == 0, f"{out}\n{err}"
    # rank 0 (on whichever launch the rendezvous put it) printed the summary and wrote outputs
    assert sum("sgmcmc@downpour-2: accuracy" in out for out, _ in outputs) == 1
    metrics = json.loads((repo / "metrics" / "sgmcmc" / "downpour-2.json").read_text())
    assert metrics["workers"] == 2 and metrics["samples"] == 12 and metrics["dead_workers"] == 0
    run = json.loads((repo / "models" / "sgmcmc" / "downpour-2" / "run.json").read_text())
    # under torchrun an item runs one seed, the params' seed (not sgmcmc.seeds)
    seed = tiny_params()["seed"]
    assert metrics["n_seeds"] == 1 and [r["seed"] for r in run["runs"]] == [seed]
    per_worker = run["runs"][0]["per_worker"]
    assert all(w["status"] == "done" and w["steps"] > 0 for w in per_worker.values())
    assert len(read_samples(repo / "models" / "sgmcmc" / "downpour-2" / f"seed-{seed}")) == 12
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.run_name for r in runs] == ["sgmcmc@downpour-2"]  # not one per rank
