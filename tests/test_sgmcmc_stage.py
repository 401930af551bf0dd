"""The sgmcmc stages end to end on a tiny config: every item of the protocol x workers matrix,
the SGD baseline, the report and the consistency study, as the shared pipeline run
(``dvc repro``, conftest ``pipeline``) left them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from betamcmc.params import load_params
from betamcmc.sgmcmc.samples import read_samples

from conftest import PipelineRun

pytestmark = pytest.mark.slow


def check_item(repo: Path, protocol: str, workers: int) -> None:
    item = f"{protocol}-{workers}"
    m = json.loads((repo / "metrics" / "sgmcmc" / f"{item}.json").read_text())
    assert m["protocol"] == protocol and m["workers"] == workers and m["samples"] == 12
    assert 0.0 <= m["accuracy"] <= 1.0 and m["log_likelihood"] <= 0.0 and 0.0 <= m["ece"] <= 1.0
    assert m["bytes_total"] > 0 and m["dead_workers"] == 0
    rows = (repo / "metrics" / "sgmcmc" / f"{item}_bma_accuracy.csv").read_text().splitlines()
    assert rows[0] == "sample,wall_s,grad_evals,bma_accuracy" and len(rows) == 13
    out = repo / "models" / "sgmcmc" / item
    assert len(read_samples(out)) == 12 and (out / "run.json").exists()
    assert not (repo / "models" / "sgmcmc" / f"{item}.partial").exists()


def test_sgmcmc_stages_write_every_output(pipeline: PipelineRun) -> None:
    repo = pipeline.repo
    params = load_params(repo / "params.yaml")
    items = [(p, w) for p in params.sgmcmc.protocols for w in params.sgmcmc.workers]
    assert len(items) == 6  # single, downpour, elastic x W = 1, 2 (the tiny params)
    for protocol, workers in items:
        check_item(repo, protocol, workers)
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], "tags.stage = 'sgmcmc'"
    )
    assert sorted(r.info.run_name for r in runs) == sorted(f"sgmcmc@{p}-{w}" for p, w in items)
    for run in runs:
        item = run.info.run_name.split("@")[1]
        m = json.loads((repo / "metrics" / "sgmcmc" / f"{item}.json").read_text())
        assert run.data.metrics["accuracy"] == m["accuracy"]
        assert run.data.params["sgmcmc.period"] == "2"
        assert run.data.tags["protocol"] == run.data.params["protocol"] == m["protocol"]
        assert run.data.params["workers"] == str(m["workers"]) and "workers" not in run.data.metrics
        assert run.data.tags["pipeline_run"] == runs[0].data.tags["pipeline_run"]

    sgd = json.loads((repo / "metrics" / "sgmcmc_sgd.json").read_text())
    assert sgd["steps"] == 40 and 0.0 <= sgd["accuracy"] <= 1.0
    table = (repo / "reports" / "sgmcmc" / "table.md").read_text()
    for protocol, workers in items:
        assert f"| {protocol}-{workers} |" in table
    assert "SGD (40 steps)" in table
    for fig in (
        "accuracy_vs_time.png",
        "loglik_vs_time.png",
        "speedup_vs_workers.png",
        "bytes.png",
    ):
        assert (repo / "reports" / "sgmcmc" / fig).stat().st_size > 1000
    c = json.loads((repo / "metrics" / "sgmcmc_consistency.json").read_text())
    assert set(c["runs"]) == {"single-tau1", "downpour-tau1", "downpour-tau4"}
    assert all(r["mean_error"] >= 0 and r["samples"] == 20 for r in c["runs"].values())
    assert 0.2 < c["reference"]["acceptance"] <= 1.0
    assert (repo / "reports" / "sgmcmc_consistency" / "consistency.png").exists()
    assert sorted(os.listdir(repo / "models" / "sgmcmc")) == sorted(f"{p}-{w}" for p, w in items)
